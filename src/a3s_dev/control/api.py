"""The shapes the control API speaks, shared by its server and its clients: status rows,
readiness, metrics. Pure: no sockets, no event loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from a3s_dev.core.events import LogLine
from a3s_dev.core.state import READY_STATES, ServiceState, ServiceStatus

_READY = frozenset(s.value for s in READY_STATES)
# `backoff` means the service exited under a restart policy: for a waiting client that is a failure.
_FAILED = frozenset({ServiceState.FAILED.value, ServiceState.BACKOFF.value})


@dataclass(frozen=True)
class Readiness:
    """Where waiting for a set of services stands."""

    done: bool
    failed: str | None = None  # the first service that failed, when one did
    reason: str | None = None
    waiting: tuple[tuple[str, str], ...] = ()  # (name, state) not ready yet, in order


def readiness(
    services: Sequence[dict[str, Any]], names: Sequence[str], since: float | None = None
) -> Readiness:
    """Decide from status dicts whether `names` are all ready (running or completed), or one failed.

    With `since` (when the start was requested), a service that was spawned after it and is
    `stopped` again has exited on its own (exit 0 under on-failure): that is a failure too.
    """
    by_name = {s["name"]: s for s in services}
    waiting = []
    for name in names:
        svc = by_name.get(name)
        if svc is None:
            continue
        exited = (
            since is not None
            and svc["state"] == ServiceState.STOPPED.value
            and (svc.get("started_at") or 0.0) >= since
        )
        if svc["state"] in _FAILED or exited:
            reason = svc.get("reason") or (
                f"exit code {svc['exit_code']}"
                if svc.get("exit_code") is not None
                else svc["state"]
            )
            return Readiness(False, name, reason)
        if svc["state"] not in _READY or svc.get("health") == "unhealthy":
            probe = svc.get("probe")
            waiting.append((name, f"{svc['state']}: {probe}" if probe else svc["state"]))
    return Readiness(not waiting, waiting=tuple(waiting))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(statuses: Sequence[ServiceStatus], health_failures: dict[str, int]) -> str:
    """The Prometheus text exposition (format 0.0.4) of the supervisor's services (the shared
    proxy has its own: `proxy.pages.render_proxy_metrics`)."""
    out = [
        "# HELP a3s_service_up 1 when the service is running, else 0.",
        "# TYPE a3s_service_up gauge",
    ]
    out += [
        f'a3s_service_up{{service="{_label(s.name)}"}} {int(s.state == ServiceState.RUNNING)}'
        for s in statuses
    ]
    out += [
        "# HELP a3s_service_restarts_total Restarts of the service since the supervisor started.",
        "# TYPE a3s_service_restarts_total counter",
    ]
    out += [
        f'a3s_service_restarts_total{{service="{_label(s.name)}"}} {s.restarts}' for s in statuses
    ]
    out += [
        "# HELP a3s_health_check_failures_total Failed health checks reported for the service.",
        "# TYPE a3s_health_check_failures_total counter",
    ]
    out += [
        f'a3s_health_check_failures_total{{service="{_label(s.name)}"}} {health_failures.get(s.name, 0)}'
        for s in statuses
    ]
    return "\n".join(out) + "\n"


def log_dict(line: LogLine) -> dict[str, Any]:
    return {"service": line.service, "text": line.text, "at": line.at, "stream": line.stream}


