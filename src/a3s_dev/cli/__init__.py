"""The command line: the stdlib fast-path reader, the typer app, the command bodies and their rendering."""
