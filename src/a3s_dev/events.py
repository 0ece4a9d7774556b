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
    """Fan-out of events to subscribers, in subscription order.

    A subscriber may name the event kinds it wants; the supervisor asks `wants(LogLine)`
    before building one event per output line, so that a chatty service costs nothing
    when only state changes are being watched.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, tuple[type, ...] | None]] = []

    def subscribe(
        self, callback: Subscriber, kinds: tuple[type, ...] | None = None
    ) -> Callable[[], None]:
        """Register `callback` (for every event, or only those of `kinds`); returns a function that unsubscribes it."""
        entry = (callback, kinds)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def wants(self, kind: type) -> bool:
        """True when some subscriber would receive an event of `kind`."""
        return any(kinds is None or kind in kinds for _, kinds in self._subscribers)

    def publish(self, event: Event) -> None:
        kind = type(event)
        for callback, kinds in tuple(self._subscribers):
            if kinds is None or kind in kinds:
                callback(event)
