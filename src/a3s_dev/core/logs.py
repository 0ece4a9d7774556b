"""Service output: line splitting, the LogSink protocol, and the terminal and file sinks.

Sinks subscribe to the supervisor's bus (`subscribe_sink`) and get whole batches of lines
(all the complete lines of one pipe read), so that a chatty service costs a few joins per
read, not Python work per line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Protocol

from a3s_dev.config.model import ProbeKind, ServiceDef
from a3s_dev.core.events import Event, EventBus, LogBatch

A3S = "a3s"  # the name a3s's own messages are shown under


class LineSplitter:
    """Bytes in, whole decoded lines out. Lines of any length pass whole; invalid UTF-8 is replaced.

    Reads come in arbitrary chunks (a 1 MB line arrives in many), so the unterminated
    tail is kept as bytes until its newline arrives; only complete lines are decoded,
    which is why a multi-byte character split across two reads survives.
    """

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial: list[bytes] = []

    def feed(self, data: bytes) -> list[str]:
        """The lines completed by `data` (without their newlines)."""
        end = data.rfind(b"\n")
        if end < 0:
            if data:
                self._partial.append(data)
            return []
        head = data[:end]
        if self._partial:
            self._partial.append(head)
            head = b"".join(self._partial)
            self._partial = []
        if end + 1 < len(data):
            self._partial.append(data[end + 1 :])
        return head.decode("utf-8", "replace").split("\n")

    def flush(self) -> list[str]:
        """The last line when the stream ended without a newline (empty list otherwise)."""
        if not self._partial:
            return []
        rest = b"".join(self._partial)
        self._partial = []
        return [rest.decode("utf-8", "replace")]


class LogSink(Protocol):
    """A consumer of service output. `write` must be cheap and must never block the event loop."""

    def write(self, service: str, lines: Sequence[str], at: float, stream: str) -> None:
        """Take a batch of lines of `service` read at `at` (time.time())."""

    def close(self) -> None:
        """Flush and release resources; called once at shutdown."""


def probe_requests(service: ServiceDef) -> re.Pattern[str] | None:
    """What a line of `service`'s own log looks like when it records one of a3s's HTTP probes
    (an access-log line: uvicorn's `"GET /health HTTP/1.1" 500`, a `GET /health` of any other
    server); None when nothing probes it over HTTP. The probe's method and path tell it apart
    (its `User-Agent: a3s-health/...` rarely reaches a log)."""
    probe = service.probe
    if probe is None or probe.type is not ProbeKind.HTTP:
        return None
    return re.compile(r"\bGET " + re.escape(probe.path) + r'(?=[\s"?]|$)')


def without_probe_requests(lines: Iterable[str], service: ServiceDef) -> list[str]:
    """`lines` less those recording a3s's own probe requests (the error page, the dashboard)."""
    pattern = probe_requests(service)
    return list(lines) if pattern is None else [line for line in lines if not pattern.search(line)]


def subscribe_sink(bus: EventBus, sink: LogSink) -> Callable[[], None]:
    """Feed `sink` every LogBatch published on `bus` (a sink is one more subscriber of the
    supervisor's output); returns the unsubscribe function."""

    def on_batch(event: Event) -> None:
        assert isinstance(event, LogBatch)
        sink.write(event.service, event.lines, event.at, event.stream)

    return bus.subscribe(on_batch, (LogBatch,))


# ----------------------------------------------------------------------------- terminal

# Bright, readable on dark and light backgrounds; red is left for a3s's own errors.
_PALETTE = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)
_A3S_COLOR = "1;37"


def color_for(name: str) -> str:
    """A stable SGR color for `name` (crc32, not hash(), so it is the same on every run)."""
    if name == A3S:
        return _A3S_COLOR
    return str(_PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)])


def service_colors(names: Iterable[str]) -> dict[str, str]:
    """Each service's SGR color, by declaration order so that neighbours never share one (up to
    10 services); a3s's own lines in bold white. The terminal and the dashboard use these."""
    services = [n for n in names if n != A3S]
    colors = {n: str(_PALETTE[i % len(_PALETTE)]) for i, n in enumerate(services)}
    colors[A3S] = _A3S_COLOR
    return colors


