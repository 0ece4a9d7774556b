"""The background supervisor of `a3s up -d`: its entry point, forking it, and waiting for readiness.

The parent (`a3s up -d`) never parses the A3sfile: the child does, and a bad config shows
up as the child's exit with its one-line error in `.a3s/supervisor.log`, which the
parent prints. The parent talks to the child only through the control socket.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from a3s_dev import runtime
from a3s_dev.errors import A3sError

if TYPE_CHECKING:
    from a3s_dev.config import DevConfig
    from a3s_dev.control import ControlClient
    from a3s_dev.runtime import RuntimePaths
    from a3s_dev.session import Attachment

EXIT_ALREADY_RUNNING = 3  # the child lost the lock race to another supervisor
POLL = 0.01  # seconds between looks at the socket while a supervisor boots
TAIL = 20
BANNER = "a3s: supervisor "  # the first line the background supervisor writes to its log
ORPHANS = "a3s: ended the process groups a killed supervisor left: "


@dataclass(frozen=True)
class UpOptions:
    """What `a3s up` was asked to start and with which attachments."""

    services: tuple[str, ...] = ()
    deps: bool = True
    proxy: bool = True
    watch: bool = True


# ---------------------------------------------------------------------------- the child


def supervisor_args(a3sfile: Path, opts: UpOptions) -> list[str]:
    """The arguments of `main` (also `python -m a3s_dev.daemon ARGS`) for this A3sfile and options."""
    argv = ["--file", str(a3sfile)]
    if not opts.deps:
        argv.append("--no-deps")
    if not opts.proxy:
        argv.append("--no-proxy")
    if not opts.watch:
        argv.append("--no-watch")
    return argv + ["--", *opts.services]


def attachments(config: DevConfig, paths: RuntimePaths, opts: UpOptions) -> list[Attachment]:
    """The edge modules a supervisor runs beside its services: the control API always, the proxy
    unless `--no-proxy` or port 0, the watcher unless `--no-watch` or nothing is watched.
    Used by the foreground `a3s up` and the background supervisor alike."""
    import functools

    found: list[Attachment] = [functools.partial(_serve_control, state_dir=paths.state_dir)]
    port = config.settings.proxy_port
    if opts.proxy and port:
        from a3s_dev import proxy

        found.append(functools.partial(proxy.serve_proxy, port=port))
    watched = any(s.watch is not None for s in config.services)
    if opts.watch and watched:
        from a3s_dev import watcher

        found.append(watcher.watch_services)
    return found


async def _serve_control(supervisor: Any, *, state_dir: Path, task_status: Any) -> None:
    from a3s_dev import control

    await control.serve_control(supervisor, state_dir, task_status=task_status)


async def serve(
    config: DevConfig, paths: RuntimePaths, opts: UpOptions, prespawned: dict[str, Any]
) -> None:
    """Run the stack (session.serve) with its attachments until `down`, SIGTERM, SIGINT or SIGHUP;
    every service is stopped before this returns."""
    import signal

    import anyio

    from a3s_dev.logs import FileSink
    from a3s_dev.session import serve as serve_session

    sink = FileSink(paths.logs_dir)
    holder: list[Any] = []

    async def on_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if holder:
                    holder[0].announce(f"{signal.Signals(signum).name}: stopping every service")
                    await holder[0].shutdown()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signals)
            await serve_session(
                config,
                services=list(opts.services) or None,
                deps=opts.deps,
                attachments=attachments(config, paths, opts),
                sinks=[sink],
                prespawned=prespawned,
                on_supervisor=holder.append,
                # The control API is the only window `up -d` and `status` have on a background
                # supervisor, so it loads at once (aiohttp in a thread) instead of after start-up.
                attach_after=0.0,
            )
            tg.cancel_scope.cancel()
    finally:
        sink.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of the background supervisor: load the A3sfile, take the lock, end what a killed
    predecessor left, serve until `down`. Exit 3 when another supervisor holds the lock."""
    parser = argparse.ArgumentParser(prog="a3s-supervisor")
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--no-deps", action="store_true")
    parser.add_argument("--no-proxy", action="store_true")
    parser.add_argument("--no-watch", action="store_true")
    parser.add_argument("services", nargs="*")
    args = parser.parse_args(argv)
    opts = UpOptions(tuple(args.services), not args.no_deps, not args.no_proxy, not args.no_watch)
    paths = runtime.paths_for(args.file)
    lock = runtime.SupervisorLock(paths)
    prespawned: dict[str, Any] = {}
    try:
        from a3s_dev.config import load
        from a3s_dev.session import prespawn, reserve_proxy_port, wanted_services

        config = load(args.file)
        wanted = wanted_services(config, opts.services or None, opts.deps)
        lock.acquire()
    except runtime.AlreadyRunning as exc:
        print(f"a3s: {exc.message}", file=sys.stderr, flush=True)
        return EXIT_ALREADY_RUNNING
    except A3sError as exc:
        print(f"a3s: {exc.message}", file=sys.stderr, flush=True)
        return exc.exit_code
    try:
        # We hold the lock, so whatever groups.json still lists belongs to a dead supervisor.
        orphans = runtime.recorded_orphans(paths)
        if orphans:
            runtime.end_groups(orphans)
            names = ", ".join(o.service for o in orphans)
            print(f"{ORPHANS}{names}", flush=True)
        print(f"{BANNER}{os.getpid()} serving {paths.a3sfile}", flush=True)
        # Like the foreground: the first wave runs before asyncio and aiohttp are even imported.
        reserve_proxy_port(config.settings.proxy_port if opts.proxy else 0)
        prespawned = prespawn(config, wanted)
        import anyio

        anyio.run(
            serve, config, paths, replace(opts, services=tuple(wanted), deps=False), prespawned
        )
        return 0
    except BaseException as exc:
        for proc in prespawned.values():
            if proc.returncode is None:
                proc.kill()
        from a3s_dev.session import _a3s_error

        error = _a3s_error(exc)
        if error is None:
            raise
        print(f"a3s: {error.message}", file=sys.stderr, flush=True)
        return error.exit_code
    finally:
        lock.release()


