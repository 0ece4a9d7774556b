"""Every check of SPEC §1: the positioned HCL tree -> DevConfig plus diagnostics (line, message, hint).

All errors of a file are collected in one pass; nothing stops at the first one. The steps are
named: each attribute is converted by its kind (`values.CONVERTERS`), each block read by a
small method, the environment applied by named mutators (`environment.ENV_OVERRIDES`), and the
checks across services are named validators (`SERVICE_VALIDATORS`). Pure (no processes, no
sockets); the only I/O is `Path.exists` for the dir/watch warnings and reading an env_file.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a3s_dev.config.environment import apply_environment, parse_proxy_port
from a3s_dev.config.hcl import Attribute, Block, Body, HclSyntaxError, Value, parse
from a3s_dev.config.interpolate import (
    SERVICE_ATTRIBUTES,
    Problem,
    expand,
    service_references,
    texts,
)
from a3s_dev.config.model import (
    Condition,
    DevConfig,
    GlobalSettings,
    HealthConfig,
    OnFailure,
    ProbeKind,
    RestartMode,
    ServiceDef,
    Volume,
    WatchConfig,
    dns_label,
)
from a3s_dev.config.patterns import nested_repetition
from a3s_dev.config.values import AUTO, Field, Kind, Spot, convert, suggest


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One finding: `A3sfile.hcl:LINE: error: MESSAGE (HINT)`."""

    severity: Severity
    message: str
    line: int | None = None
    hint: str | None = None

    @property
    def text(self) -> str:
        """The message with its hint, as printed."""
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def format(self, filename: str) -> str:
        """The one printed line, `FILE:LINE: severity: text` (no LINE when it cannot be known)."""
        where = f"{filename}:{self.line}" if self.line else filename
        return f"{where}: {self.severity.value}: {self.text}"


@dataclass(frozen=True)
class Report:
    """The outcome of checking one A3sfile: every diagnostic, and the config when there is no error."""

    path: Path
    diagnostics: tuple[Diagnostic, ...] = ()
    config: DevConfig | None = None
    start_order: tuple[str, ...] = ()
    # where each attribute and nested block of each service was written: (service, name) -> line
    positions: Mapping[tuple[str, str], int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self, *, errors_only: bool = False, filename: str | None = None) -> list[str]:
        """Each diagnostic as its printed line, in file order (errors and warnings interleaved)."""
        name = filename or display_name(self.path)
        shown = self.errors if errors_only else list(self.diagnostics)
        return [d.format(name) for d in sorted(shown, key=lambda d: d.line or 0)]

    def to_json(self) -> dict[str, Any]:
        """The `a3s validate --json` document."""

        def item(d: Diagnostic) -> dict[str, Any]:
            return {"line": d.line, "message": d.text, "hint": d.hint}

        return {
            "ok": self.ok,
            "file": str(self.path),
            "errors": [item(d) for d in self.errors],
            "warnings": [item(d) for d in self.warnings],
            "start_order": list(self.start_order),
            "profiles": self.config.profiles if self.config is not None else {},
        }


