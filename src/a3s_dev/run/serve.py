"""One run of a stack, in the foreground (`a3s up`) or in the background (the supervisor of `up -d`).

A `Run` goes through named phases, uvicorn's `Server.startup / main_loop / shutdown` being the
model. Before the event loop (stdlib only, so the first wave starts early):

    lock_and_claim   the A3sfile's supervisor lock and the project's name
    open_logs        the file sink, the run marker in the history
    end_orphans      what a killed predecessor left (groups.json)
    reach_proxy      register with the shared proxy, every service pending (listen for it when none runs)
    prespawn         the services that wait for nothing

Then `serve`, one task group until `down` or a signal: the Supervisor, the exit handler,
`attach_early` (the watcher and the proxy link, with the first wave), `attach_late` (the
shared proxy's start, the control API and the graph's plan, once the services are up).
Everything a phase takes is given back, in reverse, by `close` on every way out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from a3s_dev.config.model import DevConfig, ProbeKind
from a3s_dev.core.groups import GroupRegistry
from a3s_dev.core.logs import A3S, FileSink, LogSink, TerminalSink, run_marker
from a3s_dev.core.process import ServiceProcess
from a3s_dev.errors import ConfigError
from a3s_dev.run import prepare
from a3s_dev.run.options import UpOptions
from a3s_dev.run.workspace import (
    ProjectClaim,
    RuntimePaths,
    SupervisorLock,
    bind_control_socket,
    file_digest,
    paths_for,
    port_holder,
)
from a3s_dev.system.limits import become_subreaper

if TYPE_CHECKING:
    import anyio
    from anyio.abc import TaskGroup

    from a3s_dev.core.supervisor import Supervisor
    from a3s_dev.link.proxy_process import Reached

# An edge module's coroutine: `attachment(supervisor, *, task_status)`, calling
# task_status.started() once it is serving (join_proxy, watch_services, serve_control).
Attachment = Callable[..., Coroutine[Any, Any, None]]

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: a closed terminal


class ExitHandler:
    """uvicorn's `handle_exit`: the first SIGINT, SIGTERM or SIGHUP stops every service in reverse
    dependency order; the second kills them at once."""

    def __init__(self, again: str = "") -> None:
        self.again = again  # how to ask for the second one, said with the first
        self.received = 0

    async def watch(self, supervisor: Supervisor) -> None:
        import anyio

        with anyio.open_signal_receiver(*EXIT_SIGNALS) as signals:
            async for signum in signals:
                self.received += 1
                if self.received == 1:
                    name = signal.Signals(signum).name
                    supervisor.announce(f"{name}: stopping every service{self.again}")
                    await supervisor.shutdown("Ctrl-C" if signum == signal.SIGINT else name)
                else:
                    supervisor.announce("killing every service now")
                    supervisor.kill_all()


class Run:
    """One run of `config`: the phases above, then the task group until every service stopped.

    `terminal`: the foreground's sink (None in the background, where the files are all).
    `attach_after`: how long the late attachments wait for the services at most.
    `on_ready`: told once the watcher is armed and the requested services are up.
    `extra`: attachments of the caller's, started with the late ones (tests use it).
    """

    def __init__(
        self,
        config: DevConfig,
        opts: UpOptions,
        paths: RuntimePaths,
        *,
        terminal: LogSink | None = None,
        exit_handler: ExitHandler | None = None,
        attach_after: float = 1.0,
        on_ready: Callable[[Supervisor, list[str]], Coroutine[Any, Any, None]] | None = None,
        extra: Sequence[Attachment] = (),
    ) -> None:
        if not config.services:
            raise ConfigError(f'{config.path}: no services to start (add a service "name" {{ cmd = "..." }} block)')
        self.config = prepare.choose_ports(config)
        self.opts = opts
        self.paths = paths
        self.terminal = terminal
        self.exit_handler = exit_handler
        self.attach_after = attach_after
        self.on_ready = on_ready
        self.extra = list(extra)
        self.sinks: list[LogSink] = [] if terminal is None else [terminal]
        self.supervisor: Supervisor | None = None
        self.wanted: list[str] = list(self.config.names)
        self.proxy: Reached | None = None
        self.groups: GroupRegistry | None = None
        self.prespawned: dict[str, ServiceProcess] = {}
        self._cleanup = contextlib.ExitStack()  # whatever a phase took is given back, in reverse
        self.digest = file_digest(config.path)  # the A3sfile's text this stack runs
        self._applying: anyio.Lock | None = None

    # ------------------------------------------------------------------ the whole run

    def execute(self) -> int:
        """Every phase, then serve until `down` or a signal; 0, or the user's error raised."""
        import anyio

        from a3s_dev.errors import first_user_error

        try:
            self.lock_and_claim()
            # what a service's daemon double-forks away is reparented here, found and ended at `down`
            become_subreaper()
            self.open_logs()
            self.end_orphans()
            self.reach_proxy()
            self.prespawn()
            try:
                anyio.run(self.serve)
            except BaseException as exc:
                error = first_user_error(exc)
                if error is not None:
                    raise error from None
                raise
            return 0
        finally:
            self.close()

    # ------------------------------------------------------------------ before the loop

    def lock_and_claim(self) -> None:
        """The A3sfile's lock (one supervisor per file), then the project's name (one per name)."""
        lock = SupervisorLock(self.paths)
        lock.acquire()
        self._cleanup.callback(lock.release)
        claim = ProjectClaim(self.config.project, self.config.path)
        claim.acquire()
        self._cleanup.callback(claim.release)

    def open_logs(self) -> None:
        """The file sink, and the run marker at the top of this run's history; then which services
        were asked for (`up SVC` may need the graph for that: it raises before anything starts)."""
        files = FileSink(
            self.paths.logs_dir,
            rotate_bytes=self.config.settings.log_max_size,
            keep=self.config.settings.log_keep,
            on_trouble=self.log_trouble,
        )
        self._cleanup.callback(files.close)
        self.sinks.append(files)
        self.wanted = prepare.wanted_services(self.config, self.opts.services, self.opts.deps)
        now = time.time()
        for sink in self.sinks:
            sink.write(A3S, [run_marker(now)], now, A3S)

    def end_orphans(self) -> None:
        """We hold the lock, so whatever groups.json still lists belongs to a dead supervisor."""
        ended = prepare.end_orphans(self.paths, self.config)
        if ended:
            print(f"{prepare.ORPHANS}{', '.join(ended)}", flush=True)

    def reach_proxy(self) -> None:
        """Register with the shared proxy before any spawn (unless `--no-proxy` or port 0)."""
        if not self.opts.proxy or not self.config.settings.proxy_port:
            return
        self.proxy = prepare.reach_proxy(self.config, self.paths)
        self._cleanup.callback(self.proxy.close)

    def prespawn(self) -> None:
        """Spawn the first wave, each group on disk before the next spawn."""
        self.groups = GroupRegistry(self.paths.state_dir)
        self._cleanup.callback(self._kill_unadopted)
        self.prespawned = prepare.prespawn(self.config, self.wanted, self.groups)

    # ------------------------------------------------------------------ the loop

    async def serve(self) -> None:
        """The Supervisor and every attachment in one task group, until every service stopped."""
        import anyio

        from a3s_dev.core.supervisor import Supervisor

        sup = self.supervisor = Supervisor(
            self.config,
            sinks=self.sinks,
            prespawned=self.prespawned,
            groups=self.groups,
            proxy_port=self.config.settings.proxy_port if self.proxy is not None else None,
            port_holder=port_holder,
        )
        self.prespawned = {}  # the supervisor owns them now
        self.answered = anyio.Event()  # the shared proxy answered this project's registration
        async with anyio.create_task_group() as tg:
            if self.exit_handler is not None:
                tg.start_soon(self.exit_handler.watch, sup)
            await tg.start(self._supervise, tg)
            await sup.start(self.wanted, deps=False)  # the first wave is running already
            await self.attach_early(tg)
            if self.on_ready is not None:
                tg.start_soon(self.on_ready, sup, self.wanted)
            await self.attach_late(tg)

    async def _supervise(self, tg: TaskGroup, *, task_status: Any) -> None:
        try:
            await self.supervisor_or_fail().run(task_status=task_status)
        finally:
            self.supervisor_or_fail().announce("every service stopped")
            tg.cancel_scope.cancel()  # the attachments have nothing left to serve

    async def attach_early(self, tg: TaskGroup) -> None:
        """With the first wave: the watcher (an edit made right after the ready line must not go
        unseen) and the proxy link (every state change reaches the proxy as it happens)."""
        sup = self.supervisor_or_fail()
        if self.opts.watch and any(s.watch is not None for s in self.config.services):
            from a3s_dev.watch.service import watch_services

            await tg.start(watch_services, sup)
        if self.proxy is not None:
            from a3s_dev.link.join import join_proxy

            await tg.start(
                functools.partial(
                    join_proxy, port=self.config.settings.proxy_port, logs=self.paths.logs_dir,
                    control=self.paths.socket, connection=self.proxy.connection, answered=self.answered,
                ),
                sup,
            )

    async def attach_late(self, tg: TaskGroup) -> None:
        """Once the requested services are ready (or one failed), `attach_after` s at the latest:
        the shared proxy when this run must start it, the control API and the caller's extras;
        the graph's plan once the services are up. Their heavy imports (aiohttp, networkx) load
        in a worker thread: in the loop's thread they would freeze the start-up probes."""
        import anyio

        sup = self.supervisor_or_fail()
        if any(s.probe is not None and s.probe.type == ProbeKind.HTTP for s in self.config.services):
            tg.start_soon(anyio.to_thread.run_sync, import_quietly, ["httpx"])
        with anyio.move_on_after(self.attach_after):
            await sup.wait_ready(self.wanted)
        await anyio.to_thread.run_sync(import_quietly, ["aiohttp.web"])
        from a3s_dev.control.server import serve_control

        if self.proxy is not None and self.proxy.unstarted:
            from a3s_dev.link.join import launch

            sockets, self.proxy = self.proxy.unstarted, self.proxy._replace(unstarted=[])
            await tg.start(
                functools.partial(launch, port=self.config.settings.proxy_port, sockets=sockets, answered=self.answered),
                sup,
            )
        bind = functools.partial(bind_control_socket, self.paths)
        await tg.start(functools.partial(serve_control, bind=bind, path=self.paths.socket, applier=self), sup)
        for attachment in self.extra:
            await tg.start(attachment, sup)
        tg.start_soon(self.plan_once_settled)

    async def plan_once_settled(self) -> None:
        """The graph's plan, computed once the requested services are up (or one failed): its
        networkx import (~150 ms of CPU) then takes nothing from a start-up, however long."""
        import anyio

        sup = self.supervisor_or_fail()
        await sup.wait_ready(self.wanted)
        await anyio.to_thread.run_sync(import_quietly, ["networkx"])
        await sup.plan()

    # ------------------------------------------------------------------ a changed A3sfile

    async def apply(self) -> dict[str, Any]:
        """Apply the A3sfile on disk to the running stack (SPEC §16): validated first (errors:
        nothing touched), then `Supervisor.apply` with the differences, each said in one line.
        Automatic ports already chosen are kept; new ones are chosen now."""
        import anyio

        from a3s_dev.config.diff import diff, keep_ports
        from a3s_dev.config.load import load_with_report

        sup = self.supervisor_or_fail()
        self._applying = self._applying or anyio.Lock()
        async with self._applying:  # two `up` at once apply once
            digest = await anyio.to_thread.run_sync(file_digest, self.paths.a3sfile)
            report = await anyio.to_thread.run_sync(functools.partial(load_with_report, self.paths.a3sfile, order=False))
            if report.config is None:
                return {"ok": False, "errors": report.lines(errors_only=True), "changes": []}
            running = sup.config
            edited = keep_ports(running, report.config)
            # the dev block stays as the supervisor started with it (changes.settings says so);
            # `${services.*}` filled in as the running stack has them, before comparing
            applied = prepare.choose_ports(dataclasses.replace(edited, settings=running.settings))
            changes = diff(running, dataclasses.replace(applied, settings=edited.settings))
            if changes.added or changes.removed or changes.changed or changes.dependents:
                await sup.apply(applied, changes)
            for line in changes.lines():
                sup.announce(line)
            self.digest = digest
            return {"ok": True, "errors": [], "changes": changes.lines()}

    # ------------------------------------------------------------------ helpers

    def supervisor_or_fail(self) -> Supervisor:
        assert self.supervisor is not None, "the supervisor exists once serve() runs"
        return self.supervisor

    def log_trouble(self, text: str) -> None:
        """The log files cannot be written (a full disk): said through the supervisor, and on
        stderr when no terminal shows the stream (`up -d`: supervisor.log), since a3s.log, where
        a background supervisor's words go, is one of the files that cannot be written."""
        self.announce(text)
        if self.supervisor is not None and not any(isinstance(s, TerminalSink) for s in self.sinks):
            print(f"a3s: {text}", file=sys.stderr, flush=True)

    def announce(self, text: str) -> None:
        """a3s's own words (the log files' trouble): on stderr until the supervisor exists, then
        through it, so they reach the terminal and the stream."""
        if self.supervisor is not None:
            self.supervisor.announce(text)
        else:
            print(f"a3s: {text}", file=sys.stderr, flush=True)

    def _kill_unadopted(self) -> None:
        """A run that failed before the supervisor took the first wave over kills it."""
        for proc in self.prespawned.values():
            if proc.returncode is None:
                proc.kill()

    def close(self) -> None:
        """Give back, in reverse, whatever the phases took: first wave, proxy link, logs, claim, lock."""
        self._cleanup.close()


