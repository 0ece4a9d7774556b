"""This process's resource limits. Stdlib only."""

from __future__ import annotations

import resource

# Where the hard limit is "unlimited" (macOS), a soft limit that the kernel takes everywhere.
UNLIMITED_OPEN_FILES = 65536


def raise_open_files() -> int:
    """Raise the soft limit on open files to the hard one, and return the soft limit now in
    force. A long-lived server started from a shell inherits its 1,024, which a thousand
    idle connections from one local process exhaust for everyone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft  # a kernel that caps lower (macOS's kern.maxfilesperproc): keep what we had
        return target
    return soft


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Linux: orphaned descendants (a daemon's double fork, `setsid` included) are reparented to
    this process instead of init, so that it can still find and end them. False elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