def display_name(path: Path) -> str:
    """The A3sfile as a user would type it: relative to the current folder when below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------- the schema

LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP")
MAX_ENV_FILE = 1 << 20  # bytes (core.service_env reads no more either)
CONTAINER_RUNTIMES = ("podman", "docker")
# An image reference: [registry[:port]/]name[:tag][@digest]; the name part is lower case.
IMAGE = re.compile(r"^(?:[A-Za-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._/-]+[a-z0-9]+)*(?::[\w][\w.-]{0,127})?(?:@[a-z0-9]+:[0-9a-fA-F]{32,})?$")
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VOLUME_OPTIONS = ("ro", "rw", "z", "Z", "U", "O", "cached", "delegated", "consistent", "nocopy")

SCHEMA: dict[str, dict[str, Field]] = {
    "dev": {
        "proxy_port": Field(Kind.PROXY_PORT),
        "log_level": Field(Kind.CHOICE, LOG_LEVELS),
        "stop_timeout": Field(Kind.DURATION),
        "log_max_size": Field(Kind.SIZE),
        "log_keep": Field(Kind.COUNT),
        "name": Field(Kind.STRING),
        "https": Field(Kind.BOOL),
        "https_port": Field(Kind.PORT),
        "container_runtime": Field(Kind.CHOICE, CONTAINER_RUNTIMES),
        "env": Field(Kind.ENV_MAP),
        "env_file": Field(Kind.STRING),
    },
    "service": {
        "cmd": Field(Kind.STRING),
        "dir": Field(Kind.STRING),
        "port": Field(Kind.PORT_OR_AUTO),
        "subdomain": Field(Kind.STRING),
        "env": Field(Kind.ENV_MAP),
        "env_file": Field(Kind.STRING),
        "depends_on": Field(Kind.DEPENDENCIES),
        "restart": Field(Kind.CHOICE, tuple(m.value for m in RestartMode)),
        "stop_timeout": Field(Kind.DURATION),
        "stop_signal": Field(Kind.SIGNAL, SIGNALS),
        "oneshot": Field(Kind.BOOL),
        "proxy": Field(Kind.BOOL),
        "interactive": Field(Kind.BOOL),
        "image": Field(Kind.STRING),
        "container_port": Field(Kind.PORT),
        "volumes": Field(Kind.STRING_LIST),
        "profiles": Field(Kind.STRING_LIST),
        "lazy": Field(Kind.BOOL),
        "idle_stop": Field(Kind.DURATION),
    },
    "watch": {
        "paths": Field(Kind.STRING_LIST),
        "ignore": Field(Kind.STRING_LIST),
        "restart": Field(Kind.BOOL),
        "debounce": Field(Kind.DURATION),
    },
    "health": {
        "type": Field(Kind.CHOICE, tuple(k.value for k in ProbeKind)),
        "path": Field(Kind.STRING),
        "interval": Field(Kind.DURATION),
        "timeout": Field(Kind.DURATION),
        "retries": Field(Kind.POSITIVE_INT),
        "command": Field(Kind.STRING),
        "pattern": Field(Kind.STRING),
        "start_timeout": Field(Kind.DURATION),
        "on_failure": Field(Kind.CHOICE, tuple(m.value for m in OnFailure)),
        "in_container": Field(Kind.BOOL),
    },
}
# Which blocks may appear inside which ("" is the top level of the file).
BLOCKS: dict[str, tuple[str, ...]] = {
    "": ("dev", "service"),
    "dev": (),
    "service": ("watch", "health"),
    "watch": (),
    "health": (),
}

RESERVED_PROJECTS = ("a3s", "localhost")  # the dashboard's hosts


def project_name_problem(name: str) -> tuple[str, str] | None:
    """Why `name` cannot name a project, and the fix; None when it can. One rule for
    `dev.name` and `A3S_PROJECT`."""
    if not DNS_LABEL.match(name):
        return f'name "{name}" is not a DNS label', f'use lower-case letters, digits and "-", e.g. "{dns_label(name) or "shop"}"'
    if name in RESERVED_PROJECTS:
        return f'name "{name}" is reserved for the dashboard ({name}.localhost)', "pick another name"
    return None


SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
RESERVED = "a3s"  # a3s's own log name and the proxy's dashboard host


# ---------------------------------------------------------------------------- the checker


def line_of(attrs: Mapping[str, Attribute], key: str) -> int | None:
    """The line of attribute `key`, None when it is not written."""
    return attrs[key].line if key in attrs else None


@dataclass
class _Checker:
    path: Path
    environ: Mapping[str, str]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    project: str = ""  # the project's name, once the dev block is read: `${project}`
    dev_attrs: dict[str, Attribute] = field(default_factory=dict)  # the dev block's, as read

    @property
    def root(self) -> Path:
        return self.path.parent

    def expand(self, text: str | None, line: int | None, label: str, *, services: bool = True) -> str | None:
        """`${project}` and `${env.*}` in `text` expanded (SPEC §13); a reference that cannot
        be is reported and the text kept."""
        if text is None or "${" not in text:
            return text
        try:
            return expand(text, self.project, self.environ, services=services)
        except Problem as problem:
            self.error(line, f"{label}: {problem.message}", problem.hint)
            return text

    def error(self, line: int | None, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(Severity.ERROR, message, line, hint))

    def warn(self, line: int | None, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(Severity.WARNING, message, line, hint))

    # ------------------------------------------------------------------ structure

    def members(self, body: Body, where: str, owner: str) -> tuple[dict[str, Attribute], list[Block]]:
        """Known attributes by name and nested blocks of a body; reports unknown and duplicate ones.

        `where` is the schema key ("service"), `owner` how the block is named in messages.
        """
        known = SCHEMA.get(where, {})
        allowed_blocks = BLOCKS[where]
        attrs: dict[str, Attribute] = {}
        blocks: list[Block] = []
        for item in body:
            if isinstance(item, Attribute):
                if item.name in attrs:
                    first = attrs[item.name].line
                    self.error(item.line, f'duplicate attribute "{item.name}" in {owner} (first set on line {first})')
                elif item.name in known:
                    attrs[item.name] = item
                elif item.name in allowed_blocks:
                    self.error(
                        item.line,
                        f'"{item.name}" is a block in {owner}, not an attribute',
                        f"write {item.name} {{ ... }} without the =",
                    )
                else:
                    self.error(item.line, f'unknown attribute "{item.name}" in {owner}', self._attr_hint(item.name, where))
            elif item.type in allowed_blocks:
                blocks.append(item)
            elif item.type in known:
                self.error(
                    item.line,
                    f'"{item.type}" is an attribute in {owner}, not a block',
                    f"write {item.type} = {{ ... }}" if SCHEMA[where][item.type].kind is Kind.ENV_MAP else None,
                )
            else:
                hint = suggest(item.type, allowed_blocks)
                if hint is None and not allowed_blocks:
                    hint = f"{owner} has no nested blocks"
                self.error(item.line, f'unknown block "{item.type}" in {owner}', hint)
        return attrs, blocks

    def _attr_hint(self, name: str, where: str) -> str | None:
        hint = suggest(name, SCHEMA.get(where, {}))
        if hint:
            return hint
        homes = [block for block, fields in SCHEMA.items() if name in fields and block != where]
        if homes:
            return f"it belongs in a {homes[0]} block"
        if where == "":
            return "the top level holds only dev { } and service \"name\" { } blocks"
        return None

    # ------------------------------------------------------------------ values

    def value(self, attr: Attribute | None, spec: Field, owner: str) -> Any:
        """The attribute's value converted per `spec`, or None (absent, or an error was reported)."""
        if attr is None:
            return None
        return convert(attr.value, Spot(attr.value.line or attr.line, f"{owner}: {attr.name}", spec, self.error))

    def getter(self, attrs: Mapping[str, Attribute], where: str, owner: str) -> Callable[[str], Any]:
        """`get(key)`: one attribute of a block converted (None when absent or wrong)."""
        spec = SCHEMA[where]
        return lambda key: self.value(attrs.get(key), spec[key], owner)

    # ------------------------------------------------------------------ the dev block

    def settings(self, blocks: list[Block]) -> tuple[GlobalSettings, int | None]:
        """The dev block (or the defaults), then the environment's overrides; also the line of
        proxy_port (None when the environment chose the port)."""
        dev_blocks = [b for b in blocks if b.type == "dev"]
        for extra in dev_blocks[1:]:
            self.error(extra.line, f"duplicate dev block (first on line {dev_blocks[0].line})", "merge them into one")
        settings, port_line = self.dev_block(dev_blocks[0]) if dev_blocks else (GlobalSettings(), None)
        overridden, errors = apply_environment(settings, self.environ)
        for message in errors:
            self.error(None, message)
        if parse_proxy_port(self.environ.get("A3S_PROXY_PORT", "")) is not None:
            port_line = None  # the environment chose the port
        return overridden, port_line

    def dev_block(self, block: Block) -> tuple[GlobalSettings, int | None]:
        """The dev block, each attribute converted, the defaults for the rest; the proxy_port line."""
        if block.labels:
            self.error(block.line, f'the dev block takes no name, got "{block.labels[0]}"', "write dev { ... }")
        attrs, _ = self.members(block.body, "dev", "dev")
        self.dev_attrs = attrs
        get = self.getter(attrs, "dev", "dev")
        given = {key: get(key) for key in SCHEMA["dev"] if key not in ("env", "env_file")}  # dev_environment
        name = given["name"]
        problem = project_name_problem(name) if name is not None else None
        if problem is not None:
            self.error(attrs["name"].line, f"dev: {problem[0]}", problem[1])
            given["name"] = None
        settings = GlobalSettings(**{key: value for key, value in given.items() if value is not None})
        return settings, line_of(attrs, "proxy_port")

    def dev_environment(self, settings: GlobalSettings) -> GlobalSettings:
        """The project-wide `env` and `env_file` (SPEC §13), once the project's name is known."""
        attrs = self.dev_attrs
        if "env" not in attrs and "env_file" not in attrs:
            return settings
        get = self.getter(attrs, "dev", "dev")
        env = {key: self.expand(value, attrs["env"].line, f"dev: env {key}", services=False) or ""
               for key, value in (get("env") or {}).items()}
        env_file = self.service_env_file(attrs, get, "dev", self.root)
        return dataclasses.replace(settings, env=env, env_file=env_file)

    # ------------------------------------------------------------------ a service block

    def service(self, block: Block, settings: GlobalSettings, lines: dict[tuple[str, str], int]) -> ServiceDef | None:
        """One service block -> ServiceDef with every default applied (None when it has no usable name)."""
        name = self.service_name(block)
        if name is None:
            return None
        owner = f'service "{name}"'
        attrs, blocks = self.members(block.body, "service", owner)
        for attr_name, attr in attrs.items():
            lines[(name, attr_name)] = attr.line
        for sub in blocks:
            lines.setdefault((name, sub.type), sub.line)
        get = self.getter(attrs, "service", owner)
        # In the file's order of concerns, so that two findings on one line read as before.
        cmd = self.service_cmd(block, attrs, get, owner)
        service_dir = self.service_dir(attrs, get, owner)
        port, auto_port, subdomain = self.service_port(name, attrs, get, owner)
        env = {key: self.expand(value, attrs["env"].line, f"{owner}: env {key}") or "" for key, value in (get("env") or {}).items()}
        cmd = self.expand(cmd, line_of(attrs, "cmd"), f"{owner}: cmd")
        env_file = self.service_env_file(attrs, get, owner, service_dir)
        depends_on, conditions = self.service_depends(name, get, owner, lines)
        oneshot = bool(get("oneshot"))
        proxy, restart, stop_timeout, stop_signal = get("proxy"), get("restart"), get("stop_timeout"), get("stop_signal")
        portless = port is None and "port" not in attrs and not auto_port
        watch, health = self.service_blocks(blocks, owner, service_dir, portless=portless, container="image" in attrs)
        image, container_port, volumes = self.service_container(attrs, get, owner, cmd)
        return ServiceDef(
            name=name,
            cmd=cmd or "",
            dir=service_dir,
            port=port,
            subdomain=subdomain,
            env=env,
            env_file=env_file,
            depends_on=depends_on,
            conditions=conditions,
            restart=RestartMode(restart) if restart else (RestartMode.NEVER if oneshot else RestartMode.ON_FAILURE),
            stop_timeout=settings.stop_timeout if stop_timeout is None else stop_timeout,
            stop_signal=stop_signal or "SIGTERM",
            oneshot=oneshot,
            watch=watch,
            health=health,
            proxy=True if proxy is None else proxy,
            interactive=bool(get("interactive")),
            auto_port=auto_port,
            image=image,
            container_port=container_port,
            volumes=volumes,
            profiles=self.service_profiles(get, owner),
            lazy=bool(get("lazy")),
            idle_stop=self.service_idle_stop(attrs, get, owner),
            line=block.line,
        )

    def service_name(self, block: Block) -> str | None:
        """The block's one label, checked; None (said why) when it has none or several."""
        if len(block.labels) != 1:
            if not block.labels:
                self.error(block.line, "a service block needs a name", 'write service "api" { ... }')
            else:
                self.error(
                    block.line,
                    f"a service block takes one name, got {len(block.labels)}",
                    f'write service "{block.labels[0]}" {{ ... }}',
                )
            self.members(block.body, "service", "this service")  # still report what is inside
            return None
        name = block.labels[0]
        if not SERVICE_NAME.match(name):
            self.error(block.line, f'service name "{name}" may hold only letters, digits, "-", "_" and "."')
        elif name == RESERVED:
            self.error(block.line, f'service name "{name}" is reserved for a3s\'s own messages', "pick another name")
        return name

    def service_cmd(self, block: Block, attrs: Mapping[str, Attribute], get: Callable[[str], Any], owner: str) -> str | None:
        cmd: str | None = get("cmd")
        if "cmd" not in attrs and "image" in attrs:
            return None  # a container runs its image's own command
        if "cmd" not in attrs:
            self.error(block.line, f"{owner} has no cmd",
                       'add the command to run, e.g. cmd = "python3 app.py", or an image = "postgres:16"')
        elif cmd is not None and not cmd.strip():
            self.error(attrs["cmd"].line, f"{owner}: cmd is empty")
        return cmd

    def service_dir(self, attrs: Mapping[str, Attribute], get: Callable[[str], Any], owner: str) -> Path:
        """`dir` below the A3sfile's folder (that folder when absent): a file is an error, a
        missing folder a warning (it may be made before `up`)."""
        dir_text = self.expand(get("dir"), line_of(attrs, "dir"), f"{owner}: dir", services=False)
        service_dir = Path(os.path.normpath(self.root / (dir_text or ".")))
        if dir_text is not None and service_dir.exists() and not service_dir.is_dir():
            self.error(attrs["dir"].line, f'{owner}: dir "{dir_text}" is a file, not a folder ({service_dir})')
        elif dir_text is not None and not service_dir.is_dir():
            self.warn(attrs["dir"].line, f'{owner}: dir "{dir_text}" does not exist ({service_dir})')
        return service_dir

    def service_port(
        self, name: str, attrs: Mapping[str, Attribute], get: Callable[[str], Any], owner: str
    ) -> tuple[int | None, bool, str | None]:
        """The port (None for "auto": run.prepare.choose_ports picks it when a supervisor starts),
        whether it is "auto", and the subdomain: given and checked, else made from the name."""
        port = get("port")
        auto_port = port is AUTO
        if auto_port:
            port = None
        subdomain = get("subdomain")
        if subdomain is not None:
            sub_line = attrs["subdomain"].line
            if not DNS_LABEL.match(subdomain.lower()):
                self.error(
                    sub_line,
                    f'{owner}: subdomain "{subdomain}" is not a DNS label',
                    'use lower-case letters, digits and "-", at most 63, no dots, e.g. "my-api"',
                )
                subdomain = None
            else:
                subdomain = subdomain.lower()
                if port is None and "port" not in attrs:
                    self.warn(sub_line, f"{owner}: subdomain has no effect without a port")
        elif port is not None or auto_port:
            # Host names are case-insensitive and may not hold "_" or ".": derive a valid label.
            subdomain = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63] or None
        return port, auto_port, subdomain

    def service_env_file(
        self, attrs: Mapping[str, Attribute], get: Callable[[str], Any], owner: str, service_dir: Path
    ) -> Path | None:
        """`env_file` below the service's dir: a folder is an error, a missing file a warning,
        a file no environment can carry (a NUL byte) an error."""
        shown = self.expand(get("env_file"), line_of(attrs, "env_file"),
                            f"{owner}: env_file", services=False)
        if not shown:
            return None
        env_file = Path(os.path.normpath(service_dir / shown))
        line = attrs["env_file"].line
        try:
            mode = os.stat(env_file).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            self.error(line, f'{owner}: env_file "{shown}" is a folder, not a file ({env_file})')
        elif mode is not None and not stat.S_ISREG(mode):
            # never opened: a FIFO would wait for a writer, a device never end
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or a socket"
            self.error(line, f'{owner}: env_file "{shown}" is {kind}, not a regular file ({env_file})',
                       "a3s reads env files as plain files only")
        elif mode is not None:
            self.env_file_text(env_file, shown, line, owner)
        elif service_dir.is_dir():
            self.warn(line, f'{owner}: env_file "{shown}" does not exist ({env_file})')
        return env_file

    def service_container(
        self, attrs: Mapping[str, Attribute], get: Callable[[str], Any], owner: str, cmd: str | None
    ) -> tuple[str | None, int | None, tuple[Volume, ...]]:
        """`image`, `container_port` and `volumes` (SPEC §14): the last two need an image."""
        image: str | None = get("image")
        container_port: int | None = get("container_port")
        if image is not None and not IMAGE.match(image):
            hint = f'write it in lower case: "{image.lower()}"' if IMAGE.match(image.lower()) else 'e.g. "postgres:16" or "ghcr.io/org/app:1.2"'
            self.error(attrs["image"].line, f'{owner}: image "{image}" is not an image reference', hint)
            image = None
        if cmd is not None and "image" in attrs:
            import shlex

            try:
                shlex.split(cmd)
            except ValueError as exc:
                self.error(attrs["cmd"].line, f"{owner}: cmd cannot be split into the container's arguments ({exc})",
                           "close the quote")
        volumes = tuple(v for text, line in get("volumes") or [] if (v := self.volume(text, line, owner)) is not None)
        if "image" not in attrs:
            for key in ("container_port", "volumes"):
                if key in attrs:
                    self.error(attrs[key].line, f"{owner}: {key} applies to a container service only",
                               'add image = "..." or remove it')
        return image, container_port, volumes

    def service_idle_stop(self, attrs: Mapping[str, Attribute], get: Callable[[str], Any], owner: str) -> float | None:
        """`idle_stop`: more than zero. A service the proxy does not route gets no request: it is
        stopped once nothing running has needed it for that long."""
        seconds: float | None = get("idle_stop")
        if seconds is not None and seconds <= 0:
            self.error(attrs["idle_stop"].line, f"{owner}: idle_stop must be more than zero", 'e.g. idle_stop = "15m"')
            return None
        return None if seconds is None else float(seconds)

    def service_profiles(self, get: Callable[[str], Any], owner: str) -> tuple[str, ...]:
        """`profiles`: names like `front` or `e2e`, each once."""
        found: list[str] = []
        for name, line in get("profiles") or []:
            if not PROFILE.match(name):
                self.error(line, f'{owner}: profile "{name}" may hold only letters, digits, "-" and "_"')
            elif name in found:
                self.warn(line, f'{owner}: profile "{name}" is listed twice')
            else:
                found.append(name)
        return tuple(found)

    def volume(self, text: str, line: int, owner: str) -> Volume | None:
        """One `volumes` entry: `name:/path`, `./host:/path[:ro]`, or `/path` (anonymous)."""
        parts = text.split(":")
        if len(parts) == 1 and text.startswith("/"):
            return Volume(None, text)
        if len(parts) not in (2, 3) or not all(parts[:2]):
            self.error(line, f'{owner}: volume "{text}" is not SOURCE:TARGET[:OPTIONS]',
                       'e.g. "pgdata:/var/lib/postgresql/data" or "./init:/docker-entrypoint-initdb.d:ro"')
            return None
        source, target, options = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
        bad_options = [o for o in options.split(",") if o and o not in VOLUME_OPTIONS]
        if not target.startswith("/"):
            self.error(line, f'{owner}: volume "{text}": the path in the container "{target}" must start with "/"')
            return None
        if bad_options:
            self.error(line, f'{owner}: volume "{text}": unknown option "{bad_options[0]}"', suggest(bad_options[0], VOLUME_OPTIONS) or 'use "ro" or "rw"')
            return None
        if source.startswith(("/", ".", "~")):
            host = Path(os.path.normpath(self.root / os.path.expanduser(source)))
            if not host.exists():
                self.warn(line, f'{owner}: volume "{text}": {host} does not exist', "create it before `a3s up`")
            return Volume(str(host), target, options)
        if not VOLUME_NAME.match(source):
            self.error(line, f'{owner}: volume "{text}": "{source}" is neither a volume name nor a path',
                       'name volumes with letters, digits, "_", "." and "-"; start host paths with "./" or "/"')
            return None
        return Volume(source, target, options, named=True)

    def service_depends(
        self, name: str, get: Callable[[str], Any], owner: str, lines: dict[tuple[str, str], int]
    ) -> tuple[tuple[str, ...], dict[str, Condition]]:
        """depends_on as names in order (a repeat warned and dropped), and their conditions."""
        depends_on: list[str] = []
        conditions: dict[str, Condition] = {}
        for dep, dep_line, *condition in get("depends_on") or []:
            if dep in depends_on:
                self.warn(dep_line, f'{owner}: "{dep}" is listed twice in depends_on')
                continue
            depends_on.append(dep)
            if condition:
                conditions[dep] = Condition(condition[0])
            lines[(name, f"depends_on:{dep}")] = dep_line
        return tuple(depends_on), conditions

    def service_blocks(
        self, blocks: list[Block], owner: str, service_dir: Path, *, portless: bool, container: bool
    ) -> tuple[WatchConfig | None, HealthConfig | None]:
        """The watch and health blocks, one of each; an http or tcp probe of a `portless`
        service (no port, not "auto") is an error, as is a probe `in_container` of a service
        that is no `container`."""
        watch: WatchConfig | None = None
        health: HealthConfig | None = None
        seen: dict[str, int] = {}
        for sub in blocks:
            if sub.type in seen:
                self.error(sub.line, f"{owner}: duplicate {sub.type} block (first on line {seen[sub.type]})")
                continue
            seen[sub.type] = sub.line
            if sub.labels:
                self.error(sub.line, f'{owner}: the {sub.type} block takes no name, got "{sub.labels[0]}"')
            if sub.type == "watch":
                watch = self.watch(sub, owner, service_dir)
                continue
            health = self.health(sub, owner, container=container)
            if health is not None and health.type in (ProbeKind.HTTP, ProbeKind.TCP) and portless:
                self.error(
                    sub.line,
                    f"{owner}: {'an' if health.type is ProbeKind.HTTP else 'a'} {health.type.value} probe needs a port",
                    'set port = ... on the service, or probe with type = "cmd" or "log"',
                )
        return watch, health

    def env_file_text(self, path: Path, shown: str, line: int, owner: str) -> None:
        """An env_file a process environment cannot hold: a NUL byte, or bytes that are not UTF-8."""
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_ENV_FILE + 1)
        except OSError as exc:
            self.error(line, f'{owner}: env_file "{shown}" cannot be read ({exc.strerror or exc})')
            return
        if len(data) > MAX_ENV_FILE:
            self.error(line, f'{owner}: env_file "{shown}" is more than 1 MB, more than an env file holds')
            return
        at = data.find(b"\0")
        if at != -1:
            where = data[:at].count(b"\n") + 1
            self.error(line, f'{owner}: env_file "{shown}" line {where} holds a NUL byte, which no environment can carry')

    def watch(self, block: Block, owner: str, service_dir: Path) -> WatchConfig:
        """A watch block; no `paths` means the service's dir."""
        attrs, _ = self.members(block.body, "watch", f"{owner} watch")
        spec = SCHEMA["watch"]
        label = f"{owner} watch"
        paths_raw = self.value(attrs.get("paths"), spec["paths"], label)
        ignore_raw = self.value(attrs.get("ignore"), spec["ignore"], label) or []
        restart = self.value(attrs.get("restart"), spec["restart"], label)
        debounce = self.value(attrs.get("debounce"), spec["debounce"], label)
        paths: list[Path] = []
        if paths_raw is None:
            paths = [service_dir]
        for text, line in paths_raw or []:
            full = Path(os.path.normpath(self.root / text))
            if not full.exists():
                self.warn(line, f'{label}: path "{text}" does not exist ({full})')
            paths.append(full)
        return WatchConfig(
            paths=tuple(paths),
            ignore=tuple(text for text, _ in ignore_raw),
            restart=True if restart is None else restart,
            debounce=WatchConfig.debounce if debounce is None else debounce,
        )

    def health(self, block: Block, owner: str, *, container: bool = False) -> HealthConfig | None:
        """A health block; without `type`: `command` means cmd, `pattern` log, `path` http, else tcp."""
        label = f"{owner} health"
        attrs, _ = self.members(block.body, "health", label)
        spec = SCHEMA["health"]

        def get(key: str) -> Any:
            return self.value(attrs.get(key), spec[key], label)

        type_text, path, command, pattern = get("type"), get("path"), get("command"), get("pattern")
        path = self.expand(path, line_of(attrs, "path"), f"{label}: path")
        command = self.expand(command, line_of(attrs, "command"), f"{label}: command")
        interval, timeout, retries = get("interval"), get("timeout"), get("retries")
        start_timeout, on_failure = get("start_timeout"), get("on_failure")
        in_container = bool(get("in_container"))
        if type_text is None and "type" not in attrs:
            type_text = "cmd" if "command" in attrs else "log" if "pattern" in attrs else "http" if path is not None else "tcp"
        if type_text is None:
            return None  # a type that is not one: said already, and nothing else depends on it
        kind = ProbeKind(type_text)
        # Given or inferred, a probe is of one kind: an attribute of another kind is a mistake,
        # never silently ignored (`path` beside `command` was).
        if kind is not ProbeKind.HTTP and "path" in attrs:
            self.error(attrs["path"].line, f"{label}: path applies to http probes only", 'remove it, or set type = "http"')
        for key, wanted in (("command", ProbeKind.CMD), ("pattern", ProbeKind.LOG)):
            if key in attrs and kind is not wanted:
                self.error(attrs[key].line, f"{label}: {key} applies to {wanted.value} probes only", f'set type = "{wanted.value}"')
        if kind is ProbeKind.CMD and "command" not in attrs and type_text is not None:
            self.error(block.line, f"{label}: a cmd probe needs a command", 'add command = "pg_isready -q -p $PORT"')
        if in_container and not container:
            self.error(attrs["in_container"].line, f"{label}: in_container = true needs an image",
                       'add image = "..." to the service, or remove in_container')
        elif in_container and kind is not ProbeKind.CMD:
            self.error(attrs["in_container"].line, f"{label}: in_container applies to cmd probes only",
                       "http and tcp probes reach the published port from the host")
        if command is not None and not command.strip():
            self.error(attrs["command"].line, f"{label}: command is empty")
        if kind is ProbeKind.LOG and "pattern" not in attrs and type_text is not None:
            self.error(block.line, f"{label}: a log probe needs a pattern", 'add pattern = "listening on"')
        if pattern is not None:
            import re

            try:
                re.compile(pattern)
            except re.error as exc:
                self.error(attrs["pattern"].line, f'{label}: pattern "{pattern}" is not a regular expression ({exc})')
            else:
                if (nested := nested_repetition(pattern)) is not None:
                    self.error(
                        attrs["pattern"].line,
                        f'{label}: pattern "{pattern}" repeats a repetition ({nested}), which can take '
                        "exponential time on a line that nearly matches, and the supervisor waits meanwhile",
                        "repeat once: (a+)+ matches what a+ matches",
                    )
        if path is not None and not path.startswith("/"):
            self.error(attrs["path"].line, f'{label}: path "{path}" must start with "/"', f'write "/{path}"')
        for key, seconds in (("interval", interval), ("timeout", timeout), ("start_timeout", start_timeout)):
            if seconds is not None and seconds <= 0:
                self.error(attrs[key].line, f"{label}: {key} must be more than zero")
        defaults = HealthConfig()
        return HealthConfig(
            type=kind,
            path=path or defaults.path,
            interval=interval or defaults.interval,
            timeout=timeout or defaults.timeout,
            retries=retries or defaults.retries,
            command=command,
            pattern=pattern,
            start_timeout=start_timeout or defaults.start_timeout,
            on_failure=OnFailure(on_failure) if on_failure else defaults.on_failure,
            in_container=in_container,
        )



