"""Restart policy: whether and when a service that exited is started again, and what becomes of it
(`after_exit`). Pure; the clock is injected."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from a3s_dev.config.model import RestartMode, ServiceDef
from a3s_dev.core.state import ServiceState, exited, format_delay, restarting_in


class RestartPolicy(Protocol):
    """Decides restarts. The supervisor tells it when a service became healthy and asks it on each exit."""

    def healthy(self, name: str) -> None:
        """The service `name` just became healthy (starts the uptime that resets the delay)."""

    def decide(self, service: ServiceDef, exit_code: int) -> float | None:
        """Seconds to wait before restarting after `exit_code`, or None to leave it down."""

    def reset(self, name: str) -> None:
        """Forget the history of `name` (a manual start or restart)."""


def wants_restart(service: ServiceDef, exit_code: int) -> bool:
    """The restart mode alone: on-failure restarts non-zero exits, always restarts any exit, never none.

    A oneshot task that exited 0 is done and never restarted; `always` counts as `on-failure` for it.
    """
    if service.oneshot:
        return exit_code != 0 and service.restart is not RestartMode.NEVER
    if service.restart is RestartMode.ALWAYS:
        return True
    if service.restart is RestartMode.ON_FAILURE:
        return exit_code != 0
    return False


@dataclass
class ExponentialBackoff:
    """1, 2, 4, 8, 16, 30, 30 … seconds; back to the first delay after `reset_after` s of healthy uptime."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    reset_after: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _attempts: dict[str, int] = field(default_factory=dict)
    _healthy_at: dict[str, float] = field(default_factory=dict)

    def delay(self, attempt: int) -> float:
        """The delay before restart number `attempt` (0-based)."""
        return min(self.cap, self.first * self.factor**attempt)

    def healthy(self, name: str) -> None:
        self._healthy_at[name] = self.clock()

    def decide(self, service: ServiceDef, exit_code: int) -> float | None:
        name = service.name
        since = self._healthy_at.pop(name, None)
        if since is not None and self.clock() - since >= self.reset_after:
            self._attempts[name] = 0
        if not wants_restart(service, exit_code):
            return None
        attempt = self._attempts.get(name, 0)
        self._attempts[name] = attempt + 1
        return self.delay(attempt)

    def reset(self, name: str) -> None:
        self._attempts.pop(name, None)
        self._healthy_at.pop(name, None)


@dataclass(frozen=True)
class Outcome:
    """What becomes of a service whose process exited on its own: its new state and reason, the
    line a3s says, and, for `backoff`, the seconds until it is started again."""

    state: ServiceState
    reason: str
    said: str
    exit_code: int
    delay: float | None = None


def after_exit(
    service: ServiceDef,
    code: int,
    policy: RestartPolicy,
    *,
    failure: str | None = None,
    cannot_run: str | None = None,
) -> Outcome:
    """Decide, once, between completed, stopped, backoff and failed for `service` that exited with
    `code`. `failure`: why the supervisor ended it itself (not ready in time, unhealthy), which
    makes any exit a failure; `cannot_run`: the shell said the command is not there (no retry)."""
    name = service.name
    if cannot_run is not None:
        return Outcome(ServiceState.FAILED, cannot_run, f"{name} failed: {cannot_run}", code)
    if failure is not None:
        code = code or 1
        delay = policy.decide(service, code)
        if delay is None:
            return Outcome(ServiceState.FAILED, failure, f"{name} failed: {failure}", code)
        reason = f"{failure}, restarting in {format_delay(delay)}"
        return Outcome(ServiceState.BACKOFF, reason, f"{name} {reason}", code, delay)
    if service.oneshot and code == 0:
        return Outcome(ServiceState.COMPLETED, exited(0), f"{name} completed", 0)
    delay = policy.decide(service, code)
    if delay is None:
        if code == 0:
            return Outcome(ServiceState.STOPPED, exited(0), f"{name} exited ({exited(0)})", 0)
        return Outcome(ServiceState.FAILED, exited(code), f"{name} failed ({exited(code)})", code)
    return Outcome(
        ServiceState.BACKOFF, restarting_in(code, delay), f"{name} exited ({exited(code)}), restarting in {format_delay(delay)}",
        code, delay,
    )
