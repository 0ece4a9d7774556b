"""`a3s up -d`: fork the background supervisor, then wait until what was asked for is ready.

The parent never parses the A3sfile: the child does (`run.run_background`), and a bad config
shows up as the child's exit with its one-line error in `.a3s/supervisor.log`, which the
parent prints. The parent talks to the child only through the control socket. The same
waiting serves `a3s up` while a supervisor already runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from a3s_dev.control.api import readiness
from a3s_dev.control.client import ControlClient, ControlError, NotRunning
from a3s_dev.errors import A3sError
from a3s_dev.run import workspace
from a3s_dev.run.options import UpOptions
from a3s_dev.run.prepare import ORPHANS
from a3s_dev.run.workspace import RuntimePaths
from a3s_dev.system import procfs

EXIT_ALREADY_RUNNING = 3  # the background supervisor lost the lock race to another one
BANNER = "a3s: supervisor "  # the first line the background supervisor writes to its log
POLL = 0.01  # seconds between looks at the socket while a supervisor boots
TAIL = 20
SUPERVISOR_LOG_BYTES = 1024 * 1024


class Reporter(Protocol):
    """How the waiting is shown (cli.render.Progress: a live line on a terminal, plain lines otherwise)."""

    def waiting(self, waiting: Sequence[tuple[str, str]]) -> None: ...
    def done(self) -> None: ...
    def say(self, text: str) -> None: ...


# ---------------------------------------------------------------------------- the child


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


def rotate_supervisor_log(paths: RuntimePaths) -> int:
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
    The child gets its own session and `.a3s/supervisor.log` as stdout and stderr, and
    runs `run.run_background` with the very same options.
    """
    workspace.ensure_state_dir(paths)
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
        code = run_background(paths.a3sfile, opts)
    except BaseException:  # noqa: BLE001 -- the parent's stack is below us: never return into it
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_background(a3sfile: Path, opts: UpOptions) -> int:
    """The background supervisor of `a3s up -d` (in the forked child): load the A3sfile, run until
    `down` or a signal; the exit code. Its stdout and stderr are `.a3s/supervisor.log`, where a
    user error is one line; EXIT_ALREADY_RUNNING when another supervisor holds the lock."""
    from a3s_dev.config.load import load
    from a3s_dev.run.serve import ExitHandler, Run

    paths = workspace.paths_for(a3sfile)
    try:
        config = load(a3sfile)
        print(f"{BANNER}{os.getpid()} serving {paths.a3sfile}", flush=True)
        # The control API is the only window `up -d` and `status` have on a background
        # supervisor, so it attaches at once (aiohttp in a thread) instead of after start-up.
        return Run(config, opts, paths, exit_handler=ExitHandler(), attach_after=0.0).execute()
    except workspace.AlreadyRunning as exc:
        print(f"a3s: {exc.message}", flush=True)
        return EXIT_ALREADY_RUNNING
    except A3sError as exc:
        print(exc.printed(), flush=True)
        return exc.exit_code


def _new_output(paths: RuntimePaths, offset: int) -> str:
    """What the background supervisor wrote since `offset`, without its start banner."""
    try:
        with open(paths.supervisor_log, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith(BANNER)).strip()


# ---------------------------------------------------------------------------- waiting


def wait_ready(
    client: ControlClient,
    names: Sequence[str],
    since: float,
    progress: Reporter,
    err: IO[str],
    *,
    timeout: float | None = None,
) -> int:
    """Follow the supervisor until `names` are ready (0) or one failed (1, naming it with its
    last log lines), or `timeout` passed (1, naming what is not ready)."""
    began = time.monotonic()
    seq: int | None = None
    was_ready: frozenset[str] = frozenset()
    while True:
        # Long-polled: the answer comes as soon as a state changes (NotRunning: the caller explains).
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - began))
        answer = client.status(after=seq, wait=1.0 if remaining is None else min(1.0, remaining))
        seq, services = answer.get("seq"), answer["services"]
        state = readiness(services, names, since=since, was_ready=was_ready)
        was_ready = state.ready
        if state.done:
            # From the command's own start: what the user waited, imports and fork included.
            took = time.monotonic() - procfs.started_monotonic()
            progress.say(f"a3s: ready: {', '.join(names)} ({took:.2f}s)")
            return 0
        if state.failures:
            progress.done()
            for name, reason in state.failures:  # every one, not only the first
                try:
                    lines = client.tail(name, TAIL)
                except A3sError:
                    lines = []
                print_failure(f"{name} failed: {reason}", name, lines, err)
            return 1
        if remaining is not None and remaining <= 0:
            progress.done()
            waiting = ", ".join(f"{name} ({st})" for name, st in state.waiting)
            print(f"a3s: not ready after {timeout:g}s: {waiting}; the supervisor keeps running", file=err)
            return 1
        progress.waiting(state.waiting)


def print_failure(headline: str, name: str, lines: Sequence[str], err: IO[str]) -> None:
    """`a3s: api failed: exit code 3`, then the service's last log lines, indented."""
    print(f"a3s: {headline}", file=err)
    if lines:
        count = f"{len(lines)} log line{'s' if len(lines) != 1 else ''}"
        print(f"a3s: last {count} of {name}:", file=err)
        for line in lines:
            print(f"  {line}", file=err)


