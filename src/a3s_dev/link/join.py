"""A supervisor's side of the shared proxy: register, push every state change, come back.

The supervisor's attachment `join_proxy`: it registers the project on the connection `a3s up`
opened before anything was spawned (`proxy_process.ensure`), then sends the status of each service
whose state or probe result changes, as it changes. When the proxy goes away (killed, or
upgraded), it starts a new one and registers again at once: the services never notice.
After `a3s proxy stop` it waits for the next state change before doing so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus

from a3s_dev.config.model import DevConfig
from a3s_dev.core.events import (
    ConfigApplied,
    Event,
    EventBus,
    HealthChanged,
    ProbeChanged,
    StateChanged,
    UsageSampled,
)
from a3s_dev.core.policy import ExponentialBackoff
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.errors import RuntimeFailure
from a3s_dev.link import proxy_process
from a3s_dev.link.addresses import login_link, proxy_banner, routed
from a3s_dev.link.protocol import (
    BadMessage,
    decode,
    encode,
    parse_wake,
    register_message,
    status_message,
)

ANSWER_TIMEOUT = proxy_process.START_TIMEOUT
# Seconds between attempts to bring a lost proxy back: 0.05, 0.1, 0.2 ... 2, 2 (the restart policy's curve).
RETRY = ExponentialBackoff(first=0.05, cap=2.0)
PROXY_WATCH = 1.0  # seconds between looks for a proxy back after `a3s proxy stop`
SAY_AGAIN_AT = 3  # the attempt whose failure is said too (it lasts): about 0.35 s in


class Member(Protocol):
    """The slice of the Supervisor the registration uses."""

    config: DevConfig
    bus: EventBus

    def status(self, name: str) -> ServiceStatus: ...
    def snapshot(self) -> list[ServiceStatus]: ...
    def announce(self, text: str) -> None: ...
    def wake_up(self, name: str) -> None: ...
    def traffic(self, name: str, open_sockets: int | None = None) -> None: ...


def register_now(sock: socket.socket, config: DevConfig, logs: Path, control: Path | None = None) -> None:
    """Send the registration on `sock` before the supervisor exists, every service `pending`,
    so the proxy holds a browser's first requests instead of finding no route. The answer is
    not awaited here (a proxy just started takes ~0.5 s to import itself; the first spawn must
    not wait for it): `join_proxy` reads it when it takes the connection over."""
    pending = [ServiceStatus(name, ServiceState.PENDING) for name in config.names]
    sock.sendall(encode(register_message(config, pending, logs=logs, pid=os.getpid(), control=control)))


async def launch(
    supervisor: Member,
    *,
    port: int,
    sockets: list[socket.socket],
    answered: anyio.Event,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Start the shared proxy on the sockets `a3s up` listened on before the first spawn, and
    return once it answered this project's registration (`answered`, set by `join_proxy`), so
    that what attaches next (the control API, which `up -d` waits on) finds the routes up.
    It runs as an attachment, once the first services are up: the proxy's ~0.5 s of imports
    must not take the CPU from services that are starting. Until then its connections wait."""
    try:
        await anyio.to_thread.run_sync(proxy_process.start, port, sockets)
    finally:
        for sock in sockets:
            sock.close()
    with anyio.move_on_after(proxy_process.START_TIMEOUT):
        await answered.wait()
    task_status.started()


class _Lost(Exception):
    """The proxy closed the connection (it was killed, or it exited)."""


class _Stopped(Exception):
    """The proxy said it stops (`a3s proxy stop`)."""


class _Refused(Exception):
    pass


class _Reregister(Exception):
    """The supervisor runs a changed A3sfile: register the project anew."""