# ---------------------------------------------------------------------------- checks across services


@dataclass(frozen=True)
class Lines:
    """Where each attribute of each service was written, for messages to point at:
    (service, attribute), and (service, "depends_on:<dep>") for one item of a list."""

    lines: Mapping[tuple[str, str], int] = field(default_factory=dict)
    proxy_port: int | None = None  # the line of dev.proxy_port, when the file set it

    def at(self, svc: ServiceDef, key: str) -> int | None:
        return self.lines.get((svc.name, key), svc.line)

    def dependency(self, svc: ServiceDef, dep: str) -> int | None:
        return self.lines.get((svc.name, f"depends_on:{dep}"), self.at(svc, "depends_on"))


Validator = Callable[[DevConfig, Lines], list[Diagnostic]]


def _error(line: int | None, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, line, hint)


def unique_names(config: DevConfig, where: Lines) -> list[Diagnostic]:
    """Each service name once."""
    first: dict[str, ServiceDef] = {}
    out = []
    for svc in config.services:
        if svc.name in first:
            line = first[svc.name].line
            out.append(_error(svc.line, f'duplicate service "{svc.name}" (first declared on line {line})', "rename or merge one of them"))
        else:
            first[svc.name] = svc
    return out


def distinct_ports(config: DevConfig, where: Lines) -> list[Diagnostic]:
    """Each port to one service, and none the proxy's."""
    proxy = config.settings.proxy_port
    by_port: dict[int, ServiceDef] = {}
    out = []
    for svc in config.services:
        if svc.port is None:
            continue
        owner = f'service "{svc.name}"'
        other = by_port.setdefault(svc.port, svc)
        if other.name != svc.name:
            out.append(_error(where.at(svc, "port"), f'{owner}: port {svc.port} is already used by service "{other.name}" (line {where.at(other, "port")})'))
        if proxy and svc.port == proxy:
            said = f"line {where.proxy_port}" if where.proxy_port else "dev.proxy_port / A3S_PROXY_PORT"
            out.append(_error(where.at(svc, "port"), f"{owner}: port {svc.port} is the proxy's port ({said})", "pick another port or change proxy_port"))
        if config.settings.https and proxy and svc.port == config.settings.https_port:
            out.append(_error(where.at(svc, "port"), f"{owner}: port {svc.port} is the proxy's https_port",
                              "pick another port or change dev.https_port"))
    if config.settings.https and proxy and config.settings.https_port == proxy:
        out.append(_error(where.proxy_port, f"dev: https_port {proxy} is proxy_port too", "give https its own port, e.g. 7443"))
    return out


