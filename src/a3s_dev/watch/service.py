"""The watcher's service: one `Watcher` for every service's paths, one debounce loop per
watched service, and the restart (or the report) when a burst of changes is over.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.abc import TaskStatus

from a3s_dev.core.policy import ExponentialBackoff
from a3s_dev.errors import A3sError, one_line
from a3s_dev.watch.engine import Watcher, WatchfilesWatcher
from a3s_dev.watch.rules import (
    LOOP_WINDOW,
    RESTARTABLE,
    PendingChanges,
    RestartLoop,
    Routes,
    WatchRule,
    describe_change,
)

if TYPE_CHECKING:
    from a3s_dev.config.model import DevConfig
    from a3s_dev.core.state import ServiceStatus


class WatchTarget(Protocol):
    """The part of the `Supervisor` the watcher uses."""

    @property
    def config(self) -> DevConfig: ...

    async def restart(self, name: str, *, cause: str = "a3s restart") -> None: ...

    def status(self, name: str) -> ServiceStatus: ...

    def announce(self, text: str) -> None: ...

    def standing_warning(self, name: str, text: str, seconds: float) -> None: ...


# ---------------------------------------------------------------------------- watch_services


async def _debounce_loop(
    supervisor: WatchTarget,
    rule: WatchRule,
    root: str,
    pending: PendingChanges,
    wake: Callable[[], anyio.Event],
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """Wait for a burst to end, then act once; changes during the restart make one more round.
    A service restarting on files it writes itself is told about once, then slowed down."""
    loop = RestartLoop(rule.service, root)
    while True:
        if not pending:
            await wake().wait()
            continue
        while (delay := pending.remaining(clock())) > 0:
            await sleep(delay)
        changed = pending.take()
        restarting = rule.restart and supervisor.status(rule.service).state in RESTARTABLE
        if restarting:
            warning, backoff = loop.decide(clock(), changed)
            if warning is not None:
                supervisor.announce(warning)
            if loop.warning is not None and backoff:  # still looping: `status` says it for a window more
                supervisor.standing_warning(rule.service, loop.warning, LOOP_WINDOW)
            if backoff:
                await sleep(backoff)
                changed = tuple(dict.fromkeys([*changed, *pending.take()]))  # what came meanwhile
        if not rule.restart or restarting:
            supervisor.announce(describe_change(rule.service, changed, root, restarting=restarting))
        if restarting:
            try:
                await supervisor.restart(rule.service, cause="file change")
            except A3sError as exc:
                supervisor.announce(f"{rule.service}: restart failed: {exc.message}")
            except Exception as exc:  # noqa: BLE001 - a dead watcher would silently end the dev loop
                supervisor.announce(f"{rule.service}: restart failed: {exc!r}")


async def watch_services(
    supervisor: WatchTarget,
    *,
    watcher: Watcher | None = None,
    retry_delay: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Watch every service's `watch.paths` with one watcher and restart (or just report)
    the services a change concerns; runs until cancelled. Returns at once if nothing is watched.
    The debounce and the restart-loop backoff run on `clock` and `sleep` (tests pass a virtual
    clock, so "after 200 ms of quiet" is checked without waiting 200 ms)."""
    routes = Routes.of(supervisor.config)
    if not routes.rules:
        task_status.started()
        return
    if watcher is None:
        watcher = WatchfilesWatcher(warn=supervisor.announce)
    pending = {rule.service: PendingChanges(rule.debounce) for rule in routes.rules}
    events = {rule.service: anyio.Event() for rule in routes.rules}

    def waker(name: str) -> Callable[[], anyio.Event]:
        def wake() -> anyio.Event:
            if events[name].is_set():
                events[name] = anyio.Event()
            return events[name]

        return wake

    started = False
    failures = 0
    async with anyio.create_task_group() as tg:
        for rule in routes.rules:
            tg.start_soon(
                _debounce_loop,
                supervisor,
                rule,
                routes.root,
                pending[rule.service],
                waker(rule.service),
                clock,
                sleep,
            )
        while True:
            try:
                async with watcher.open(routes.paths, routes.accepts) as batches:
                    if not started:
                        started = True
                        task_status.started()
                    if failures:
                        failures = 0
                        supervisor.announce("file watching resumed")
                    async for batch in batches:
                        now = clock()
                        touched: dict[str, list[str]] = {}
                        for path in batch:
                            for name in routes.route(path):
                                touched.setdefault(name, []).append(path)
                        for name, changed in touched.items():
                            pending[name].add(changed, now)
                            events[name].set()
                break  # the watcher closed its stream: nothing more will come
            except Exception as exc:  # noqa: BLE001
                # A broken watcher must not take the running stack down with it (this
                # coroutine shares the session's task group): say so, and try again.
                failures += 1
                delay = ExponentialBackoff(first=retry_delay).delay(failures - 1)
                supervisor.announce(f"file watching failed: {one_line(exc, typed=False)}; retrying in {delay:g}s")
                if not started:
                    started = True
                    task_status.started()
                await anyio.sleep(delay)
        tg.cancel_scope.cancel()
