"""One run of a stack, in the foreground (`a3s up`) or in the background (the supervisor of `up -d`).

Both go the same way: take the A3sfile's lock, end what a killed predecessor left, reach the
shared proxy (starting it when none runs), spawn the first wave (before asyncio, aiohttp or networkx are imported),
then run the Supervisor and its attachments (control API, proxy, watcher) in one task group
until `down` or a signal, with one exit handler: the first signal stops every service
gracefully, the second kills them at once. Resources (the connection to the proxy, the state
folder) are passed as arguments.

Top-level imports stay light: `cli.argv` imports `UpOptions` from here on the fast path.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:

    import anyio

    from a3s_dev.config.graph import Plan
    from a3s_dev.config.model import DevConfig
    from a3s_dev.core.events import EventBus
    from a3s_dev.core.logs import LogSink
    from a3s_dev.core.policy import RestartPolicy
    from a3s_dev.core.process import ServiceProcess
    from a3s_dev.core.supervisor import Supervisor
    from a3s_dev.proxy.shared import Reached
    from a3s_dev.runtime import GroupRegistry, RuntimePaths

# An edge module's coroutine: `attachment(supervisor, *, task_status)`, calling
# task_status.started() once it is serving (serve_proxy, watch_services, serve_control).
Attachment = Callable[..., Coroutine[Any, Any, None]]

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: a closed terminal
EXIT_ALREADY_RUNNING = 3  # the background supervisor lost the lock race to another one
BANNER = "a3s: supervisor "  # the first line the background supervisor writes to its log
ORPHANS = "a3s: ended the process groups a killed supervisor left: "


class UpOptions(NamedTuple):
    """What `a3s up` was asked (a NamedTuple: dataclasses cost ~9 ms to import on the fast path)."""

    services: tuple[str, ...] = ()
    deps: bool = True
    proxy: bool = True
    watch: bool = True
    detach: bool = False
    timeout: float | None = None  # `--timeout`: how long `up -d` waits for readiness


# ---------------------------------------------------------------------------- decisions


def wanted_services(
    config: DevConfig, services: Iterable[str] | None, deps: bool, plan: Plan | None = None
) -> list[str]:
    """The services `up [SVC...] [--no-deps]` starts, in declaration order; UsageError for unknown
    names. With `deps`, the closure comes from `plan` (computed here when not given)."""
    if not services:
        return list(config.names)
    from a3s_dev.config import graph

    named = graph.known(config, services)
    if not deps:
        chosen = set(named)
    else:
        chosen = set((plan or graph.plan(config)).closure(named))
    return [n for n in config.names if n in chosen]


class PlanHelper:
    """The graph's plan, computed by `python -m a3s_dev.config.graph` in a short-lived helper
    process beside the supervisor: networkx costs ~25 MB and ~150 ms of CPU to import, which a
    supervisor running all day should neither keep nor make its first probes wait for."""

    TIMEOUT = 60.0
    WARM_AFTER = 3.0  # seconds after the attachments

    def __init__(self, config: DevConfig) -> None:
        import json
        import subprocess
        import sys

        from a3s_dev.config.graph import dependencies

        self._input = json.dumps({"deps": dependencies(config)}).encode()
        self._proc = subprocess.Popen(
            # -P: the project folder (its cwd) is not on sys.path, so no file of the project
            # can shadow a module the helper imports.
            [sys.executable, "-P", "-m", "a3s_dev.config.graph"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._plan: Plan | None = None

    def wait(self) -> Plan:
        """The plan (blocking); raises when the helper failed, so the caller computes it itself."""
        if self._plan is None:
            from a3s_dev.config.graph import Plan

            out, _ = self._proc.communicate(self._input, timeout=self.TIMEOUT)
            if self._proc.returncode != 0:
                raise RuntimeError(f"the plan helper exited with {self._proc.returncode}")
            self._plan = Plan.from_json(out.decode())
        return self._plan

    async def get(self) -> Plan:
        import anyio

        return await anyio.to_thread.run_sync(self.wait)

    async def warm(self, supervisor: Supervisor, *, task_status: Any) -> None:
        """An attachment: compute the plan a few seconds after the services are up (networkx's
        CPU then takes nothing from a start-up), so the helper does not wait idle until
        something first needs the plan (a stop order, `start` with deps)."""
        import contextlib

        import anyio

        task_status.started()
        await anyio.sleep(self.WARM_AFTER)
        with contextlib.suppress(Exception):  # the supervisor computes it itself when asked
            await self.get()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


# ---------------------------------------------------------------------------- before the loop


def choose_ports(config: DevConfig) -> DevConfig:
    """`config` with a free loopback port for each `port = "auto"` service, chosen now and kept
    for the supervisor's lifetime (its restarts included)."""
    wanted = [s.name for s in config.services if s.auto_port and s.port is None]
    if not wanted:
        return config
    from a3s_dev.config.model import with_ports
    from a3s_dev.core.process import free_loopback_port

    taken = {s.port for s in config.services if s.port is not None} | {config.settings.proxy_port}
    chosen: dict[str, int] = {}
    for name in wanted:
        chosen[name] = free_loopback_port(frozenset(taken))
        taken.add(chosen[name])
    return with_ports(config, chosen)