async def join_proxy(
    supervisor: Member,
    *,
    port: int,
    logs: Path,
    control: Path | None = None,
    connection: socket.socket | None = None,
    answered: anyio.Event | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Stay registered with this user's proxy on `port` until cancelled; `connection` is one
    `register_now` registered on. `answered` is set once the proxy answered (or could not)."""
    answered = answered or anyio.Event()
    changed: set[str] = set()
    wake = asyncio.Event()
    reregister = asyncio.Event()  # the A3sfile was applied: the proxy needs the new services

    stirred = asyncio.Event()  # a change of state: after `a3s proxy stop`, what brings the proxy back

    def on_event(event: Event) -> None:
        if isinstance(event, ConfigApplied):
            reregister.set()
        elif isinstance(event, UsageSampled):  # the figures of every service with a process
            changed.update(s.name for s in supervisor.snapshot() if s.pid is not None)
        else:
            changed.add(event.service)
        if not isinstance(event, UsageSampled):  # figures every 2 s are no reason to restart a stopped proxy
            stirred.set()
        wake.set()

    kinds = (StateChanged, HealthChanged, ProbeChanged, ConfigApplied, UsageSampled)
    unsubscribe = supervisor.bus.subscribe(on_event, kinds)
    announced = False  # the routes, once the proxy first answered
    registered = connection is not None
    failures = 0
    lost = False
    # The services run whatever happens to the proxy: they never wait for its answer (with
    # register_now's connection, the proxy may not even be started yet: `launch` follows this).
    task_status.started()
    try:
        while True:
            sock, connection = connection, None
            try:
                if sock is None:
                    sock = await anyio.to_thread.run_sync(proxy_process.running, port)
                reader, writer = await asyncio.open_unix_connection(sock=sock)
                sock = None  # the writer owns it now
                try:
                    if registered:
                        registered = False  # by register_now: its answer, then bring the proxy up to date
                        answer = await _answered(reader)
                        changed.update(supervisor.config.names)
                        wake.set()
                    else:
                        # the snapshot is taken now: what changes from here on is sent after it
                        changed.clear()
                        answer = await _register(supervisor, reader, writer, logs, control)
                    if answer.get("https_error"):
                        supervisor.announce(str(answer["https_error"]))
                    answered.set()
                    if not announced:
                        announced = True
                        login = answer.get("login")
                        announce_routes(supervisor, https=not answer.get("https_error"),
                                        login=login if isinstance(login, str) else None)
                    elif failures or lost:
                        supervisor.announce("registered with the proxy again; every route is back")
                    failures, lost = 0, False
                    await _pump(supervisor, reader, writer, changed, wake, reregister)
                finally:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
            except _Reregister:
                # The connection is the registration: closed, the old services' routes go; the
                # next one registers the services the supervisor runs now.
                reregister.clear()
            except _Stopped:
                supervisor.announce("the proxy was stopped (a3s proxy stop); it comes back at the next change of state")
                stirred.clear()
                await _change_or_proxy(stirred, port)
            except _Refused as exc:
                supervisor.announce(f"the proxy refused this project: {exc}")
                answered.set()
                stirred.clear()
                await stirred.wait()  # asked again at the next change of state
            except (_Lost, OSError, RuntimeFailure) as exc:
                if sock is not None:
                    sock.close()
                registered = False
                if failures == 0 and announced and not lost:
                    lost = True
                    supervisor.announce("the proxy went away; starting it again")
                elif failures in (0, SAY_AGAIN_AT):  # the first attempt failed, or it lasts
                    why = exc.message if isinstance(exc, RuntimeFailure) else "no answer"
                    supervisor.announce(f"cannot reach the proxy: {why}; trying again")
                if failures >= 1:
                    answered.set()  # no need to hold the control API back any longer
                await anyio.sleep(RETRY.delay(failures))
                failures += 1
    finally:
        unsubscribe()


async def _change_or_proxy(stirred: asyncio.Event, port: int) -> None:
    """Return at the next change of state, or once a proxy answers on `port` again (another
    project's change brought it back: this project registers with it at once, not at its own
    next change). Its socket file is looked at every PROXY_WATCH seconds, connected to only
    when it is there."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROXY_WATCH):
                await stirred.wait()
                return
        if proxy_process.socket_path(port).exists():
            sock = await anyio.to_thread.run_sync(proxy_process.connect, port, 0.5)
            if sock is not None:
                sock.close()
                return


async def _register(
    supervisor: Member, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, logs: Path, control: Path | None
) -> dict[str, Any]:
    message = register_message(supervisor.config, supervisor.snapshot(), logs=logs, pid=os.getpid(), control=control)
    writer.write(encode(message))
    await writer.drain()
    return await _answered(reader)


async def _answered(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The proxy's answer to a registration: `registered`, else _Refused or _Lost."""
    with anyio.fail_after(ANSWER_TIMEOUT):
        answer = await _read(reader)
    if answer.get("type") == "refused":
        raise _Refused(str(answer.get("message")))
    if answer.get("type") != "registered":
        raise _Lost
    return answer


def announce_routes(supervisor: Member, *, https: bool, login: str | None = None) -> None:
    """The one line `a3s up` prints once registered: where each service can be reached; and,
    where the dashboard asks for a login, its link with a `login` token."""
    config = supervisor.config
    settings = config.settings
    entries = routed(config.project, config.services)
    supervisor.announce(proxy_banner(entries, settings.proxy_port, settings.https_port if settings.https and https else None))
    if login is not None:
        supervisor.announce(f"dashboard: {login_link(settings.proxy_port, login)} (a login link, good once)")
    if settings.https and https:
        from a3s_dev.tls.ca import LocalCA

        if not LocalCA().trusted():
            supervisor.announce("https: browsers do not trust a3s's local CA yet; run `a3s trust` once")


async def _pump(
    supervisor: Member,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    changed: set[str],
    wake: asyncio.Event,
    reregister: asyncio.Event,
) -> None:
    """Send each changed service's status until the proxy goes away or says it stops, or the
    project must register anew (`reregister`)."""

    async def until_stopping() -> None:
        while True:
            message = await _read(reader)
            kind = message.get("type")
            if kind == "stopping":
                raise _Stopped
            if kind in ("start", "traffic"):  # SPEC §13: what the proxy saw of the services
                try:
                    name, open_sockets = parse_wake(message)
                except BadMessage:
                    continue
                if kind == "start":
                    supervisor.wake_up(name)
                else:
                    supervisor.traffic(name, open_sockets)

    listener = asyncio.ensure_future(until_stopping())
    try:
        while True:
            waiter = asyncio.ensure_future(wake.wait())
            done, _ = await asyncio.wait({listener, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if listener in done:
                waiter.cancel()
                listener.result()  # raises _Lost or _Stopped
            wake.clear()
            if reregister.is_set():
                raise _Reregister
            names = list(changed)
            changed.clear()
            for name in names:
                with contextlib.suppress(KeyError):
                    writer.write(encode(status_message(supervisor.status(name))))
            try:
                await writer.drain()
            except (ConnectionError, RuntimeError):
                raise _Lost from None
    finally:
        listener.cancel()


async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
    try:
        line = await reader.readline()
    except (ConnectionError, ValueError):
        raise _Lost from None
    if not line:
        raise _Lost
    try:
        return decode(line)
    except BadMessage:
        raise _Lost from None
