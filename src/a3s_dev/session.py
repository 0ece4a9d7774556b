"""One run of a stack: the Supervisor plus its attachments (proxy, watcher, control) in one task group.

`serve` is the library entry (tests and `up -d` use it); `run_foreground` is `a3s up` in a
terminal: it spawns the first wave before the event loop exists, streams the merged
logs, and turns the first Ctrl-C/SIGTERM into a graceful stop and the second into SIGKILL.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a3s_dev.config import DevConfig, ServiceDef
from a3s_dev.errors import A3sError, RuntimeFailure

if TYPE_CHECKING:
    from a3s_dev.events import EventBus
    from a3s_dev.logs import LogSink
    from a3s_dev.policy import RestartPolicy
    from a3s_dev.process import ServiceProcess
    from a3s_dev.runtime import RuntimePaths
    from a3s_dev.supervisor import Supervisor

# An edge module's coroutine: `attachment(supervisor, *, task_status)`, calling
# task_status.started() once it is serving (proxy.serve_proxy, watcher.watch_services, ...).
Attachment = Callable[..., Coroutine[Any, Any, None]]


def wanted_services(config: DevConfig, services: Iterable[str] | None, deps: bool) -> list[str]:
    """The services `up [SVC...] [--no-deps]` starts, in declaration order; UsageError for unknown names."""
    if services is None:
        return list(config.names)
    from a3s_dev import graph

    chosen = set(graph.dependency_closure(config, services) if deps else graph.known(config, services))
    return [n for n in config.names if n in chosen]


def first_wave(config: DevConfig, wanted: Sequence[str]) -> list[ServiceDef]:
    """The wanted services that wait for nothing wanted: they can be spawned at once."""
    chosen = set(wanted)
    return [
        config.service(n)
        for n in wanted
        if not any(d in chosen for d in config.service(n).depends_on)
    ]


def reserve_proxy_port(port: int) -> None:
    """Listen on the proxy's port now (0: no proxy), before anything is spawned. A taken port
    fails the command with the proxy's one-line error, nothing half-started; and a browser's
    first requests wait in the backlog until the proxy attaches instead of being refused."""
    if not port:
        return
    from a3s_dev.process import ListenFailure, reserve_loopback

    try:
        reserve_loopback(port)
    except ListenFailure as exc:
        from a3s_dev import proxy  # its wording; loaded only on this error path

        raise proxy.listen_error(exc) from None


def prespawn(config: DevConfig, wanted: Sequence[str]) -> dict[str, ServiceProcess]:
    """Spawn the first wave now, synchronously, before asyncio and the heavy imports load.

    A service that cannot be spawned (port taken, missing dir) is left to the supervisor,
    which reports it the usual way.
    """
    from a3s_dev.process import check_port_free, service_env, spawn

    spawned: dict[str, ServiceProcess] = {}
    for svc in first_wave(config, wanted):
        try:
            check_port_free(svc)
            spawned[svc.name] = spawn(svc, service_env(svc, config))
        except RuntimeFailure:
            continue
    return spawned


async def serve(
    config: DevConfig,
    *,
    services: Iterable[str] | None = None,
    deps: bool = True,
    attachments: Sequence[Attachment] = (),
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
    use it). Attachments start once the requested services are ready (or one failed), at
    most `attach_after` seconds in. When the supervisor has stopped every service, the
    attachments are cancelled.
    """
    import anyio

    from a3s_dev.supervisor import Supervisor

    wanted = wanted_services(config, services, deps)
    sup = Supervisor(
        config, sinks=sinks, policy=policy, bus=bus, prespawned=prespawned, **supervisor_options
    )
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
    from a3s_dev.config import ProbeKind

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


def run_foreground(
    config: DevConfig,
    *,
    services: Iterable[str] | None = None,
    deps: bool = True,
    attachments: Sequence[Attachment] = (),
    color: bool | None = None,
    proxy_port: int = 0,
) -> int:
    """`a3s up` in the foreground: logs to the terminal and `.a3s/logs/`, until Ctrl-C or SIGTERM; returns 0.

    A `proxy_port` that is taken fails the command before any service is spawned.
    """
    from a3s_dev import runtime

    wanted = wanted_services(config, services, deps)
    paths = runtime.paths_for(config.path)
    # A supervisor killed with SIGKILL left its groups behind: end them before they
    # hold our ports. clean_stale does nothing while a live supervisor holds the lock.
    runtime.clean_stale(paths)
    lock = runtime.SupervisorLock(paths)
    lock.acquire()
    prespawned: dict[str, ServiceProcess] = {}
    try:
        reserve_proxy_port(proxy_port)
        prespawned = prespawn(config, wanted)
        return _run_loop(config, wanted, attachments, color, paths, prespawned)
    except BaseException:
        for proc in prespawned.values():
            if proc.returncode is None:
                proc.kill()
        raise
    finally:
        lock.release()