def distinct_subdomains(config: DevConfig, where: Lines) -> list[Diagnostic]:
    """Each subdomain of a routed service to one service, and never the dashboard's."""
    by_subdomain: dict[str, ServiceDef] = {}
    out = []
    for svc in config.services:
        if svc.subdomain is None or svc.port is None:
            continue
        owner = f'service "{svc.name}"'
        if svc.subdomain == RESERVED:
            out.append(_error(where.at(svc, "subdomain"), f'{owner}: subdomain "{RESERVED}" is reserved for the proxy\'s own page'))
            continue
        other = by_subdomain.setdefault(svc.subdomain, svc)
        if other.name != svc.name:
            out.append(
                _error(
                    where.at(svc, "subdomain"),
                    f'{owner}: subdomain "{svc.subdomain}" is already used by service "{other.name}" (line {where.at(other, "subdomain")})',
                )
            )
    return out


def known_dependencies(config: DevConfig, where: Lines) -> list[Diagnostic]:
    """Every depends_on names another declared service; "completed" only of a task."""
    names = config.names
    first = {svc.name: svc for svc in reversed(config.services)}
    out = []
    for svc in config.services:
        owner = f'service "{svc.name}"'
        for dep in svc.depends_on:
            line = where.dependency(svc, dep)
            if dep == svc.name:
                out.append(_error(line, f"{owner} depends on itself", "remove it from depends_on"))
            elif dep not in first:
                hint = suggest(dep, [n for n in names if n != svc.name])
                out.append(_error(line, f'{owner}: depends_on names unknown service "{dep}"', hint))
            elif svc.conditions.get(dep) is Condition.COMPLETED and not first[dep].oneshot:
                out.append(
                    _error(
                        line,
                        f'{owner}: depends_on {dep} = "completed", but {dep} is not a task (oneshot) and never completes',
                        'use "healthy", or set oneshot = true on it',
                    )
                )
    return out


