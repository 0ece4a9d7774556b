"""The shapes the control API speaks, shared by its server and its clients: status rows,
readiness, metrics. Pure: no sockets, no event loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from a3s_dev.core.events import LogLine
from a3s_dev.core.state import READY_STATES, ServiceState, ServiceStatus

_READY = frozenset(s.value for s in READY_STATES)


@dataclass(frozen=True)
class Readiness:
    """Where waiting for a set of services stands."""

    done: bool
    failures: tuple[tuple[str, str], ...] = ()  # (name, why) of every service that failed
    waiting: tuple[tuple[str, str], ...] = ()  # (name, state) not ready yet, in order
    ready: frozenset[str] = frozenset()  # ready now, or earlier in this wait (`was_ready`)

    @property
    def failed(self) -> str | None:
        """The first service that failed, when one did."""
        return self.failures[0][0] if self.failures else None

    @property
    def reason(self) -> str | None:
        return self.failures[0][1] if self.failures else None


def readiness(
    services: Sequence[dict[str, Any]],
    names: Sequence[str],
    since: float | None = None,
    was_ready: frozenset[str] = frozenset(),
) -> Readiness:
    """Decide from status dicts whether `names` are all ready (running or completed), or some failed.

    A service in `was_ready` (ready earlier in the same wait) counts as ready whatever it does
    now: a service that exits 0 right after it was ready did become ready. Failed are: a
    `failed` service; one in `backoff` after a non-zero exit that was never ready (it crashes
    while starting: waiting for its next attempt would hide why); with `since` (when the start
    was requested), one spawned after it that is `stopped` again (it exited 0 under on-failure
    and will not come back). A clean exit under `restart = "always"` is not a failure: it comes back.
    """
    by_name = {s["name"]: s for s in services}
    waiting: list[tuple[str, str]] = []
    failures: list[tuple[str, str]] = []
    ready: set[str] = set()
    for name in names:
        svc = by_name.get(name)
        if svc is None:
            continue
        state = svc["state"]
        if name in was_ready or (state in _READY and svc.get("health") != "unhealthy"):
            ready.add(name)
            continue
        crashed = state == ServiceState.BACKOFF.value and svc.get("exit_code") not in (0, None)
        exited = since is not None and state == ServiceState.STOPPED.value and (svc.get("started_at") or 0.0) >= since
        if state == ServiceState.FAILED.value or crashed or exited:
            code = svc.get("exit_code")
            failures.append((name, svc.get("reason") or (f"exit code {code}" if code is not None else state)))
        else:
            probe = svc.get("probe")
            waiting.append((name, f"{state}: {probe}" if probe else state))
    return Readiness(not waiting and not failures, tuple(failures), tuple(waiting), frozenset(ready))


MAX_DIGITS = 9  # a count in a query: more digits than any count a3s keeps is refused, not parsed


def parse_count(text: str) -> int | None:
    """A whole number of 0 or more as a query gives it, or None: only ASCII digits (`str.isdigit`
    takes `²` too, and `int("²")` then fails), at most MAX_DIGITS of them."""
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        return None
    return int(text)


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
    sampled = [s for s in statuses if s.cpu_seconds is not None and s.rss is not None]
    out += [
        "# HELP a3s_service_cpu_seconds_total CPU time of the service's process group (children included).",
        "# TYPE a3s_service_cpu_seconds_total counter",
    ]
    out += [f'a3s_service_cpu_seconds_total{{service="{_label(s.name)}"}} {s.cpu_seconds:.2f}' for s in sampled]
    out += [
        "# HELP a3s_service_memory_bytes Resident memory of the service's process group (children included).",
        "# TYPE a3s_service_memory_bytes gauge",
    ]
    out += [f'a3s_service_memory_bytes{{service="{_label(s.name)}"}} {s.rss}' for s in sampled]
    return "\n".join(out) + "\n"


def log_dict(line: LogLine) -> dict[str, Any]:
    return {"service": line.service, "text": line.text, "at": line.at, "stream": line.stream}


