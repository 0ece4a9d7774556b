"""Service states (SPEC §2) and the status snapshot every consumer reads. Pure: no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
