"""Helpers for supervisor tests: a running Supervisor in a task group that always cleans up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from support import kill_group, pids_in_group, until

from a3s_dev.config.model import DevConfig, HealthConfig, ProbeKind, RestartMode, ServiceDef
from a3s_dev.core.events import StateChanged
from a3s_dev.core.logs import MemorySink
from a3s_dev.core.state import ServiceState
from a3s_dev.core.supervisor import Cadence, Supervisor


def service(
    name: str,
    cmd: str,
    folder: Path,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    depends_on: tuple[str, ...] = (),
    restart: RestartMode = RestartMode.ON_FAILURE,
    oneshot: bool = False,
    stop_timeout: float = 5.0,
    stop_signal: str = "SIGTERM",
    health: HealthConfig | None = None,
    env_file: Path | None = None,
) -> ServiceDef:
    """A ServiceDef as the config loader would build it (oneshot defaults to restart=never)."""
    if oneshot and restart is RestartMode.ON_FAILURE:
        restart = RestartMode.NEVER
    return ServiceDef(
        name=name,
        cmd=cmd,
        dir=folder,
        port=port,
        env=dict(env or {}),
        depends_on=depends_on,
        restart=restart,
        oneshot=oneshot,
        stop_timeout=stop_timeout,
        stop_signal=stop_signal,
        health=health,
        env_file=env_file,
    )


def make_config(folder: Path, *services: ServiceDef) -> DevConfig:
    return DevConfig(path=folder / "A3sfile.hcl", services=tuple(services))


def tcp(interval: float = 0.1, retries: int = 2, timeout: float = 0.5) -> HealthConfig:
    return HealthConfig(type=ProbeKind.TCP, interval=interval, timeout=timeout, retries=retries)


def http(
    path: str = "/health", interval: float = 0.1, retries: int = 2, timeout: float = 1.0
) -> HealthConfig:
    return HealthConfig(
        type=ProbeKind.HTTP, path=path, interval=interval, timeout=timeout, retries=retries
    )


class Recorder:
    """Every state change, with the time it was seen."""

    def __init__(self) -> None:
        self.changes: list[StateChanged] = []
        self.pgids: set[int] = set()

    def __call__(self, event: Any) -> None:
        if isinstance(event, StateChanged):
            self.changes.append(event)
            if event.pid is not None:
                self.pgids.add(event.pid)  # each service leads its own group: pgid == pid

    def states(self, name: str) -> list[ServiceState]:
        return [c.new for c in self.changes if c.service == name]


@asynccontextmanager
async def running(
    config: DevConfig, **options: Any
) -> AsyncIterator[tuple[Supervisor, MemorySink, Recorder]]:
    """A Supervisor serving `config` (nothing started yet); stopped, and every group killed, on exit."""
    sink = MemorySink()
    recorder = Recorder()
    options.setdefault("cadence", Cadence(fast=0.005, fast_for=5.0, slow=0.05))
    sup = Supervisor(config, sinks=[sink, *options.pop("sinks", ())], **options)
    sup.bus.subscribe(recorder)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            try:
                yield sup, sink, recorder
            finally:
                with anyio.move_on_after(20, shield=True):
                    await sup.shutdown()
    finally:
        for pgid in recorder.pgids:  # last resort when a test failed half-way
            if pids_in_group(pgid):
                kill_group(pgid)


poll = until  # the name these tests grew up with


def read_record(path: Path) -> dict[tuple[str, str], list[float]]:
    """The `<name> <event> <time>` lines HTTP_SERVICE appends, grouped by (name, event)."""
    found: dict[tuple[str, str], list[float]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        name, event, at = line.split()
        found.setdefault((name, event), []).append(float(at))
    return found
