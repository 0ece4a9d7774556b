"""The shared proxy's side of registration: the Unix socket supervisors register on.

Each connection is one project (`registration.py` has the protocol): it is added to the
proxy's routes on `register`, updated on every `status`, and removed the moment the
connection closes, however the supervisor ended (SIGKILL included: the kernel closes its
socket). A message that is not what the protocol says is logged and its connection refused;
the proxy keeps serving everyone else. When no connection is left for `linger` seconds, the
proxy exits (under the spawn lock, so that no `a3s up` is starting to use it meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from a3s_dev.config.model import ServiceDef
from a3s_dev.core import history
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.errors import project_name_taken
from a3s_dev.link.protocol import (
    MAX_MESSAGE,
    BadMessage,
    ProjectView,
    Registration,
    decode,
    encode,
    parse_registration,
    parse_status,
    start_message,
    traffic_message,
)
from a3s_dev.system.procfs import alive

FIRST_MESSAGE_TIMEOUT = 60.0  # a connection that says nothing this long is closed
# A proxy just started may be asked for a host whose project's registration is still on its
# way (the `a3s up` that started it sent it first, but the browser's request can be read
# first): for this long, and while a connection has not said who it is, such a request waits.
STARTUP_GRACE = 1.5


class RemoteProject:
    """A project registered over the socket: what its supervisor last said."""

    def __init__(self, reg: Registration) -> None:
        self.name = reg.project
        self.a3sfile: Path | None = reg.a3sfile
        self.services: tuple[ServiceDef, ...] = reg.services
        self.pid = reg.pid
        self.https_port = reg.https_port
        self.control: Path | None = reg.control
        self.logs: Path | None = reg.logs
        self._statuses = dict(reg.statuses)
        self._names = {s.name for s in reg.services}
        self.send: Callable[[dict[str, object]], None] | None = None  # a line to its supervisor

    def wake(self, name: str) -> None:
        if self.send is not None and name in self._names:
            self.send(start_message(name))

    def traffic(self, name: str, open_sockets: int | None = None) -> None:
        if self.send is not None and name in self._names:
            self.send(traffic_message(name, open_sockets))

    def status(self, name: str) -> ServiceStatus:
        if name not in self._names:
            raise KeyError(name)
        return self._statuses.get(name) or ServiceStatus(name, ServiceState.STOPPED)

    def update(self, status: ServiceStatus) -> bool:
        if status.name not in self._names:
            return False
        self._statuses[status.name] = status
        return True

    def tail(self, name: str, n: int = 20) -> list[str]:
        if name not in self._names:
            raise KeyError(name)
        logs = self.logs
        return history.tail(logs, name, n) if logs is not None else []


class Members(Protocol):
    """What the registry changes in the proxy (`server.ProxyServer`)."""

    port: int

    @property
    def projects(self) -> Mapping[str, ProjectView]: ...
    def add(self, view: ProjectView) -> None: ...
    def remove(self, view: ProjectView) -> None: ...
    def changed(self, project: str, name: str, state: ServiceState) -> None: ...
    async def serve_https(self, port: int) -> str | None: ...
    def login(self) -> str | None: ...  # a one-time dashboard login token, where one is asked for


class Registry:
    """The registration socket's server: one task per connection, the idle timer."""

    def __init__(
        self,
        *,
        log: Callable[[str], None],
        on_stop: Callable[[], None],
        linger: float | None = None,
        socket_file: Path | None = None,
        exit_lock: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        """`linger`: seconds without any connection after which `on_stop` is called (None:
        never). `socket_file` is removed on `close`, under `exit_lock` (the spawn lock)."""
        self.log = log
        self.on_stop = on_stop
        self.linger = linger
        self.socket_file = socket_file
        self.exit_lock = exit_lock
        self.connections: set[asyncio.StreamWriter] = set()
        self.unnamed = 0  # connections that have not registered (nor said anything) yet
        self._news = asyncio.Event()  # set (and replaced) whenever a project registers
        self._started = 0.0
        self._idle: asyncio.TimerHandle | None = None
        self._server: asyncio.AbstractServer | None = None

    async def serve(self, sock: socket.socket, members: Members) -> None:
        """Take registrations on `sock` for `members` (the proxy) until `close`."""
        self.members = members
        self._started = asyncio.get_running_loop().time()
        self._server = await asyncio.start_unix_server(self._connection, sock=sock, limit=MAX_MESSAGE + 1)
        self._arm()

    def expecting(self) -> float:
        """How long a registration may still be on its way (0: none is): a connection has not
        said who it is yet, or the proxy started moments ago."""
        since = asyncio.get_running_loop().time() - self._started
        return max(STARTUP_GRACE - since, 1.0 if self.unnamed else 0.0)

    async def news(self, timeout: float) -> None:
        """Return when a project registers, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._news.wait()

    def _announce_news(self) -> None:
        self._news.set()
        self._news = asyncio.Event()

    def close(self) -> None:
        """Stop taking registrations: no new `a3s up` can reach this proxy after it returns."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._server is None:
            return
        server, self._server = self._server, None
        with self.exit_lock():
            server.close()
            if self.socket_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.socket_file.unlink()
        self.say_to_all({"type": "stopping"})

    def _arm(self) -> None:
        if self.linger is not None and not self.connections and self._idle is None and self._server is not None:
            self._idle = asyncio.get_running_loop().call_later(self.linger, self._idle_fired)

    def _idle_fired(self) -> None:
        self._idle = None
        if not self.connections:
            self.log(f"exiting: no project for {self.linger:g} s")
            self.close()
            self.on_stop()

    def say_to_all(self, message: dict[str, object]) -> None:
        for writer in list(self.connections):
            with contextlib.suppress(Exception):
                writer.write(encode(message))

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        view: RemoteProject | None = None
        self.unnamed += 1
        unnamed = True
        try:
            async with asyncio.timeout(FIRST_MESSAGE_TIMEOUT):
                line = await reader.readline()
            self.unnamed -= 1
            unnamed = False
            if not line:
                return  # a look (`a3s proxy stop`'s pid check, a supervisor's probe)
            first = decode(line)
            if first["type"] == "stop":
                self.log("stopping: asked by `a3s proxy stop`")
                self.on_stop()
                return
            if first["type"] == "login":  # `a3s ls`: a dashboard login link, where one is asked for
                writer.write(encode({"type": "login", "token": self.members.login()}))
                return
            reg = parse_registration(first)
            other = self.members.projects.get(reg.project)
            if isinstance(other, RemoteProject) and other.a3sfile != reg.a3sfile:
                refusal = project_name_taken(reg.project, str(other.a3sfile))
                writer.write(encode({"type": "refused", "message": refusal}))
                self.log(f"refused {reg.project} from {reg.a3sfile}: the name is taken")
                return
            if isinstance(other, RemoteProject) and other.pid != reg.pid and alive(other.pid):
                # Same A3sfile, another live process: not its supervisor coming back (which has
                # the same pid, or follows one that is gone), so the live one keeps its routes.
                refusal = (f"project {reg.project} from {reg.a3sfile} is registered by its running "
                           f"supervisor (pid {other.pid})")
                writer.write(encode({"type": "refused", "message": refusal}))
                self.log(f"refused {reg.project} from {reg.a3sfile} (pid {reg.pid}): {refusal}")
                return
            view = RemoteProject(reg)
            view.send = functools.partial(_say, writer)
            self.members.add(view)
            self._announce_news()
            https_error = None if reg.https_port is None else await self.members.serve_https(reg.https_port)
            if https_error:
                self.log(f"{reg.project}: {https_error}")
            writer.write(
                encode({"type": "registered", "port": self.members.port, "pid": os.getpid(), "https_error": https_error,
                        "login": self.members.login()})
            )
            self.log(f"{view.name} registered: {reg.a3sfile} (supervisor pid {reg.pid}, {len(reg.services)} services)")
            while line := await reader.readline():
                msg = decode(line)
                if msg["type"] != "status":
                    raise BadMessage(f'unexpected message "{msg["type"]}" after register')
                status = parse_status(msg.get("status"))
                if view.update(status):
                    self.members.changed(view.name, status.name, status.state)
        except BadMessage as exc:
            self.log(f"refused a registration message: {exc}")
            with contextlib.suppress(Exception):
                writer.write(encode({"type": "refused", "message": str(exc)}))
        except ValueError:  # a line over the limit (asyncio's LimitOverrunError, via readline)
            self.log(f"refused a registration message: longer than {MAX_MESSAGE} bytes")
        except (TimeoutError, ConnectionError):
            pass
        except asyncio.CancelledError:
            return  # the proxy is stopping: this connection ends with it (asyncio would log it)
        finally:
            if unnamed:
                self.unnamed -= 1
                self._announce_news()
            if view is not None:
                self.members.remove(view)
                self.log(f"{view.name} left")
            self.connections.discard(writer)
            writer.close()
            # CancelledError too: a stop's own connection is still closing when the proxy exits
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._arm()


def _say(writer: asyncio.StreamWriter, message: dict[str, object]) -> None:
    """One line to a registered supervisor; a connection going away is the reader's to notice."""
    with contextlib.suppress(Exception):
        writer.write(encode(message))
