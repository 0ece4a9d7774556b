"""Typed events and the in-process bus the supervisor publishes them on.

The supervisor is the only publisher. Log sinks, the control API, the proxy and the
watcher subscribe. Callbacks run synchronously inside `publish`, so they must be cheap
and must never block: a consumer that needs to do I/O hands the event to its own
queue or buffer (see `logs.TerminalSink`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from a3s_dev.core.state import ServiceState


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
class ProbeChanged:
    """The text of a service's last probe result changed (`GET /health → 500`, `connection
    refused`): everyone who shows it (status, the proxy's pages, the dashboard) says the same."""

    service: str
    probe: str | None
    at: float


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    """The supervisor runs a changed A3sfile now (`a3s up` applied it): whoever copied the
    services (the proxy's registration) takes them anew from `supervisor.config`."""

    at: float
    service: str = ""  # no one service: the whole project


@dataclass(frozen=True, slots=True)
class UsageSampled:
    """CPU and memory of the running services were sampled anew (every few seconds): who shows
    them elsewhere (the proxy, for the dashboard) takes the figures from `status`."""

    at: float
    service: str = ""  # every running service


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of output. `service` is "a3s" for the orchestrator's own messages."""

    service: str
    text: str  # without the trailing newline
    at: float
    stream: str = "stdout"  # "stdout" | "stderr" | "a3s"


@dataclass(frozen=True, slots=True)
class LogBatch:
    """The lines of one service read in one go. Only subscribers that name LogBatch get these;
    everyone else gets one LogLine per line, so a chatty service costs them per line and
    costs batch subscribers per read."""

    service: str
    lines: tuple[str, ...]
    at: float
    stream: str = "stdout"

    def split(self) -> list[LogLine]:
        return [LogLine(self.service, text, self.at, self.stream) for text in self.lines]


Event = StateChanged | HealthChanged | ProbeChanged | ConfigApplied | UsageSampled | LogLine | LogBatch
Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, in subscription order.

    A subscriber may name the event kinds it wants; the supervisor asks `wants_lines()`
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

    def publish(self, event: Event) -> None:
        """Deliver `event`; a LogBatch goes whole to those who asked for LogBatch, line by line to the rest."""
        kind = type(event)
        if kind is LogBatch:
            self._publish_batch(event)  # type: ignore[arg-type]
            return
        for callback, kinds in tuple(self._subscribers):
            if kinds is None or kind in kinds:
                callback(event)

    def _publish_batch(self, batch: LogBatch) -> None:
        lines: list[LogLine] | None = None
        for callback, kinds in tuple(self._subscribers):
            if kinds is not None and LogBatch in kinds:
                callback(batch)
            elif kinds is None or LogLine in kinds:
                if lines is None:
                    lines = batch.split()
                for line in lines:
                    callback(line)

    def wants_lines(self) -> bool:
        """True when some subscriber would receive output (as LogLine or LogBatch)."""
        return any(
            kinds is None or LogLine in kinds or LogBatch in kinds for _, kinds in self._subscribers
        )
