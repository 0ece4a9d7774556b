"""What a run decides and does before the event loop: which services, their automatic ports, the
groups a killed predecessor left, the shared proxy, and the first wave's spawn.

Stdlib and pure decisions only (asyncio, aiohttp and networkx are not imported here unless
`up SVC` needs the graph to know what SVC depends on), so the first wave starts as early as it can.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from a3s_dev.config.interpolate import resolve
from a3s_dev.config.model import BROWSER_BLOCKED_PORTS, DevConfig, with_ports
from a3s_dev.core.containers import find_runtime, start
from a3s_dev.core.groups import GroupRegistry
from a3s_dev.core.process import ServiceProcess, check_port_free
from a3s_dev.errors import RuntimeFailure
from a3s_dev.run.workspace import RuntimePaths, end_left

if TYPE_CHECKING:
    from a3s_dev.link.proxy_process import Reached

ORPHANS = "a3s: ended the process groups a killed supervisor left: "


def wanted_services(config: DevConfig, services: Iterable[str] | None, deps: bool) -> list[str]:
    """The services `up [SVC...] [--no-deps]` starts, in declaration order; UsageError for unknown
    names. With `deps`, their dependency closure, from the graph's plan."""
    if not services:
        return config.eager  # SPEC §13: a lazy service waits for its first request
    from a3s_dev.config import graph

    named = graph.known(config, services)
    chosen = set(graph.plan(config).closure(named)) if deps else set(named)
    return [n for n in config.names if n in chosen]


def proxy_ports(config: DevConfig) -> frozenset[int]:
    """Every port the shared proxy listens on for this config (http, and https when on)."""
    settings = config.settings
    return frozenset({settings.proxy_port, *((settings.https_port,) if settings.https else ())})


def choose_ports(config: DevConfig) -> DevConfig:
    """`config` with a free loopback port for each `port = "auto"` service, chosen now and kept
    for the supervisor's lifetime (its restarts included): never a fixed service's port, a port
    the proxy listens on, or one browsers refuse to open."""
    from a3s_dev.system.ports import free_loopback_port

    wanted = [s.name for s in config.services if s.auto_port and s.port is None]
    if not wanted:
        return resolve(config)
    taken = {s.port for s in config.services if s.port is not None} | proxy_ports(config) | BROWSER_BLOCKED_PORTS
    chosen: dict[str, int] = {}
    for name in wanted:
        port = free_loopback_port(frozenset(taken))
        if port is None:
            raise RuntimeFailure(f'service {name}: no free loopback port found for port = "auto"')
        chosen[name] = port
        taken.add(port)
    return resolve(with_ports(config, chosen))  # then `${services.NAME.port}` can be filled in


def end_orphans(paths: RuntimePaths, config: DevConfig) -> list[str]:
    """End the groups `groups.json` still lists (call with the lock held: they belong to a dead
    supervisor), each with its service's stop signal, and remove this A3sfile's containers
    (SPEC §14: a killed client leaves its container running); the services they were."""
    runtime = find_runtime(config.settings.container_runtime) if any(s.image for s in config.services) else None
    return [o.service for o in end_left(paths, runtimes=[runtime] if runtime else [])]


def reach_proxy(config: DevConfig, paths: RuntimePaths) -> Reached:
    """Register with this user's shared proxy; the connection, and the proxy's listening sockets
    when none ran (it starts later: `launch`). Before anything is spawned: a port someone else
    holds fails the command with one line, nothing half-started, and a browser's first request
    is held until the services are ready, not refused."""
    from a3s_dev.link import join, proxy_process

    if config.settings.https:
        from a3s_dev.tls.ca import LocalCA

        LocalCA().ensure()  # before any spawn: services are pointed at its files (ca_env)
    reached = proxy_process.ensure(config.settings.proxy_port)
    try:
        join.register_now(reached.connection, config, paths.logs_dir, paths.socket)
    except BaseException:
        reached.close()
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

    spawned: dict[str, ServiceProcess] = {}
    for name in independent(config, wanted):
        svc = config.service(name)
        try:
            check_port_free(svc)
            proc = spawned[name] = start(svc, config)
        except RuntimeFailure:
            continue
        if groups is not None:
            groups.add(name, proc.record(svc))
    return spawned
