"""A3sfile.hcl -> frozen dataclasses. These values are the contract every other module reads."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


class RestartMode(str, enum.Enum):
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    NEVER = "never"


class ProbeKind(str, enum.Enum):
    HTTP = "http"
    TCP = "tcp"
    CMD = "cmd"
    LOG = "log"


class Condition(str, enum.Enum):
    """What a dependency must have reached before a service starts (`depends_on` as a map)."""

    STARTED = "started"  # spawned
    HEALTHY = "healthy"  # ready: its probe passed (a oneshot: completed)
    COMPLETED = "completed"  # a oneshot that exited 0


class OnFailure(str, enum.Enum):
    REPORT = "report"  # failed probes of a running service only mark it unhealthy
    RESTART = "restart"  # `retries` of them restart it through the restart policy


@dataclass(frozen=True)
class GlobalSettings:
    """The `dev { }` block."""

    proxy_port: int = 7080  # 0 turns the proxy off; A3S_PROXY_PORT already applied
    log_level: str = "info"
    stop_timeout: float = 5.0  # seconds
    log_max_size: int = 10 * 1024 * 1024  # bytes: a service's log file rotates past this
    log_keep: int = 3  # rotated files kept per service
    name: str | None = None  # the project's name: dev.name, else A3S_PROJECT (validate resolves it)
    https: bool = False  # the proxy also serves TLS (dev.https, A3S_HTTPS applied)
    https_port: int = 7443
    container_runtime: str | None = None  # "podman" | "docker"; None: podman, else docker, on PATH
    env: Mapping[str, str] = field(default_factory=dict)  # every service's, before its own (SPEC §13)
    env_file: Path | None = None  # the same from a dotenv file, relative to the A3sfile's folder


@dataclass(frozen=True)
class WatchConfig:
    """A service's `watch { }` block, paths already absolute."""

    paths: tuple[Path, ...] = ()
    ignore: tuple[str, ...] = ()
    restart: bool = True
    debounce: float = 0.5  # seconds


@dataclass(frozen=True)
class HealthConfig:
    """A service's `health { }` block (or the implicit TCP probe on its port)."""

    type: ProbeKind = ProbeKind.TCP
    path: str = "/"
    interval: float = 2.0
    timeout: float = 1.0
    retries: int = 3
    command: str | None = None  # cmd probes: run by /bin/sh -c in the service's dir
    pattern: str | None = None  # log probes: a Python regex on each output line
    start_timeout: float = 300.0  # not ready this long after its spawn: failed
    on_failure: OnFailure = OnFailure.REPORT
    in_container: bool = False  # a cmd probe of an `image` service: run inside its container


@dataclass(frozen=True)
class Volume:
    """One entry of `volumes` (SPEC §14): a named volume (`pgdata:/var/lib/...`, given the
    project's name as prefix when run), a bind mount (`source` an absolute host path) or an
    anonymous volume (`source` None)."""

    source: str | None
    target: str
    options: str = ""  # "ro", "rw", "z", ... as written after the second colon
    named: bool = False

    def spec(self, project: str) -> str:
        """The `-v` argument of the container CLI for this project."""
        if self.source is None:
            return self.target
        source = f"{project}-{self.source}" if self.named else self.source
        return ":".join(filter(None, (source, self.target, self.options)))