def _run_loop(
    config: DevConfig,
    wanted: list[str],
    attachments: Sequence[Attachment],
    color: bool | None,
    paths: RuntimePaths,
    prespawned: dict[str, ServiceProcess],
) -> int:
    import anyio

    from a3s_dev.logs import A3S, FileSink, TerminalSink
    from a3s_dev.state import READY_STATES

    terminal = TerminalSink([*config.names, A3S], color=color)
    files = FileSink(paths.logs_dir)
    holder: list[Supervisor] = []
    inner: Any = None  # the task group of main(), for the readiness report
    signals = 0

    async def handle_signals() -> None:
        nonlocal signals
        # SIGHUP too: a closed terminal must stop the services, not orphan them.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as received:
            async for signum in received:
                signals += 1
                if not holder:
                    continue
                sup = holder[0]
                if signals == 1:
                    name = signal.Signals(signum).name
                    sup.announce(
                        f"{name}: stopping every service (Ctrl-C again to kill them at once)"
                    )
                    await sup.shutdown()
                else:
                    sup.announce("killing every service now")
                    sup.kill_all()

    async def report_ready(sup: Supervisor) -> None:
        statuses = await sup.wait_ready(wanted)
        if all(s.state in READY_STATES for s in statuses.values()):
            took = time.monotonic() - process_started()
            count = f"{len(wanted)} service{'s' if len(wanted) != 1 else ''}"
            sup.announce(f"all {count} ready in {took:.2f}s")

    def on_supervisor(sup: Supervisor) -> None:
        holder.append(sup)
        inner.start_soon(report_ready, sup)

    async def main() -> None:
        nonlocal inner
        async with anyio.create_task_group() as tg:
            inner = tg
            tg.start_soon(handle_signals)
            await serve(
                config,
                services=wanted,
                deps=False,
                attachments=attachments,
                sinks=[terminal, files],
                prespawned=prespawned,
                on_supervisor=on_supervisor,
            )
            holder[0].announce("every service stopped")
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    except BaseException as exc:
        error = _a3s_error(exc)
        if error is not None:
            raise error from None
        raise
    finally:
        terminal.close()
        files.close()
    return 0


def process_started() -> float:
    """When this process started, on the time.monotonic() clock (so "ready in" counts a3s's own start-up)."""
    import os

    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        # CLOCK_BOOTTIME (uptime) and monotonic differ by the time suspended, zero for a fresh process.
        return time.monotonic() - max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic()


def _a3s_error(exc: BaseException) -> A3sError | None:
    """The A3sError inside an exception group raised by a task group (an attachment's user error)."""
    if isinstance(exc, A3sError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _a3s_error(inner)
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------------- typer-free `a3s up`


@dataclass(frozen=True)
class UpArgs:
    """A plain foreground `a3s up` command line, parsed without typer."""

    services: tuple[str, ...] = ()
    file: Path | None = None
    deps: bool = True
    proxy: bool = True
    watch: bool = True
    color: bool = True


def parse_fast_up(argv: Sequence[str]) -> UpArgs | None:
    """UpArgs for `[-f F | --file F | --no-color]... up [SVC | --no-deps | --no-proxy | --no-watch | --file F]...`.

    Anything else (`-d`, `--help`, typos) returns None so that typer parses it and explains.
    Typer and the pydantic it pulls in cost ~150 ms, most of the time a service takes to start.
    """
    from a3s_dev.fast import parse_plain

    p = parse_plain(argv)
    if p is None or p.command != "up" or "-d" in p.flags:
        return None
    return UpArgs(
        p.names,
        Path(p.file) if p.file is not None else None,
        "--no-deps" not in p.flags,
        "--no-proxy" not in p.flags,
        "--no-watch" not in p.flags,
        p.color,
    )


def run_fast_up(args: UpArgs) -> int | None:
    """`a3s up` in the foreground without typer; None when a supervisor already runs (the CLI asks it)."""
    import os

    from a3s_dev import runtime
    from a3s_dev.config import find_file, load

    a3sfile = find_file(args.file)
    paths = runtime.paths_for(a3sfile)
    if runtime.lock_held(paths) or runtime.socket_answers(paths):
        return None
    config = load(a3sfile)
    opts = (tuple(args.services), args.deps, args.proxy, args.watch)

    def make_attachments() -> Sequence[Attachment]:
        from a3s_dev import daemon

        return daemon.attachments(config, paths, daemon.UpOptions(*opts))

    color = None if args.color and not os.environ.get("NO_COLOR") else False
    return run_foreground(
        config,
        services=args.services or None,
        deps=args.deps,
        attachments=[deferred(make_attachments)],
        color=color,
        proxy_port=config.settings.proxy_port if args.proxy else 0,
    )


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