def reach_proxy(config: DevConfig, paths: RuntimePaths, port: int) -> Reached | None:
    """Register with this user's shared proxy on `port` (0: no proxy); the connection, and the
    proxy's listening sockets when none ran (it starts later: `launching`). Before anything is
    spawned: a port someone else holds fails the command with one line, nothing half-started,
    and a browser's first request is held until the services are ready, not refused."""
    if not port:
        return None
    from a3s_dev.proxy import join, shared

    if config.settings.https:
        from a3s_dev.proxy.ca import LocalCA

        LocalCA().ensure()  # before any spawn: services are pointed at its files (ca_env)
    reached = shared.ensure(port)
    try:
        join.register_now(reached.connection, config, paths.logs_dir, paths.socket)
    except BaseException:
        for sock in (reached.connection, *reached.unstarted):
            sock.close()
        raise
    return reached


def prespawn(config: DevConfig, wanted: Sequence[str], groups: GroupRegistry | None = None) -> dict[str, ServiceProcess]:
    """Spawn the wanted services that wait for nothing, now, before asyncio and the heavy imports;
    each one's group is in `groups` (on disk) before the next spawn, so a supervisor killed
    in between leaves nothing the next `up` or `down` cannot find.

    A service that cannot be spawned (port taken, missing dir, a command no process can take)
    is left to the supervisor, which reports it the usual way.
    """
    from a3s_dev.config.graph import independent
    from a3s_dev.core.process import check_port_free, service_env, spawn
    from a3s_dev.errors import RuntimeFailure
    from a3s_dev.runtime import GroupRecord

    spawned: dict[str, ServiceProcess] = {}
    for name in independent(config, wanted):
        svc = config.service(name)
        try:
            check_port_free(svc)
            proc = spawned[name] = spawn(svc, service_env(svc, config))
        except RuntimeFailure:
            continue
        if groups is not None:
            groups.add(name, GroupRecord(proc.pid, proc.pgid, proc.started, svc.stop_signal, svc.stop_timeout))
    return spawned


def attachments(
    config: DevConfig, paths: RuntimePaths, proxy: Reached | None, answered: anyio.Event
) -> list[Attachment]:
    """The edge modules that attach once the services are up: the shared proxy, when this `up`
    must start it, and the control API (the watcher and the proxy's registration attach
    earlier: `watching`, `joining`)."""
    import functools

    from a3s_dev.control.server import serve_control

    found: list[Attachment] = []
    if proxy is not None and proxy.unstarted:
        from a3s_dev.proxy.join import launch

        found.append(
            functools.partial(launch, port=config.settings.proxy_port, sockets=proxy.unstarted, answered=answered)
        )
    found.append(functools.partial(serve_control, paths=paths))
    return found