def no_cycles(config: DevConfig, where: Lines) -> list[Diagnostic]:
    """No dependency cycle; each independent cycle said once (take one out, look again)."""
    from a3s_dev.config.graph import acyclic, cycle_in

    first = {svc.name: svc for svc in reversed(config.services)}
    remaining: dict[str, list[str]] = {}
    for svc in config.services:  # the edges known_dependencies accepts
        mine = remaining.setdefault(svc.name, [])
        for dep in svc.depends_on:
            waits_for_a_service = svc.conditions.get(dep) is Condition.COMPLETED and not first.get(dep, svc).oneshot
            if dep in first and dep != svc.name and dep not in mine and not waits_for_a_service:
                mine.append(dep)
    out = []
    while not acyclic(remaining):
        cycle = cycle_in(remaining)
        assert cycle is not None
        head = first[cycle[0]]
        out.append(_error(where.dependency(head, cycle[1]), f"dependency cycle: {' -> '.join(cycle)}", "remove one of these depends_on entries"))
        for name in cycle:
            remaining.pop(name, None)
        remaining = {n: [d for d in ds if d in remaining] for n, ds in remaining.items()}
    return out


def known_references(config: DevConfig, where: Lines) -> list[Diagnostic]:
    """Each `${services.NAME.port|url}` names a service with a port, and one of those two."""
    names = {s.name: s for s in config.services}
    out = []
    for svc in config.services:
        for attribute, text in texts(svc):
            line = where.at(svc, attribute)
            try:
                found = service_references(text)
            except Problem as problem:
                out.append(_error(line, f'service "{svc.name}": {attribute}: {problem.message}'))
                continue
            for name, what in found:
                ref = f"${{services.{name}.{what}}}"
                if name not in names:
                    out.append(_error(line, f'service "{svc.name}": {attribute}: {ref} names no service',
                                      suggest(name, names) or f"services: {', '.join(names)}"))
                elif what not in SERVICE_ATTRIBUTES:
                    out.append(_error(line, f'service "{svc.name}": {attribute}: {ref}: a service has no "{what}"',
                                      suggest(what, SERVICE_ATTRIBUTES) or "use port or url"))
                elif names[name].port is None and not names[name].auto_port:
                    out.append(_error(line, f'service "{svc.name}": {attribute}: {ref}: {name} has no port',
                                      f"give {name} a port"))
    return out


