"""Typed events and the in-process bus the supervisor publishes them on.

The supervisor is the only publisher. Log sinks, the control API, the proxy and the
watcher subscribe. Callbacks run synchronously inside `publish`, so they must be cheap
and must never block: a consumer that needs to do I/O hands the event to its own
queue or buffer (see `logs.TerminalSink`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from a3s_dev.state import ServiceState


@dataclass(frozen=True, slots=True)
class StateChanged:
    service: str
    old: ServiceState
    new: ServiceState
    reason: str | None
    at: float  # time.time()
    pid: int | None = None
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class HealthChanged:
    service: str
    healthy: bool
    error: str | None
    at: float


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of output. `service` is "a3s" for the orchestrator's own messages."""

    service: str
    text: str  # without the trailing newline
    at: float
    stream: str = "stdout"  # "stdout" | "stderr" | "a3s"


Event = StateChanged | HealthChanged | LogLine
Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Register `callback`; returns a function that unsubscribes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for callback in tuple(self._subscribers):
            callback(event)