def _plan(client: ControlClient, opts: UpOptions) -> list[str]:
    """What a start of `opts.services` waits for, asking the supervisor (which knows the graph)."""
    from urllib.parse import urlencode

    query = urlencode([("service", s) for s in opts.services] + [("deps", "1" if opts.deps else "0")])
    return list(client.request("GET", f"/v1/plan?{query}")["waiting_for"])


def start_and_wait(client: ControlClient, opts: UpOptions, progress: Reporter, err: IO[str]) -> int:
    """Ask a running supervisor to start `opts.services` (and deps) and wait until they are ready."""
    answer = client.start(list(opts.services) or None, deps=opts.deps)
    names = answer["waiting_for"]
    since = float(answer.get("requested_at", 0.0))
    return wait_ready(client, names, since, progress, err, timeout=opts.timeout)


def run_place(a3sfile: Path, service: str, *, deps: bool, progress: Reporter) -> tuple[int, dict[str, Any]]:
    """Where and with what environment `a3s run SVC` (and the agents' `run`) runs a command:
    (0, {"dir", "env", "depends_on"}) once SVC's dependencies are up (a background supervisor
    started for them when none runs), else (their `up` exit code, {})."""
    from a3s_dev.run.inspect import service_place

    client = ControlClient(workspace.paths_for(a3sfile).socket)
    place = service_place(a3sfile, client, service)
    if deps and place["depends_on"]:
        code = up(a3sfile, UpOptions(tuple(place["depends_on"]), detach=True), progress)
        if code != 0:
            return code, {}
        place = service_place(a3sfile, client, service)  # from the supervisor now: its automatic ports
    return 0, place


STOPPED_STATES = ("stopped", "completed", "failed")


def wait_for(
    client: ControlClient, services: Sequence[str], *, until: str, timeout: float | None
) -> tuple[bool, list[dict[str, Any]], str]:
    """Until every named service (none named: all) is ready (`until="ready"`) or stopped, one of
    them failed, or `timeout` passed: (done, the services concerned, what to say). Done: those
    services; not: the ones not there yet, each with its state, probe result and reason.
    NothingRunning (ready) when no supervisor answers; stopped is then true at once."""
    from a3s_dev.errors import unknown_service

    began = time.monotonic()
    seq: int | None = None
    was_ready: frozenset[str] = frozenset()
    while True:
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - began))
        try:
            answer = client.status(after=seq, wait=1.0 if remaining is None else min(1.0, remaining))
        except NotRunning:
            if until == "stopped":
                return True, [], "nothing is running"
            raise
        seq, rows = answer.get("seq"), list(answer["services"])
        names = list(services) or [r["name"] for r in rows]
        error = unknown_service(names, [r["name"] for r in rows])
        if error is not None:
            raise error
        chosen = [r for r in rows if r["name"] in names]
        if until == "stopped":
            missing = [r for r in chosen if r["state"] not in STOPPED_STATES]
            failed: list[str] = []
        else:
            state = readiness(rows, names, was_ready=was_ready)
            was_ready = state.ready
            missing = [r for r in chosen if r["name"] not in state.ready]
            failed = [name for name, _ in state.failures]
        if not missing:
            return True, chosen, f"{until}: {', '.join(names)}"
        if failed:
            return False, missing, f"{', '.join(failed)} failed"
        if remaining is not None and remaining <= 0:
            return False, missing, f"not {until} after {timeout:g}s"


class Quiet:
    """A Reporter that shows nothing (`up -d --json`: stdout holds only the JSON)."""

    def waiting(self, waiting: Sequence[tuple[str, str]]) -> None:
        pass

    def done(self) -> None:
        pass

    def say(self, text: str) -> None:
        pass


def up_json(a3sfile: Path, opts: UpOptions, out: IO[str], err: IO[str]) -> int:
    """`a3s up -d --json`: `up_result` as one JSON object on `out`, its words on `err`."""
    import json

    code, result, said = up_result(a3sfile, opts)
    err.write(said)
    out.write(json.dumps(result) + "\n")
    return code


def up_result(a3sfile: Path, opts: UpOptions) -> tuple[int, dict[str, Any], str]:
    """`up -d` without a word on the terminal: (exit code, result, what it would have said). The
    result: `ok`, `ready_in` (seconds from the command's start), each requested service's
    `name`, `state`, `url`, `probe`, `reason`, and for each failed one its `reason` and last 20
    lines (SPEC §10); what went wrong before any service ran is in `error`."""
    import io

    said = io.StringIO()
    code = up(a3sfile, opts, Quiet(), out=io.StringIO(), err=said)
    took = time.monotonic() - procfs.started_monotonic()
    result: dict[str, object] = {"ok": code == 0, "ready_in": round(took, 3) if code == 0 else None}
    client = ControlClient(workspace.paths_for(a3sfile).socket)
    try:
        rows = client.status()["services"]
    except A3sError:
        rows = []
    names = set(opts.services) or {r["name"] for r in rows}
    keys = ("name", "state", "url", "probe", "reason")
    result["services"] = [{k: r.get(k) for k in keys} for r in rows if r["name"] in names]
    failures = []
    for row in rows:
        if row["state"] == "failed" or (code and row["name"] in names and row["state"] == "backoff"):
            try:
                tail = client.tail(row["name"], TAIL)
            except A3sError:
                tail = []
            failures.append({"name": row["name"], "reason": row.get("reason"), "lines": tail})
    result["failures"] = failures
    if code and not rows:
        result["error"] = said.getvalue().strip()
    return code, result, said.getvalue()