SERVICE_VALIDATORS: tuple[Validator, ...] = (
    unique_names, distinct_ports, distinct_subdomains, known_dependencies, no_cycles, known_references,
)


def check_services(config: DevConfig, where: Lines | None = None) -> list[Diagnostic]:
    """Every validator across services, every finding of each. Works on a DevConfig built in
    code too (then the lines are the ServiceDefs')."""
    where = where or Lines()
    return [found for validate in SERVICE_VALIDATORS for found in validate(config, where)]


# ---------------------------------------------------------------------------- text no process can take

MAX_NESTING = 64  # blocks, lists and maps inside each other; an A3sfile needs four


def nesting_error(text: str) -> Diagnostic | None:
    """The line where brackets nest deeper than MAX_NESTING (outside strings and comments), or
    None. Checked before parsing: the parser and the walk over its tree recurse per level."""
    depth = 0
    line = 1
    quoted = escaped = comment = False
    for char in text:
        if char == "\n":
            line += 1
            comment = False
        elif comment:
            continue
        elif quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "#":
            comment = True
        elif char in "{[(":
            depth += 1
            if depth > MAX_NESTING:
                return Diagnostic(
                    Severity.ERROR, f"blocks, lists or maps nest more than {MAX_NESTING} levels deep", line
                )
        elif char in "}])":
            depth = max(0, depth - 1)
    return None


