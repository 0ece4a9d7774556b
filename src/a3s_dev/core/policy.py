"""Restart policy: whether and when a service that exited is started again. Pure; the clock is injected."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from a3s_dev.config.model import RestartMode, ServiceDef


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