@dataclass(frozen=True)
class ServiceDef:
    """One `service "name" { }` block with every default applied and paths absolute."""

    name: str
    cmd: str
    dir: Path
    port: int | None = None
    subdomain: str | None = None  # defaults to the name when port is set
    env: Mapping[str, str] = field(default_factory=dict)
    env_file: Path | None = None
    depends_on: tuple[str, ...] = ()
    # Per dependency, when `depends_on` was a map; a dependency not in it must be ready
    # (healthy, or completed for a oneshot), as with the list form.
    conditions: Mapping[str, Condition] = field(default_factory=dict)
    restart: RestartMode = RestartMode.ON_FAILURE  # oneshot default: NEVER
    stop_timeout: float = 5.0
    stop_signal: str = "SIGTERM"
    oneshot: bool = False
    watch: WatchConfig | None = None
    health: HealthConfig | None = None  # the explicit block, if any
    proxy: bool = True  # false: not an HTTP service (a database): never routed, no http:// URL
    auto_port: bool = False  # `port = "auto"`: `port` is chosen when the supervisor starts
    interactive: bool = False  # runs on a pseudo-terminal: `a3s attach` types into it (SPEC §10)
    image: str | None = None  # a container service (SPEC §14): `cmd`, if any, is its command
    container_port: int | None = None  # the port inside the container (default: `port`)
    volumes: tuple[Volume, ...] = ()
    profiles: tuple[str, ...] = ()  # started only when one of them is chosen (`up --profile`)
    lazy: bool = False  # not started by `a3s up`: the first request through the proxy starts it
    idle_stop: float | None = None  # seconds without a request after which it is stopped (`idle`)
    line: int | None = None  # where the block starts in the A3sfile

    @property
    def probe(self) -> HealthConfig | None:
        """The probe that gates readiness: the explicit block, else TCP on `port`, else none."""
        if self.health is not None:
            return self.health
        if self.port is not None or self.auto_port:
            return HealthConfig(type=ProbeKind.TCP)
        return None

    @property
    def inside_port(self) -> int | None:
        """A container service's port inside its container: `container_port`, else `port`."""
        return self.container_port if self.container_port is not None else self.port

    def chosen_by(self, profiles: Iterable[str]) -> bool:
        """Whether choosing `profiles` chooses this service: it has no profile, or one of them."""
        return not self.profiles or not set(profiles).isdisjoint(self.profiles)

    def container_variables(self) -> dict[str, str]:
        """A container's own variables besides its env_file (SPEC §14): `env`, A3S_SERVICE and
        PORT, the port inside. Never a3s's environment: `a3s up` and the exports agree."""
        env = dict(self.env)
        env["A3S_SERVICE"] = self.name
        if self.inside_port is not None:
            env.setdefault("PORT", str(self.inside_port))
        return env

    @property
    def url(self) -> str | None:
        """`http://127.0.0.1:PORT`; `127.0.0.1:PORT` for a service that does not speak HTTP."""
        if self.port is None:
            return None
        return f"http://127.0.0.1:{self.port}" if self.proxy else f"127.0.0.1:{self.port}"

    def proxy_url(self, proxy_port: int, project: str, scheme: str = "http") -> str | None:
        """The address through the proxy, `http://<subdomain>.<project>.localhost:<proxy_port>`:
        the one that names this service whatever other project runs (SPEC §6)."""
        if self.port is None or self.subdomain is None or not self.proxy:
            return None
        return f"{scheme}://{self.subdomain}.{project}.localhost:{proxy_port}"


