"""Per-user places: the runtime folder (sockets, locks, the proxy's files) and the data folder
(the local CA), and the environment lines that point a service's runtimes at the CA. Stdlib only."""

from __future__ import annotations

import os
from pathlib import Path


def runtime_dir() -> Path:
    """$XDG_RUNTIME_DIR/a3s, else a per-user folder in the temp folder."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and os.path.isdir(runtime_dir):
        return Path(runtime_dir) / "a3s"
    import tempfile

    return Path(tempfile.gettempdir()) / f"a3s-{os.getuid()}"


def ca_folder() -> Path:
    """`$XDG_DATA_HOME/a3s/ca` (default `~/.local/share/a3s/ca`): a3s's local CA (proxy/ca.py)."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "a3s" / "ca"


def ca_env() -> dict[str, str]:
    """The environment lines that make runtimes which ignore the system store trust a3s's CA:
    Node adds NODE_EXTRA_CA_CERTS to its own; requests and OpenSSL replace theirs, so they get
    the system bundle plus the CA (`bundle.pem`)."""
    folder = ca_folder()
    return {
        "NODE_EXTRA_CA_CERTS": str(folder / "ca.pem"),
        "REQUESTS_CA_BUNDLE": str(folder / "bundle.pem"),
        "SSL_CERT_FILE": str(folder / "bundle.pem"),
    }