def import_quietly(modules: Sequence[str]) -> None:
    """Import `modules` (in a worker thread), handing the GIL back to the event loop often.

    An import holds the GIL for its whole CPU time; with the default 5 ms switch interval
    every wake-up of the loop (a pipe read, a probe) would wait up to 5 ms for it.
    """
    import importlib

    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, 0.0005))
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError:
                pass  # the attachment that needs it will say so itself
    finally:
        sys.setswitchinterval(previous)


def run_foreground(config: DevConfig, opts: UpOptions | None = None, *, color: bool | None = None) -> int:
    """`a3s up` in the foreground: logs to the terminal and `.a3s/logs/`, until Ctrl-C or SIGTERM; returns 0.

    A proxy port that is taken fails the command before any service is spawned.
    """
    from a3s_dev.core.state import READY_STATES
    from a3s_dev.system import procfs

    terminal = TerminalSink([*config.names, A3S], color=color)

    async def report_ready(sup: Supervisor, wanted: list[str]) -> None:
        statuses = await sup.wait_ready(wanted)
        if all(s.state in READY_STATES for s in statuses.values()):
            took = time.monotonic() - procfs.started_monotonic()
            count = f"{len(wanted)} service{'s' if len(wanted) != 1 else ''}"
            sup.announce(f"all {count} ready in {took:.2f}s")

    try:
        run = Run(
            config,
            opts or UpOptions(),
            paths_for(config.path),
            terminal=terminal,
            exit_handler=ExitHandler(" (Ctrl-C again to kill them at once)"),
            on_ready=report_ready,
        )
        return run.execute()
    finally:
        terminal.close()