@dataclass(frozen=True)
class DevConfig:
    """A whole A3sfile: settings and services in declaration order."""

    path: Path  # the A3sfile itself, absolute
    settings: GlobalSettings = field(default_factory=GlobalSettings)
    services: tuple[ServiceDef, ...] = ()

    @property
    def root(self) -> Path:
        """The A3sfile's folder: relative paths and the `.a3s/` state folder live here."""
        return self.path.parent

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)

    @property
    def profiles(self) -> dict[str, list[str]]:
        """Each profile and its services, in the order they first appear."""
        found: dict[str, list[str]] = {}
        for svc in self.services:
            for profile in svc.profiles:
                found.setdefault(profile, []).append(svc.name)
        return found

    def chosen(self, profiles: Iterable[str]) -> list[str]:
        """What `a3s up` starts with these profiles: every service without a profile, and those
        in a chosen one (their dependencies are pulled in later, whatever their profiles)."""
        wanted = set(profiles)
        return [s.name for s in self.services if not s.lazy and s.chosen_by(wanted)]

    def needed(self, names: Iterable[str]) -> list[str]:
        """`names` and everything they depend on, in declaration order."""
        by_name = {s.name: s for s in self.services}
        seen: set[str] = set()
        todo = [n for n in names if n in by_name]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(d for d in by_name[name].depends_on if d in by_name)
        return [n for n in self.names if n in seen]

    @property
    def eager(self) -> list[str]:
        """What a plain `a3s up` starts: every service but the lazy ones nothing started needs."""
        return self.needed(s.name for s in self.services if not s.lazy)

    @property
    def project(self) -> str:
        """The project's name (SPEC §6): dev.name, else A3S_PROJECT, else the A3sfile's folder
        name made a DNS label."""
        return self.settings.name or dns_label(self.root.name) or "a3s-project"

    def address(self, svc: ServiceDef, proxy_port: int | None) -> str | None:
        """Where `svc` is reached: through the proxy on `proxy_port` (https when on), else
        `svc.url`; None without a port. What `status` shows and `${services.NAME.url}` gives."""
        if proxy_port:
            https = self.settings.https
            through = svc.proxy_url(self.settings.https_port if https else proxy_port, self.project,
                                    "https" if https else "http")
            if through is not None:
                return through
        return svc.url

    def service(self, name: str) -> ServiceDef:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)


# ---------------------------------------------------------------------------- durations

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str | float) -> float:
    """Seconds in "250ms", "2s", "1m", "1m30s", "1h" or a bare number of seconds.

    Raises ValueError with a readable message for anything else (negative included).
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")  # noqa: TRY004 - callers catch ValueError
    if isinstance(text, (int, float)):
        import math

        if text < 0 or not math.isfinite(text):
            raise ValueError(f"{text!r} is not a duration (must be zero or more)")
        return float(text)
    raw = text.strip()
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        return parse_duration(value)
    total = 0.0
    pos = 0
    m = None
    for m in _DURATION_PART.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not raw or pos != len(raw):
        raise ValueError(f'"{text}" is not a duration (examples: "250ms", "2s", "1m30s")')
    return total


_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMG]?B?)", re.IGNORECASE)


# Ports browsers refuse to open (the Fetch standard's "bad ports"): an automatic port is never one.
BROWSER_BLOCKED_PORTS = frozenset(
    {1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103,
     104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513,
     514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720,
     1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080}
)


def with_ports(config: DevConfig, chosen: Mapping[str, int]) -> DevConfig:
    """`config` with the automatic ports filled in (`chosen`: service name -> port)."""
    import dataclasses

    services = tuple(
        dataclasses.replace(s, port=chosen[s.name]) if s.name in chosen else s for s in config.services
    )
    return dataclasses.replace(config, services=services)


def dns_label(text: str) -> str:
    """`My_Shop.v2` -> `my-shop-v2`: lower case, runs of anything else than letters and digits
    as one `-`, at most 63 characters, no `-` at either end."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return label[:63].rstrip("-")


def signal_name(text: str) -> str:
    """A signal as written in an A3sfile (`term`, `TERM`, `sigterm`), spelled `SIGTERM`; the
    one place signal names are normalised (validation, stopping, ending orphans)."""
    text = text.strip().upper()
    return text if text.startswith("SIG") else "SIG" + text


def format_duration(seconds: float) -> str:
    """`2m0s`, `30s`, `1h5m0s`, `250ms`: the way a user writes durations."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def parse_size(text: str | float) -> int:
    """Bytes in "10MB", "512KB", "1GB" (binary multiples) or a bare number of bytes.

    Raises ValueError with a readable message for anything else.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a size")  # noqa: TRY004 - callers catch ValueError
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"{text!r} is not a size (must be zero or more)")
        return int(text)
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f'"{text}" is not a size (examples: "10MB", "512KB", "1GB")')
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])
