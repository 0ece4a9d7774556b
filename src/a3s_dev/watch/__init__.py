"""File watching: pure rules (what concerns which service), the watchfiles engine, the service that restarts."""
