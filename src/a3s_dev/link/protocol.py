"""The registration protocol between supervisors and the shared proxy (docs/proxy.md).

One JSON object per line over the proxy's per-user Unix socket. A supervisor sends
`register` once, then a `status` for every change of one of its services; the proxy answers
`registered` (or `refused`, then closes). The connection closing is the end of the
registration: the project's routes go at once. `a3s proxy stop` sends `stop`.

Pure: building and checking messages, no sockets. Everything a message says is checked
before the proxy uses any of it; a message that fails is a `BadMessage` naming why.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from a3s_dev.config.model import DevConfig, HealthConfig, ProbeKind, ServiceDef, dns_label
from a3s_dev.core.state import ServiceState, ServiceStatus

PROTOCOL = 1
MAX_MESSAGE = 1 << 20  # bytes in one line; a project of hundreds of services fits easily
MAX_SERVICES = 1000
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")


class BadMessage(ValueError):
    """A message the proxy refuses: not JSON, not an object, or a field of the wrong kind."""


@dataclass(frozen=True)
class Registration:
    """A project as its supervisor announced it."""

    project: str
    a3sfile: Path
    logs: Path  # the project's `.a3s/logs/`: the error pages' log tails are read there
    pid: int
    services: tuple[ServiceDef, ...]
    statuses: dict[str, ServiceStatus]
    https_port: int | None = None  # the project wants TLS served on this port too
    control: Path | None = None  # the supervisor's control socket: the dashboard's logs and actions


# ---------------------------------------------------------------------------- building


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def status_wire(st: ServiceStatus) -> dict[str, Any]:
    """Every field of `st` as it is (`parse_status` reads it back), the state by its name."""
    return {**dataclasses.asdict(st), "state": st.state.value}


def register_message(
    config: DevConfig, statuses: Iterable[ServiceStatus], *, logs: Path, pid: int, control: Path | None = None
) -> dict[str, Any]:
    return {
        "type": "register",
        "protocol": PROTOCOL,
        "project": config.project,
        "a3sfile": str(config.path),
        "logs": str(logs),
        "control": str(control) if control is not None else None,
        "pid": pid,
        "https_port": config.settings.https_port if config.settings.https else None,
        "services": [
            {
                "name": s.name,
                "port": s.port,
                "subdomain": s.subdomain,
                "proxy": s.proxy,
                "depends_on": list(s.depends_on),
                # the http probe's path: the proxy's pages hide the probe's requests in log tails
                "probe_path": s.probe.path if s.probe is not None and s.probe.type is ProbeKind.HTTP else None,
            }
            for s in config.services
        ],
        "statuses": [status_wire(st) for st in statuses],
    }


def status_message(st: ServiceStatus) -> dict[str, Any]:
    return {"type": "status", "status": status_wire(st)}


def start_message(service: str) -> dict[str, Any]:
    """Proxy to supervisor: a request came for an `idle` service; start it (SPEC §13)."""
    return {"type": "start", "service": service}


def traffic_message(service: str, open_sockets: int | None = None) -> dict[str, Any]:
    """Proxy to supervisor: requests are being forwarded to `service` (and, when given, how many
    WebSockets to it are open): what keeps an `idle_stop` service up."""
    message: dict[str, Any] = {"type": "traffic", "service": service}
    if open_sockets is not None:
        message["open"] = open_sockets
    return message


def parse_wake(obj: Mapping[str, Any]) -> tuple[str, int | None]:
    """A `start` or `traffic` message's service name, and its open WebSockets (None: not said)."""
    name = _name(obj.get("service"), "the service")
    open_sockets = _field(obj, "open", int, optional=True)
    if open_sockets is not None and open_sockets < 0:
        raise BadMessage('"open" is negative')
    return name, open_sockets


# ---------------------------------------------------------------------------- checking


