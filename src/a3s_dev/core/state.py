"""Service states (SPEC §2) and the status snapshot every consumer reads. Pure: no I/O."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass
from typing import Any


class ServiceState(str, enum.Enum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"
    IDLE = "idle"  # lazy, or idle-stopped: the next request through the proxy starts it (SPEC §13)


@dataclass(frozen=True)
class ServiceStatus:
    """One row of `a3s status`: what the supervisor knows about a service right now."""

    name: str
    state: ServiceState
    pid: int | None = None
    port: int | None = None
    health: str | None = None  # "healthy" | "unhealthy" | "unknown" | None (no probe)
    started_at: float | None = None  # time.time() of the current process's spawn
    restarts: int = 0
    exit_code: int | None = None
    url: str | None = None
    reason: str | None = None  # why it is in this state ("waiting for db", "exit code 3")
    probe: str | None = None  # the last probe result ("GET /health → 500", "connection refused")
    cpu: float | None = None  # percent of one core, its process group (children included), last interval
    rss: int | None = None  # resident bytes, the same group
    cpu_seconds: float | None = None  # CPU time the group used, for /metrics
    image: str | None = None  # a container service's image (SPEC §14)


# The allowed transitions. Re-entering the same state is always allowed (the reason may
# change, e.g. "waiting for db" -> "dependency db failed").
TRANSITIONS: dict[ServiceState, frozenset[ServiceState]] = {
    ServiceState.PENDING: frozenset(
        {ServiceState.STARTING, ServiceState.FAILED, ServiceState.STOPPING, ServiceState.STOPPED}
    ),
    ServiceState.STARTING: frozenset(
        {
            ServiceState.RUNNING,  # probe passed (or no probe)
            ServiceState.COMPLETED,  # a oneshot that exited 0 before being seen ready
            ServiceState.BACKOFF,  # exited while starting, will be restarted
            ServiceState.FAILED,  # exited while starting, not restarted
            ServiceState.STOPPING,
            ServiceState.STOPPED,  # exited 0 under on-failure/never
        }
    ),
    ServiceState.RUNNING: frozenset(
        {
            ServiceState.UNHEALTHY,
            ServiceState.COMPLETED,
            ServiceState.BACKOFF,
            ServiceState.FAILED,
            ServiceState.STOPPING,
            ServiceState.STOPPED,
        }
    ),
    ServiceState.UNHEALTHY: frozenset(
        {
            ServiceState.RUNNING,  # the probe recovered
            ServiceState.BACKOFF,
            ServiceState.FAILED,
            ServiceState.STOPPING,
            ServiceState.STOPPED,
        }
    ),
    ServiceState.BACKOFF: frozenset(
        {
            ServiceState.PENDING,  # a dependency is no longer ready
            ServiceState.STARTING,
            ServiceState.FAILED,  # e.g. its port got taken meanwhile
            ServiceState.STOPPING,
            ServiceState.STOPPED,
        }
    ),
    ServiceState.STOPPING: frozenset({ServiceState.STOPPED}),
    ServiceState.STOPPED: frozenset(
        # FAILED: it could not even be spawned (port taken, missing dir, unreadable env_file).
        # IDLE: stopped because nobody used it (idle_stop).
        {ServiceState.PENDING, ServiceState.STARTING, ServiceState.STOPPING, ServiceState.FAILED, ServiceState.IDLE}
    ),
    ServiceState.IDLE: frozenset(
        {ServiceState.PENDING, ServiceState.STARTING, ServiceState.STOPPING, ServiceState.STOPPED, ServiceState.FAILED}
    ),
    ServiceState.COMPLETED: frozenset(
        {ServiceState.PENDING, ServiceState.STARTING, ServiceState.STOPPING, ServiceState.STOPPED}
    ),
    ServiceState.FAILED: frozenset(
        {ServiceState.PENDING, ServiceState.STARTING, ServiceState.STOPPING, ServiceState.STOPPED}
    ),
}

# States in which a service counts as ready for its dependents.
READY_STATES = frozenset({ServiceState.RUNNING, ServiceState.COMPLETED})
# States in which a process of the service is (or may be) alive.
ACTIVE_STATES = frozenset(
    {ServiceState.STARTING, ServiceState.RUNNING, ServiceState.UNHEALTHY, ServiceState.STOPPING}
)


class InvalidTransition(Exception):
    """A bug: the supervisor asked for a transition the table does not allow."""


def can_transition(old: ServiceState, new: ServiceState) -> bool:
    """True when `old -> new` is allowed (staying in the same state always is)."""
    return old is new or new in TRANSITIONS[old]


def check_transition(old: ServiceState, new: ServiceState) -> None:
    """Raise InvalidTransition when `old -> new` is not in the table."""
    if not can_transition(old, new):
        raise InvalidTransition(f"{old.value} -> {new.value}")


# Reasons: the one-line "why" shown next to a state. Built here so that every consumer
# (status, proxy error page, logs) words them the same way.


def waiting_for(deps: list[str] | tuple[str, ...]) -> str:
    return "waiting for " + ", ".join(deps)


def dependency_failed(dep: str) -> str:
    return f"dependency {dep} failed"


def dependency_exited(dep: str) -> str:
    return f"dependency {dep} exited and is not restarted"


def exited(code: int) -> str:
    """`exit code 3`, or `killed by SIGKILL` for a negative (signal) code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def restarting_in(code: int, delay: float) -> str:
    return f"{exited(code)}, restarting in {format_delay(delay)}"