def up(
    a3sfile: Path,
    opts: UpOptions,
    progress: Reporter,
    *,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    boot_timeout: float = 60.0,
) -> int:
    """`a3s up -d`, or `a3s up` with a supervisor already running: start, wait until ready, and
    return the exit code. Ctrl-C stops the waiting, not the supervisor."""
    out = out or sys.stdout
    err = err or sys.stderr
    paths = workspace.paths_for(a3sfile)
    client = ControlClient(paths.socket)
    try:
        for _ in range(3):  # a lost lock race sends us back to talk to the winner
            if client.healthz():
                return _ask_running(client, opts, progress, err)
            if workspace.lock_held(paths):
                # A supervisor is starting (it takes the lock before it serves): wait for its socket.
                workspace.wait_for_supervisor(paths, client.healthz, boot_timeout, POLL)
                continue
            offset = rotate_supervisor_log(paths)
            spawned_at = time.time()
            child = fork(paths, opts)
            code = _wait_spawned(child, client, paths, opts, progress, out, err, offset, spawned_at, boot_timeout)
            if code is not None:
                return code
        print("a3s: could not reach the running supervisor", file=err)
        return 1
    finally:
        progress.done()  # a live line left running would leave the cursor hidden


def apply_changes(client: ControlClient, progress: Reporter, err: IO[str]) -> bool:
    """Have the running supervisor apply the A3sfile as it is now (SPEC §16), each change said in
    one line; False (the errors printed, nothing touched) when the file is not valid."""
    answer = client.request("POST", "/v1/apply")
    for line in answer.get("errors") or []:
        print(line, file=err)
    for line in answer.get("changes") or []:
        progress.say(f"a3s: {line}")
    return bool(answer.get("ok"))


def _ask_running(client: ControlClient, opts: UpOptions, progress: Reporter, err: IO[str]) -> int:
    try:
        if not apply_changes(client, progress, err):
            return 1
        return start_and_wait(client, opts, progress, err)
    except NotRunning:
        progress.done()
        print("a3s: the supervisor stopped (see `a3s logs a3s`)", file=err)
        return 1


FULL_BELOW = 64 * 1024  # bytes free under which a disk counts as full (a log line does not fit)


def disk_full(folder: Path) -> str | None:
    """Why a supervisor that said nothing may have failed: the disk of its state folder is full
    (it could not even write supervisor.log). None when there is room."""
    import shutil

    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if free >= FULL_BELOW:
        return None
    return (f"a3s: the supervisor could not start: the disk holding {folder} is full ({free} bytes free); "
            "free some space and run `a3s up -d` again")


def _wait_spawned(
    child: Forked,
    client: ControlClient,
    paths: RuntimePaths,
    opts: UpOptions,
    progress: Reporter,
    out: IO[str],
    err: IO[str],
    offset: int,
    spawned_at: float,
    boot_timeout: float,
) -> int | None:
    """Wait for the new supervisor to serve, then for readiness; None when it lost the lock race."""
    deadline = time.monotonic() + boot_timeout
    while child.poll() is None and not client.healthz():
        if time.monotonic() > deadline:
            print(f"a3s: the supervisor did not start in {boot_timeout:g}s; see {paths.supervisor_log}", file=err)
            return 1
        time.sleep(POLL / 2)
    if child.returncode is None:
        for line in _new_output(paths, offset).splitlines():
            if line.startswith(ORPHANS):  # it ended what a SIGKILLed predecessor left: say so
                print(line, file=out, flush=True)
        try:
            # The child started the services itself; ask only what to wait for, never to start
            # again (a failed task must not run a second time).
            names = _plan(client, opts)
            return wait_ready(client, names, spawned_at, progress, err, timeout=opts.timeout)
        except (NotRunning, ControlError) as exc:
            # It went away while starting (e.g. the proxy port is taken): its own words say why.
            progress.done()
            try:
                child.wait(timeout=boot_timeout)
            except subprocess.TimeoutExpired:
                pass
            print(_new_output(paths, offset) or disk_full(paths.state_dir) or f"a3s: {exc.message}", file=err)
            return 1
    if child.returncode == EXIT_ALREADY_RUNNING:
        return None
    output = _new_output(paths, offset)
    print(output or disk_full(paths.state_dir) or f"a3s: the supervisor exited with code {child.returncode}", file=err)
    return child.returncode if child.returncode in (1, 2) else 1