def decode(line: bytes) -> dict[str, Any]:
    """One line -> a message object with a string `type`; BadMessage otherwise."""
    if len(line) > MAX_MESSAGE:
        raise BadMessage(f"message longer than {MAX_MESSAGE} bytes")
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        raise BadMessage("not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise BadMessage('not a JSON object with a string "type"')
    return obj


def _field(obj: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    allowed = kinds if isinstance(kinds, tuple) else (kinds,)
    # a bool is an int to Python, never to us
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise BadMessage(f'"{key}" is missing or not of the right type')
    return value


def _port(obj: Mapping[str, Any], key: str) -> int | None:
    port = _field(obj, key, int, optional=True)
    if port is not None and not 1 <= port <= 65535:
        raise BadMessage(f'"{key}" is not a port number')
    return port


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise BadMessage(f"{what} is not a valid name")
    return value


def parse_status(obj: Any) -> ServiceStatus:
    if not isinstance(obj, dict):
        raise BadMessage("a status is not an object")
    try:
        state = ServiceState(obj.get("state"))
    except ValueError:
        raise BadMessage('"state" is not a service state') from None
    return ServiceStatus(
        name=_name(obj.get("name"), "a status's service"),
        state=state,
        pid=_field(obj, "pid", int, optional=True),
        port=_port(obj, "port"),
        health=_field(obj, "health", str, optional=True),
        started_at=_field(obj, "started_at", (int, float), optional=True),
        restarts=_field(obj, "restarts", int, optional=True) or 0,
        exit_code=_field(obj, "exit_code", int, optional=True),
        url=_field(obj, "url", str, optional=True),
        reason=_field(obj, "reason", str, optional=True),
        probe=_field(obj, "probe", str, optional=True),
        cpu=_field(obj, "cpu", (int, float), optional=True),
        rss=_field(obj, "rss", int, optional=True),
        cpu_seconds=_field(obj, "cpu_seconds", (int, float), optional=True),
    )


def parse_registration(obj: Mapping[str, Any]) -> Registration:
    """A `register` message -> Registration; BadMessage naming the first thing wrong."""
    if obj.get("type") != "register":
        raise BadMessage('the first message must be "register"')
    if obj.get("protocol") != PROTOCOL:
        raise BadMessage(f"protocol {obj.get('protocol')!r} is not {PROTOCOL} (a3s versions differ: restart the proxy)")
    project = _field(obj, "project", str)
    if dns_label(project) != project:
        raise BadMessage("the project name is not a DNS label")
    a3sfile = Path(_field(obj, "a3sfile", str))
    logs = Path(_field(obj, "logs", str))
    control_text = _field(obj, "control", str, optional=True)
    control = Path(control_text) if control_text is not None else None
    if not a3sfile.is_absolute() or not logs.is_absolute() or (control is not None and not control.is_absolute()):
        raise BadMessage('"a3sfile", "logs" and "control" must be absolute paths')
    pid = _field(obj, "pid", int)
    https_port = _port(obj, "https_port")
    raw = _field(obj, "services", list)
    if len(raw) > MAX_SERVICES:
        raise BadMessage(f"more than {MAX_SERVICES} services")
    services = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadMessage("a service is not an object")
        deps = _field(item, "depends_on", list, optional=True) or []
        probe_path = _field(item, "probe_path", str, optional=True)
        if probe_path is not None and (not probe_path.startswith("/") or len(probe_path) > 1024):
            raise BadMessage("a probe path must start with / and be at most 1024 characters")
        services.append(
            ServiceDef(
                name=_name(item.get("name"), "a service"),
                cmd="",
                dir=a3sfile.parent,
                port=_port(item, "port"),
                subdomain=_name(item["subdomain"], "a subdomain") if item.get("subdomain") is not None else None,
                depends_on=tuple(_name(d, "a dependency") for d in deps),
                proxy=bool(_field(item, "proxy", bool, optional=True) is not False),
                health=HealthConfig(type=ProbeKind.HTTP, path=probe_path) if probe_path is not None else None,
            )
        )
    names = {s.name for s in services}
    statuses = {}
    for raw_status in _field(obj, "statuses", list):
        st = parse_status(raw_status)
        if st.name not in names:
            raise BadMessage(f"status of {st.name}, which is not one of the project's services")
        statuses[st.name] = st
    return Registration(project, a3sfile, logs, pid, tuple(services), statuses, https_port, control)


class ProjectView(Protocol):
    """One project as the proxy sees it: its services and their statuses (a supervisor in this
    process, or one registered over the socket)."""

    @property
    def name(self) -> str: ...
    @property
    def services(self) -> Sequence[ServiceDef]: ...
    @property
    def https_port(self) -> int | None: ...
    @property
    def a3sfile(self) -> Path | None: ...
    @property
    def logs(self) -> Path | None: ...  # the `.a3s/logs/` folder: history and error pages' tails
    @property
    def control(self) -> Path | None: ...  # the control socket: live lines and actions
    def status(self, name: str) -> ServiceStatus: ...
    def tail(self, name: str, n: int = 20) -> list[str]: ...
    def wake(self, name: str) -> None: ...  # start an `idle` service (SPEC §13)
    def traffic(self, name: str, open_sockets: int | None = None) -> None: ...  # it is being used