def _text_problem(text: str) -> str | None:
    if "\0" in text:
        return "holds a NUL byte, which no command, path or environment can carry"
    for char in text:
        if "\ud800" <= char <= "\udfff":
            return f"holds a lone surrogate (\\u{ord(char):04X}), which is not text"
    return None


def text_errors(body: Body, owner: str = "the file") -> list[Diagnostic]:
    """Every string of the file (values, map keys, block labels) that no process can take,
    one line each: a NUL byte or a lone surrogate (`"\\u0000"`, `"\\uD800"`)."""
    found: list[Diagnostic] = []

    def value(v: Value, label: str) -> None:
        if v.kind == "string":
            problem = _text_problem(v.data)
            if problem:
                found.append(Diagnostic(Severity.ERROR, f"{label} {problem}", v.line or None))
        elif v.kind == "list":
            for item in v.data:
                value(item, label)
        elif v.kind == "map":
            for key, key_line, item in v.data:
                problem = _text_problem(key)
                if problem:
                    found.append(Diagnostic(Severity.ERROR, f"{label}: a key {problem}", key_line or None))
                value(item, f"{label}: {key.encode('unicode_escape').decode()}")

    for item in body:
        if isinstance(item, Attribute):
            value(item.value, f"{owner}: {item.name}")
            continue
        for name in item.labels:
            problem = _text_problem(name)
            if problem:
                found.append(Diagnostic(Severity.ERROR, f"the name of a {item.type} block {problem}", item.line))
        inner = f'{item.type} "{item.labels[0]}"' if item.labels and not _text_problem(item.labels[0]) else item.type
        found += text_errors(item.body, inner if owner == "the file" else f"{owner} {item.type}")
    return found