# ---------------------------------------------------------------------------- the parent


class Forked:
    """A forked background supervisor, watched like a Popen (poll, wait, returncode)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode


SUPERVISOR_LOG_BYTES = 1024 * 1024


def _rotate_supervisor_log(paths: RuntimePaths) -> int:
    """Move `.a3s/supervisor.log` to `supervisor.log.1` once it passed 1 MB (no supervisor
    writes to it now: none runs); return its size, where the new supervisor's lines start."""
    try:
        size = paths.supervisor_log.stat().st_size
    except FileNotFoundError:
        return 0
    if size < SUPERVISOR_LOG_BYTES:
        return size
    os.replace(paths.supervisor_log, paths.supervisor_log.with_name(paths.supervisor_log.name + ".1"))
    return 0


def fork(paths: RuntimePaths, opts: UpOptions) -> Forked:
    """Start the background supervisor by forking this (single-threaded) process.

    Cheaper than a new interpreter by its start-up and imports (~70 ms, more on a busy
    machine), which is most of what `up -d` adds to the foreground's time to healthy.
    The child gets its own session and `.a3s/supervisor.log` as stdout and stderr.
    """
    runtime.ensure_state_dir(paths)
    log = os.open(paths.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would write the parent's buffered output again
    pid = os.fork()
    if pid:
        os.close(log)
        return Forked(pid)
    code = 1
    try:
        os.setsid()  # the terminal's Ctrl-C and hang-up must not reach it
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.chdir(paths.a3sfile.parent)
        code = main(supervisor_args(paths.a3sfile, opts))
    except BaseException:  # noqa: BLE001 -- the parent's stack is below us: never return into it
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Progress:
    """Shows what `up` still waits for: one rich live line on a TTY, a plain line per change otherwise."""

    def __init__(self, out: IO[str], color: bool) -> None:
        self.out = out
        self.tty = out.isatty()
        self.color = color
        self._last: str | None = None
        self._live: Any = None

    def waiting(self, waiting: Sequence[tuple[str, str]]) -> None:
        text = "waiting for " + ", ".join(f"{name} ({state})" for name, state in waiting)
        if text == self._last:
            return
        self._last = text
        if self.tty:
            if self._live is None:
                from rich.console import Console
                from rich.status import Status

                console = Console(file=self.out, no_color=not self.color, highlight=False)
                self._live = Status(self._line(text), console=console)
                self._live.start()
            else:
                self._live.update(self._line(text))
        else:
            print(f"a3s: {text}", file=self.out, flush=True)

    def _line(self, text: str) -> str:
        # One line, cut with an ellipsis: a wrapped live line redraws badly.
        import shutil

        room = shutil.get_terminal_size().columns - 3  # the spinner and its space
        return text if len(text) <= room else text[: max(0, room - 1)] + "…"

    def done(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def say(self, text: str) -> None:
        self.done()
        print(text, file=self.out, flush=True)


def wait_ready(
    client: ControlClient,
    names: Sequence[str],
    since: float,
    progress: Progress,
    err: IO[str],
    *,
    timeout: float | None = None,
) -> int:
    """Poll the supervisor until `names` are ready (0) or one failed (1, naming it with its last log lines)."""
    from a3s_dev import control

    began = time.monotonic()
    seq: int | None = None
    while True:
        # Long-polled: the answer comes as soon as a state changes (NotRunning: the caller explains).
        answer = client.status(after=seq, wait=1.0)
        seq, services = answer.get("seq"), answer["services"]
        state = control.readiness(services, names, since=since)
        if state.done:
            progress.say(f"a3s: ready: {', '.join(names)} ({time.monotonic() - began:.2f}s)")
            return 0
        if state.failed:
            progress.done()
            print(f"a3s: {state.failed} failed: {state.reason}", file=err)
            try:
                lines = client.tail(state.failed, TAIL)
            except A3sError:
                lines = []
            if lines:
                print(f"a3s: last {len(lines)} log lines of {state.failed}:", file=err)
                for line in lines:
                    print(f"  {line}", file=err)
            return 1
        if timeout is not None and time.monotonic() - began > timeout:
            progress.done()
            print(f"a3s: not ready after {timeout:g}s: {state.waiting[0][0]}", file=err)
            return 1
        progress.waiting(state.waiting)


def start_and_wait(
    client: ControlClient,
    opts: UpOptions,
    progress: Progress,
    err: IO[str],
    since: float | None = None,
) -> int:
    """Ask a running supervisor to start `opts.services` (and deps) and wait until they are ready.

    `since`: when the services were asked for; a service spawned after it and stopped again
    has exited on its own. Default: the moment the supervisor received this request.
    """
    answer = client.start(list(opts.services) or None, deps=opts.deps)
    names = answer["waiting_for"]
    return wait_ready(client, names, since or float(answer.get("requested_at", 0.0)), progress, err)


def _new_output(paths: RuntimePaths, offset: int) -> str:
    """What the background supervisor wrote since `offset`, without its start banner."""
    try:
        with open(paths.supervisor_log, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith(BANNER)).strip()


def up(
    a3sfile: Path,
    opts: UpOptions,
    *,
    detach: bool,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    color: bool = True,
    boot_timeout: float = 60.0,
) -> int:
    """`a3s up -d`, or `a3s up` with a supervisor already running: start and wait until ready.

    Returns the exit code. Without `detach` and with no supervisor running it returns -1,
    meaning: run in the foreground. Ctrl-C stops the waiting, not the supervisor.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    progress = Progress(out, color)
    try:
        return _up(
            a3sfile, opts, progress, detach=detach, out=out, err=err, boot_timeout=boot_timeout
        )
    finally:
        progress.done()  # a live line left running would leave the cursor hidden


def _answers(paths: RuntimePaths) -> bool:
    """A supervisor serves the control socket (one raw request: no http.client import needed)."""
    from a3s_dev.fast import get_json

    return get_json(str(paths.socket), "/healthz", timeout=2.0) == {"status": "ok"}


def _up(
    a3sfile: Path,
    opts: UpOptions,
    progress: Progress,
    *,
    detach: bool,
    out: IO[str],
    err: IO[str],
    boot_timeout: float,
) -> int:
    paths = runtime.paths_for(a3sfile)
    for _ in range(3):  # a lost lock race sends us back to talk to the winner
        if _answers(paths):
            return _ask_running(paths, opts, progress, err)
        if runtime.lock_held(paths):
            # A supervisor is starting (it takes the lock before it serves): wait for its socket.
            deadline = time.monotonic() + boot_timeout
            while not _answers(paths) and runtime.lock_held(paths) and time.monotonic() < deadline:
                time.sleep(POLL)
            continue
        if not detach:
            return -1
        # Spawn first, then load the client: the imports overlap with the supervisor's boot.
        # The supervisor ends what a SIGKILLed predecessor left once it holds the lock.
        offset = _rotate_supervisor_log(paths)
        spawned_at = time.time()
        child = fork(paths, opts)
        code = _wait_spawned(
            child, paths, opts, progress, out, err, offset, spawned_at, boot_timeout
        )
        if code is None:
            continue  # it lost the lock race: talk to the winner
        return code
    print("a3s: could not reach the running supervisor", file=err)
    return 1


def _ask_running(paths: RuntimePaths, opts: UpOptions, progress: Progress, err: IO[str]) -> int:
    from a3s_dev.control import ControlClient, NotRunning

    try:
        return start_and_wait(ControlClient(paths.socket), opts, progress, err)
    except NotRunning:
        progress.done()
        print("a3s: the supervisor stopped (see `a3s logs a3s`)", file=err)
        return 1


def _wait_spawned(
    child: Forked,
    paths: RuntimePaths,
    opts: UpOptions,
    progress: Progress,
    out: IO[str],
    err: IO[str],
    offset: int,
    spawned_at: float,
    boot_timeout: float,
) -> int | None:
    """Wait for the new supervisor to serve, then for readiness; None when it lost the lock race."""
    from a3s_dev.control import ControlClient, ControlError, NotRunning

    client = ControlClient(paths.socket)
    deadline = time.monotonic() + boot_timeout
    while child.poll() is None and not _answers(paths):
        if time.monotonic() > deadline:
            print(
                f"a3s: the supervisor did not start in {boot_timeout:g}s; see {paths.supervisor_log}",
                file=err,
            )
            return 1
        time.sleep(POLL / 2)
    if child.returncode is None:
        for line in _new_output(paths, offset).splitlines():
            if line.startswith(ORPHANS):  # it ended what a SIGKILLed predecessor left: say so
                print(line, file=out, flush=True)
        try:
            # The child started the services itself; this request only names what to wait for.
            return start_and_wait(client, opts, progress, err, since=spawned_at)
        except (NotRunning, ControlError) as exc:
            # It went away while starting (e.g. the proxy port is taken): its own words say why.
            progress.done()
            try:
                child.wait(timeout=boot_timeout)
            except subprocess.TimeoutExpired:
                pass
            print(_new_output(paths, offset) or f"a3s: {exc.message}", file=err)
            return 1
    if child.returncode == EXIT_ALREADY_RUNNING:
        return None
    output = _new_output(paths, offset)
    print(output or f"a3s: the supervisor exited with code {child.returncode}", file=err)
    return child.returncode if child.returncode in (1, 2) else 1


if __name__ == "__main__":
    sys.exit(main())
