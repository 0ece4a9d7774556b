"""Private files and sockets: folders of ours at 0700, files and Unix sockets at 0600, written
in one replace. Stdlib only."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from a3s_dev.errors import A3sError


def private_dir(path: Path) -> None:
    """Create `path` as a 0700 folder of ours; refuse one that someone else owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise A3sError(f"{path}: owned by uid {info.st_uid}, not by you; remove it or set XDG_RUNTIME_DIR")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600) in one replace, so readers see the old or the new."""
    tmp = path.with_name(f"{path.name}.tmp")  # its writers hold a lock: one at a time
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves nothing half-written behind
        raise


def bind_unix_socket(path: Path) -> socket.socket:
    """A listening, non-blocking AF_UNIX socket at `path`, mode 0600, its folder made private.
    An existing file there is replaced: call it only when nobody can be listening on it."""
    private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # The folder is 0700 already, so the instant before chmod exposes nothing.
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