# Dev servers that pick their own port unless told, and the flag that tells them (SPEC §13).
PORT_FLAGS = (
    ("vite", "--port $PORT --strictPort"),
    ("next", "-p $PORT"),
    ("astro", "--port $PORT"),
    ("webpack", "--port $PORT"),
    ("ng", "--port $PORT"),
)


def wrong_port(name: str, port: int, listening: list[int], cmd: str) -> str | None:
    """`web listens on 5173, not on its port 18001 (pass --port $PORT --strictPort)` when the
    service's processes listen elsewhere than its port; None when they do not (or on it)."""
    if not listening or port in listening:
        return None
    said = f"{name} listens on {', '.join(map(str, listening))}, not on its port {port}"
    words = {w.rsplit("/", 1)[-1] for w in cmd.replace("=", " ").split()}
    for server, flag in PORT_FLAGS:
        if server in words and "$PORT" not in cmd and "${PORT}" not in cmd:
            return f"{said} (pass {flag})"
    return f"{said} (make it listen on $PORT)"


def format_delay(seconds: float) -> str:
    """`250ms`, `2s`, `1.5s`: short and human."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.1f}s"


# The keys of one `a3s status --json` object (SPEC §2, §10), in order: `status_row` gives them
# first, then `started_at` for the control API and the dashboard.
STATUS_KEYS = (
    "name", "state", "pid", "port", "health", "uptime_s", "restarts", "exit_code", "url", "probe", "project",
    "reason", "cpu", "rss", "image",
)


def status_row(st: ServiceStatus, now: float, project: str | None = None) -> dict[str, Any]:
    """One service as the control API, `status --json` and the dashboard's `/api/services`
    show it (STATUS_KEYS, then `reason` and `started_at`)."""
    live = st.state in ACTIVE_STATES and st.started_at is not None
    return {
        "name": st.name,
        "state": st.state.value,
        "pid": st.pid if st.state in ACTIVE_STATES else None,
        "port": st.port,
        # A stopped service's last probe result is history, not health.
        "health": st.health if st.state in ACTIVE_STATES else None,
        "uptime_s": round(max(0.0, now - st.started_at), 1)
        if live and st.started_at is not None
        else None,
        "restarts": st.restarts,
        "exit_code": st.exit_code,
        "url": st.url,
        "probe": st.probe if st.state in ACTIVE_STATES else None,
        "project": project,
        "reason": st.reason,
        "cpu": st.cpu if st.state in ACTIVE_STATES else None,
        "rss": st.rss if st.state in ACTIVE_STATES else None,
        "image": st.image,
        "started_at": st.started_at,
    }