def use_color(stream: IO[str] | IO[bytes] | None, no_color: bool = False) -> bool:
    """Color only on a TTY, and never with --no-color or NO_COLOR set."""
    if no_color or os.environ.get("NO_COLOR"):
        return False
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Writer(threading.Thread):
    """Writes queued bytes to a file descriptor on its own thread.

    A terminal that stops reading (scrolled, paused with Ctrl-S, a slow SSH link) would
    otherwise block the event loop, which would stop reading the children's pipes and so
    block the children. Past `limit` pending bytes we drop, and say so in the output.
    """

    def __init__(self, out: IO[bytes], limit: int) -> None:
        super().__init__(name="a3s-terminal", daemon=True)
        self._out = out
        self._limit = limit
        self._cond = threading.Condition()
        self._pending: list[bytes] = []
        self._size = 0
        self._dropped = 0
        self._closed = False

    def put(self, data: bytes, lines: int) -> None:
        with self._cond:
            if self._size + len(data) > self._limit:
                self._dropped += lines
                return
            self._pending.append(data)
            self._size += len(data)
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed and not self._dropped:
                    self._cond.wait()
                chunks, self._pending, self._size = self._pending, [], 0
                dropped, self._dropped = self._dropped, 0
                closed = self._closed
            if chunks or dropped:
                data = b"".join(chunks)
                if dropped:
                    data += f"a3s | {dropped} lines not shown: the terminal is too slow (see .a3s/logs)\n".encode()
                try:
                    self._out.write(data)
                    self._out.flush()
                except (OSError, ValueError):
                    return  # the terminal is gone; the file sink still has every line
            elif closed:
                return

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self.join(timeout)


class TerminalSink:
    """`HH:MM:SS name | line`, names padded to the longest, one stable color per service."""

    def __init__(
        self,
        names: Iterable[str],
        out: IO[bytes] | None = None,
        *,
        color: bool | None = None,
        max_pending: int = 64 * 1024 * 1024,
    ) -> None:
        self._out = out if out is not None else sys.stdout.buffer
        self._color = use_color(self._out) if color is None else color
        names = list(names)
        self._width = max([len(A3S), *(len(n) for n in names)])
        # Declaration order picks the colors, so neighbours never share one (up to 10 services);
        # a name not declared falls back to its hash.
        self._colors = service_colors(names)
        self._prefix_cache: dict[tuple[str, int], str] = {}
        self._writer = _Writer(self._out, max_pending)
        self._writer.start()

    def _prefix(self, service: str, second: int) -> str:
        key = (service, second)
        prefix = self._prefix_cache.get(key)
        if prefix is None:
            if len(self._prefix_cache) > 512:
                self._prefix_cache.clear()
            hms = time.strftime("%H:%M:%S", time.localtime(second))
            label = f"{hms} {service.ljust(self._width)} |"
            color = self._colors.get(service) or color_for(service)
            prefix = f"\x1b[{color}m{label}\x1b[0m " if self._color else label + " "
            self._prefix_cache[key] = prefix
        return prefix

    def write(self, service: str, lines: Sequence[str], at: float, stream: str) -> None:
        if len(service) > self._width:
            self._width = len(service)
            self._prefix_cache.clear()
        prefix = self._prefix(service, int(at))
        text = prefix + ("\n" + prefix).join(lines) + "\n"
        self._writer.put(text.encode("utf-8", "replace"), len(lines))

    def close(self) -> None:
        self._writer.close(timeout=5.0)


# ----------------------------------------------------------------------------- files

ROTATE_BYTES = 10 * 1024 * 1024
KEEP_FILES = 3
RECOVERED_AFTER = 5.0  # seconds of writes that work before the log files are said to work again


