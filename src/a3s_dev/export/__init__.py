"""`a3s export compose|kubernetes` (SPEC §15): the A3sfile as documents for another runtime, and
a report of what does not carry over. Pure: a config in, documents and findings out; the
command (cli) reads env files through the function it is given and writes the files."""