# ---------------------------------------------------------------------------- entry points


def check_text(text: str, path: Path, environ: Mapping[str, str] | None = None, *, order: bool = True) -> Report:
    """Parse and check A3sfile text (`path` anchors relative paths and names the file).

    With `order`, the report also holds the start order (networkx computes it); `a3s up` and
    `a3s status` go without, so that neither imports networkx before it spawns or answers.
    """
    path = Path(path).absolute()
    env = os.environ if environ is None else environ
    too_deep = nesting_error(text)
    if too_deep is not None:
        return Report(path, (too_deep,))
    try:
        body = parse(text)
    except HclSyntaxError as exc:
        return Report(path, (Diagnostic(Severity.ERROR, exc.message, exc.line),))
    bad_text = text_errors(body)
    if bad_text:
        return Report(path, tuple(bad_text))
    checker = _Checker(path, env)
    _, blocks = checker.members(body, "", "the file")
    settings, proxy_line = checker.settings(blocks)
    checker.project = DevConfig(path=path, settings=settings).project
    settings = checker.dev_environment(settings)
    lines: dict[tuple[str, str], int] = {}
    services: list[ServiceDef] = []
    for block in blocks:
        if block.type == "service":
            svc = checker.service(block, settings, lines)
            if svc is not None:
                services.append(svc)
    if not services and not any(b.type == "service" for b in blocks):
        checker.warn(None, "no services declared", 'add a service "name" { cmd = "..." } block')
    config = DevConfig(path=path, settings=settings, services=tuple(services))
    # File order (stable: on one line, the order the checks ran); line-less ones first.
    diagnostics = sorted(
        checker.diagnostics + check_services(config, Lines(lines, proxy_line)), key=lambda d: d.line or 0
    )
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return Report(path, tuple(diagnostics))
    if not order:
        return Report(path, tuple(diagnostics), config, positions=lines)
    from a3s_dev.config.graph import start_order

    return Report(path, tuple(diagnostics), config, tuple(start_order(config)), lines)


def check(config: DevConfig) -> list[Diagnostic]:
    """The cross-service checks for a DevConfig built in code (positions from ServiceDef.line)."""
    return check_services(config)