def format_stamp(at: float) -> str:
    """`2026-11-23T10:29:21.123` in local time, the prefix of every line in `.a3s/logs/*.log`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def run_marker(at: float) -> str:
    """The line each `a3s up` writes into the history, so that runs can be told apart."""
    return time.strftime("── a3s up %Y-%m-%d %H:%M:%S ──", time.localtime(at))


class FileSink:
    """One `<name>.log` per service under `folder`, each line timestamped; past `rotate_bytes`
    a file becomes `<name>.log.1` (older ones shift to .2, .3 …), `keep` of them kept.

    Writing never blocks or stops a service: when the disk is full the lines are dropped, and
    `on_trouble` is told once when that starts and once writing has worked again for
    RECOVERED_AFTER seconds (a short line that squeezes in is no recovery), with the number of
    lines truly lost. A line cut by a full disk is ended before the next one is written.
    """

    def __init__(
        self,
        folder: Path,
        *,
        rotate_bytes: int = ROTATE_BYTES,
        keep: int = KEEP_FILES,
        on_trouble: Callable[[str], None] | None = None,
    ) -> None:
        self._folder = folder
        self._rotate = rotate_bytes
        self._keep = keep
        self._files: dict[str, tuple[IO[bytes], list[int]]] = {}
        self._made = False
        self._on_trouble = on_trouble
        self._failing: str | None = None  # why writing fails, while it does
        self._failed_at = 0.0  # time.monotonic() of the last failed write
        self._dropped = 0
        self._torn: set[str] = set()  # services whose file ends in the middle of a line

    def _open(self, service: str) -> tuple[IO[bytes], list[int]]:
        entry = self._files.get(service)
        if entry is None:
            if not self._made:
                self._folder.mkdir(parents=True, exist_ok=True)
                self._made = True
            # unbuffered: a write says how much of it reached the file (a full disk cuts it short)
            f = open(self._folder / f"{service}.log", "ab", buffering=0)  # noqa: SIM115 - held open until close()
            entry = (f, [f.tell()])
            self._files[service] = entry
        return entry

    def write(self, service: str, lines: Sequence[str], at: float, stream: str) -> None:
        stamp = format_stamp(at) + " "
        data = (stamp + ("\n" + stamp).join(lines) + "\n").encode("utf-8", "replace")
        if service in self._torn:
            data = b"\n" + data  # end the line a full disk cut, so that this one starts whole
        try:
            f, size = self._open(service)
        except OSError as exc:
            self._trouble(service, exc, len(lines))
            return
        done, error = _write_all(f, data)  # unbuffered: `a3s logs -f` elsewhere sees it at once
        size[0] += done
        if error is not None:
            kept = data[:done].count(b"\n") - (service in self._torn and done > 0)
            if done:
                self._torn.discard(service)
                if not data[:done].endswith(b"\n"):
                    self._torn.add(service)
            self._trouble(service, error, len(lines) - max(0, kept))
            return  # a full disk must not take the stack down; the terminal still shows it
        self._torn.discard(service)
        if self._failing is not None and time.monotonic() - self._failed_at >= RECOVERED_AFTER:
            self._recovered()
        if size[0] >= self._rotate:
            self._rotate_file(service)

    def _trouble(self, service: str, exc: OSError, count: int) -> None:
        self._dropped += count
        self._failed_at = time.monotonic()
        entry = self._files.pop(service, None)
        if entry is not None:  # opened again at the next line: a file deleted to make room is made anew
            with contextlib.suppress(OSError):
                entry[0].close()
        if self._failing is None:
            self._failing = exc.strerror or str(exc)
            if self._on_trouble is not None:
                self._on_trouble(
                    f"cannot write the log files in {self._folder} ({self._failing}): lines are shown but not kept"
                )

    def _recovered(self) -> None:
        dropped, self._dropped, self._failing = self._dropped, 0, None
        if self._on_trouble is not None:
            self._on_trouble(f"writing the log files again ({dropped} line{'s' if dropped != 1 else ''} not kept)")

    def _rotate_file(self, service: str) -> None:
        f, _ = self._files.pop(service)
        f.close()
        path = self._folder / f"{service}.log"
        rotate(path, self._keep)

    def close(self) -> None:
        for f, _ in self._files.values():
            with contextlib.suppress(OSError):
                f.close()
        self._files.clear()


def _write_all(f: IO[bytes], data: bytes) -> tuple[int, OSError | None]:
    """Write `data` to the unbuffered `f`; how much was written, and the error that stopped it."""
    done = 0
    while done < len(data):
        try:
            n = f.write(data[done:])
        except OSError as exc:
            return done, exc
        if not n:
            return done, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n
    return done, None


def rotate(path: Path, keep: int) -> None:
    """`x.log` -> `x.log.1`, `x.log.1` -> `x.log.2` … keeping `keep` older files (0: none)."""
    with contextlib.suppress(FileNotFoundError):
        (path.with_name(f"{path.name}.{keep}") if keep else path).unlink()
    for n in range(keep - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(path.with_name(f"{path.name}.{n}"), path.with_name(f"{path.name}.{n + 1}"))
    if keep:
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_name(f"{path.name}.1"))


class MemorySink:
    """Keeps every line in memory: handy for tests and embedding."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def write(self, service: str, lines: Sequence[str], at: float, stream: str) -> None:
        self.lines.extend((service, line) for line in lines)

    def close(self) -> None:
        pass
