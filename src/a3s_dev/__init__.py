"""a3s: a local development orchestrator driven by one A3sfile.hcl."""

__version__ = "0.1.0"