def joining(
    config: DevConfig, paths: RuntimePaths, proxy: Reached | None, answered: anyio.Event | None = None
) -> list[Attachment]:
    """The registration with the shared proxy, on the connection `reach_proxy` opened; it
    attaches with the first wave so that every state change reaches the proxy as it happens."""
    if proxy is None:
        return []
    import functools

    from a3s_dev.proxy.join import join_proxy

    return [
        functools.partial(
            join_proxy, port=config.settings.proxy_port, logs=paths.logs_dir, control=paths.socket,
            connection=proxy.connection, answered=answered,
        )
    ]


def watching(config: DevConfig, opts: UpOptions) -> list[Attachment]:
    """The watcher, unless `--no-watch` or nothing is watched. It attaches with the first wave,
    not after it: an edit made right after the ready line must not go unseen."""
    if not opts.watch or not any(s.watch is not None for s in config.services):
        return []
    from a3s_dev.watch.service import watch_services

    return [watch_services]


# ---------------------------------------------------------------------------- the loop


async def serve(
    config: DevConfig,
    *,
    services: Iterable[str] | None = None,
    deps: bool = True,
    attachments: Sequence[Attachment] = (),
    early: Sequence[Attachment] = (),
    on_early: Callable[[], None] | None = None,
    sinks: Sequence[LogSink] = (),
    policy: RestartPolicy | None = None,
    bus: EventBus | None = None,
    prespawned: dict[str, ServiceProcess] | None = None,
    on_supervisor: Callable[[Supervisor], None] | None = None,
    attach_after: float = 1.0,
    **supervisor_options: Any,
) -> None:
    """Run the stack until `supervisor.shutdown()`: the Supervisor and each attachment in one task group.

    `on_supervisor` receives the Supervisor as soon as it exists (signal handlers and tests
    use it). `early` attachments start with the services (`on_early` is called once they
    serve); the others once the requested services are ready (or one failed), at most
    `attach_after` seconds in. When the supervisor has stopped every service, the
    attachments are cancelled.
    """
    import anyio

    from a3s_dev.core.supervisor import Supervisor

    wanted = wanted_services(config, services, deps)
    sup = Supervisor(config, sinks=sinks, policy=policy, bus=bus, prespawned=prespawned, **supervisor_options)
    if on_supervisor is not None:
        on_supervisor(sup)

    async with anyio.create_task_group() as tg:

        async def run_supervisor(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            try:
                await sup.run(task_status=task_status)
            finally:
                tg.cancel_scope.cancel()  # the attachments have nothing left to serve

        await tg.start(run_supervisor)
        # Services first: the first wave is already running, the attachments can follow.
        await sup.start(wanted, deps=False)
        for attachment in early:
            await tg.start(attachment, sup)
        if on_early is not None:
            on_early()
        # Heavy imports run in a worker thread: in the loop's thread, aiohttp's ~0.4 s of
        # CPU would freeze the start-up probes that long.
        if uses_http_probes(config):
            tg.start_soon(anyio.to_thread.run_sync, _import_all, ["httpx"])
        if attachments:
            # The proxy, watcher and control API matter once services are up, so they load
            # while nothing is starting: once the requested services are ready and their
            # start-up output has paused, or after `attach_after` at the latest.
            with anyio.move_on_after(attach_after):
                await sup.wait_ready(wanted)
            await anyio.to_thread.run_sync(_import_all, ["aiohttp.web"])
        for attachment in attachments:
            await tg.start(attachment, sup)


def uses_http_probes(config: DevConfig) -> bool:
    """True when some service is probed over HTTP (then httpx is needed)."""
    from a3s_dev.config.model import ProbeKind

    return any(s.probe is not None and s.probe.type == ProbeKind.HTTP for s in config.services)


def _import_all(modules: Sequence[str]) -> None:
    """Import `modules` (in a worker thread), handing the GIL back to the event loop often.

    An import holds the GIL for its whole CPU time; with the default 5 ms switch interval
    every wake-up of the loop (a pipe read, a probe) would wait up to 5 ms for it.
    """
    import importlib
    import sys

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


def deferred(factory: Callable[[], Sequence[Attachment]]) -> Attachment:
    """One attachment that builds the real ones when it starts, so their modules load after the first wave."""

    async def attach(supervisor: Supervisor, *, task_status: Any) -> None:
        import anyio

        found = factory()
        async with anyio.create_task_group() as tg:
            for attachment in found:
                await tg.start(attachment, supervisor)
            task_status.started()

    return attach


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


class _Announcer:
    """a3s's own words from before the supervisor exists (the log files' trouble): on stderr
    until it exists, then through it, so they reach the terminal and the stream."""

    def __init__(self) -> None:
        self.supervisor: Supervisor | None = None

    def __call__(self, text: str) -> None:
        if self.supervisor is not None:
            self.supervisor.announce(text)
        else:
            import sys

            print(f"a3s: {text}", file=sys.stderr, flush=True)


def _run(
    config: DevConfig,
    opts: UpOptions,
    paths: RuntimePaths,
    terminal: LogSink | None,
    *,
    exit_handler: ExitHandler,
    attach_after: float,
    on_ready: Callable[[Supervisor, list[str]], Coroutine[Any, Any, None]] | None = None,
) -> int:
    """Lock, clean up, reach the proxy, mark the run in the history, spawn the first wave, then serve
    until `down` or a signal. The services' output goes to `.a3s/logs/` and to `terminal`."""
    import contextlib

    from a3s_dev import runtime
    from a3s_dev.core.logs import A3S, FileSink, run_marker
    from a3s_dev.errors import ConfigError

    if not config.services:
        raise ConfigError(f'{config.path}: no services to start (add a service "name" {{ cmd = "..." }} block)')
    config = choose_ports(config)
    cleanup = contextlib.ExitStack()  # whatever was taken is given back, in reverse, on every way out
    lock = runtime.SupervisorLock(paths)
    prespawned: dict[str, ServiceProcess] = {}
    try:
        lock.acquire()
        cleanup.callback(lock.release)
        claim = runtime.ProjectClaim(config.project, config.path)
        claim.acquire()
        cleanup.callback(claim.release)
        helper = PlanHelper(config)
        cleanup.callback(helper.close)
        announcer = _Announcer()
        files = FileSink(
            paths.logs_dir,
            rotate_bytes=config.settings.log_max_size,
            keep=config.settings.log_keep,
            on_trouble=announcer,
        )
        cleanup.callback(files.close)
        sinks: list[LogSink] = [files] if terminal is None else [terminal, files]
        try:
            # `up SVC` must know what SVC needs before it spawns anything: that waits for the plan.
            plan = helper.wait() if opts.services and opts.deps else None
        except Exception:  # noqa: BLE001 - the helper failed: the plan is computed here instead
            plan = None
        wanted = wanted_services(config, opts.services, opts.deps, plan)
        now = time.time()
        for sink in sinks:
            sink.write(A3S, [run_marker(now)], now, "a3s")
        # We hold the lock, so whatever groups.json still lists belongs to a dead supervisor.
        orphans = runtime.recorded_orphans(paths)
        if orphans:
            runtime.end_groups(orphans)
            print(f"{ORPHANS}{', '.join(o.service for o in orphans)}", flush=True)
        proxy_port = config.settings.proxy_port if opts.proxy else 0
        proxy = reach_proxy(config, paths, proxy_port)
        if proxy is not None:
            for sock in (proxy.connection, *proxy.unstarted):
                cleanup.callback(sock.close)
        groups = runtime.GroupRegistry(paths.state_dir)
        prespawned = prespawn(config, wanted, groups)
        import anyio

        async def main() -> None:
            holder: list[Supervisor] = []
            answered = anyio.Event()  # the shared proxy answered this project's registration
            watched = anyio.Event()  # the watcher is armed: the ready line may be said
            async with anyio.create_task_group() as tg:

                async def ready_once_watched(sup: Supervisor) -> None:
                    await watched.wait()
                    assert on_ready is not None
                    await on_ready(sup, wanted)

                def on_supervisor(sup: Supervisor) -> None:
                    holder.append(sup)
                    announcer.supervisor = sup
                    tg.start_soon(exit_handler.watch, sup)
                    if on_ready is not None:
                        tg.start_soon(ready_once_watched, sup)

                await serve(
                    config,
                    services=wanted,
                    deps=False,
                    attachments=[deferred(lambda: attachments(config, paths, proxy, answered)), helper.warm],
                    early=[*watching(config, opts), *joining(config, paths, proxy, answered)],
                    on_early=watched.set,
                    sinks=sinks,
                    prespawned=prespawned,
                    on_supervisor=on_supervisor,
                    attach_after=attach_after,
                    proxy_port=proxy_port or None,
                    groups=groups,
                    plan=helper.get,
                )
                holder[0].announce("every service stopped")
                tg.cancel_scope.cancel()

        try:
            anyio.run(main)
        except BaseException as exc:
            from a3s_dev.errors import first_user_error

            error = first_user_error(exc)
            if error is not None:
                raise error from None
            raise
        return 0
    except BaseException:
        for proc in prespawned.values():
            if proc.returncode is None:
                proc.kill()
        raise
    finally:
        cleanup.close()


def run_foreground(config: DevConfig, opts: UpOptions | None = None, *, color: bool | None = None) -> int:
    """`a3s up` in the foreground: logs to the terminal and `.a3s/logs/`, until Ctrl-C or SIGTERM; returns 0.

    A proxy port that is taken fails the command before any service is spawned.
    """
    opts = opts or UpOptions()
    from a3s_dev import procfs, runtime
    from a3s_dev.core.logs import A3S, TerminalSink
    from a3s_dev.core.state import READY_STATES

    paths = runtime.paths_for(config.path)
    terminal = TerminalSink([*config.names, A3S], color=color)

    async def report_ready(sup: Supervisor, wanted: list[str]) -> None:
        statuses = await sup.wait_ready(wanted)
        if all(s.state in READY_STATES for s in statuses.values()):
            took = time.monotonic() - procfs.started_monotonic()
            count = f"{len(wanted)} service{'s' if len(wanted) != 1 else ''}"
            sup.announce(f"all {count} ready in {took:.2f}s")

    try:
        return _run(
            config,
            opts,
            paths,
            terminal,
            exit_handler=ExitHandler(" (Ctrl-C again to kill them at once)"),
            attach_after=1.0,
            on_ready=report_ready,
        )
    finally:
        terminal.close()


def run_background(a3sfile: Path, opts: UpOptions) -> int:
    """The background supervisor of `a3s up -d` (in the forked child): load the A3sfile, run until
    `down` or a signal; the exit code. Its stdout and stderr are `.a3s/supervisor.log`, where a
    user error is one line; EXIT_ALREADY_RUNNING when another supervisor holds the lock."""
    import os

    from a3s_dev import runtime
    from a3s_dev.config.load import load
    from a3s_dev.errors import A3sError

    paths = runtime.paths_for(a3sfile)
    try:
        config = load(a3sfile)
        print(f"{BANNER}{os.getpid()} serving {paths.a3sfile}", flush=True)
        # The control API is the only window `up -d` and `status` have on a background
        # supervisor, so it loads at once (aiohttp in a thread) instead of after start-up.
        return _run(config, opts, paths, None, exit_handler=ExitHandler(), attach_after=0.0)
    except runtime.AlreadyRunning as exc:
        print(f"a3s: {exc.message}", flush=True)
        return EXIT_ALREADY_RUNNING
    except A3sError as exc:
        print(exc.printed(), flush=True)
        return exc.exit_code
