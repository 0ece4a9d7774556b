"""Every check of SPEC §1: the positioned HCL tree -> DevConfig plus diagnostics (line, message, hint).

All errors of a file are collected in one pass; nothing stops at the first one. The checks are
pure (no processes, no sockets); the only I/O is `Path.exists` for the dir/watch warnings.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a3s_dev.config.hcl import Attribute, Block, Body, HclSyntaxError, Value, parse
from a3s_dev.config.model import (
    Condition,
    DevConfig,
    GlobalSettings,
    HealthConfig,
    OnFailure,
    ProbeKind,
    RestartMode,
    ServiceDef,
    WatchConfig,
    dns_label,
    parse_duration,
    parse_size,
)


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
        }


def display_name(path: Path) -> str:
    """The A3sfile as a user would type it: relative to the current folder when below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------- the schema


class Kind(enum.Enum):
    STRING = "a string"
    PORT = "a whole number from 1 to 65535"
    PORT_OR_AUTO = 'a whole number from 1 to 65535, or "auto"'
    PROXY_PORT = "a whole number from 0 to 65535"
    POSITIVE_INT = "a whole number of at least 1"
    BOOL = "true or false"
    DURATION = 'a duration like "500ms", "2s" or "1m30s"'
    SIZE = 'a size like "10MB" or "512KB"'
    COUNT = "a whole number of 0 or more"
    STRING_LIST = 'a list of strings, like ["a", "b"]'
    DEPENDENCIES = 'a list of services, like ["db"], or a map of conditions, like { db = "healthy" }'
    ENV_MAP = 'a map of strings, like { KEY = "value" }'
    CHOICE = "one of"


@dataclass(frozen=True)
class Field:
    kind: Kind
    choices: tuple[str, ...] = ()


LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
_CONDITIONS = tuple(c.value for c in Condition)
AUTO = object()  # `port = "auto"`, as read
SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP")

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
        "stop_signal": Field(Kind.CHOICE, SIGNALS),
        "oneshot": Field(Kind.BOOL),
        "proxy": Field(Kind.BOOL),
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

SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
RESERVED = "a3s"  # a3s's own log name and the proxy's dashboard host


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """`did you mean "x"?` for the closest candidate, or None."""
    import difflib

    pool = list(candidates)
    match = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in pool}
        match = [lowered[word.lower()]] if word.lower() in lowered else []
    return f'did you mean "{match[0]}"?' if match else None


# ---------------------------------------------------------------------------- the checker


@dataclass
class _Checker:
    path: Path
    environ: Mapping[str, str]
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent

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
        v = attr.value
        line = v.line or attr.line
        label = f"{owner}: {attr.name}"
        if v.kind == "expression":
            self.error(
                line,
                f"{label} must be {self._expected(spec)}, got the expression {v.data}",
                "a3s reads literal values only; it does not evaluate references or functions",
            )
            return None
        kind = spec.kind
        if kind is Kind.STRING:
            if v.kind != "string":
                return self._wrong(line, label, spec, v)
            return v.data
        if kind is Kind.PORT_OR_AUTO:
            if v.kind == "string" and v.data == "auto":
                return AUTO
            if v.kind == "string" and not v.data.strip().isdigit():
                hint = 'write port = "auto"' if v.data.strip().lower() == "auto" else None
                return self._wrong(line, label, spec, v, hint=hint)
            kind = Kind.PORT
        if kind is Kind.SIZE:
            if v.kind not in ("string", "number"):
                return self._wrong(line, label, spec, v)
            try:
                size = parse_size(v.data)
            except ValueError as exc:
                self.error(line, f"{label}: {exc}")
                return None
            if size < 1024:
                self.error(line, f"{label}: {size} bytes is too small (at least 1KB)")
                return None
            return size
        if kind in (Kind.PORT, Kind.PROXY_PORT, Kind.POSITIVE_INT, Kind.COUNT):
            low, high = {
                Kind.PORT_OR_AUTO: (1, 65535),
                Kind.PORT: (1, 65535),
                Kind.PROXY_PORT: (0, 65535),
                Kind.POSITIVE_INT: (1, None),
                Kind.COUNT: (0, 1000),
            }[kind]
            number = v.data
            if v.kind == "string" and v.data.strip().isdigit():
                return self._wrong(line, label, spec, v, hint=f"write {v.data.strip()} without quotes")
            if v.kind != "number" or isinstance(number, float) and not number.is_integer():
                return self._wrong(line, label, spec, v)
            number = int(number)
            if number < low or (high is not None and number > high):
                self.error(line, f"{owner}: {attr.name} {number} is out of range (must be {self._expected(spec)})")
                return None
            return number
        if kind is Kind.BOOL:
            if v.kind != "bool":
                hint = f"write {str(v.data).lower()} without quotes" if v.kind == "string" and v.data.lower() in ("true", "false") else None
                return self._wrong(line, label, spec, v, hint=hint)
            return v.data
        if kind is Kind.DURATION:
            if v.kind not in ("string", "number"):
                return self._wrong(line, label, spec, v)
            try:
                return parse_duration(v.data)
            except ValueError as exc:
                self.error(line, f"{label}: {exc}")
                return None
        if kind is Kind.DEPENDENCIES:
            if v.kind == "map":
                found: list[tuple[str, int, str | None]] = []
                for key, key_line, item in v.data:
                    if item.kind != "string":
                        self._wrong(item.line or key_line or line, f"{label}: {key}", Field(Kind.CHOICE, _CONDITIONS), item)
                        continue
                    if item.data not in _CONDITIONS:
                        self.error(
                            item.line or key_line or line,
                            f'{label}: {key}: "{item.data}" is not a condition (one of {", ".join(_CONDITIONS)})',
                            suggest(item.data, _CONDITIONS),
                        )
                        continue
                    found.append((key, key_line or line, item.data))
                return found
            spec = Field(Kind.STRING_LIST)
            kind = Kind.STRING_LIST
        if kind is Kind.STRING_LIST:
            if v.kind == "string":
                return self._wrong(line, label, spec, v, hint=f'write ["{v.data}"]')
            if v.kind != "list":
                return self._wrong(line, label, spec, v)
            items: list[tuple[str, int]] = []
            for item in v.data:
                if item.kind != "string":
                    self._wrong(item.line or line, label, spec, item)
                    return None
                items.append((item.data, item.line or line))
            return items
        if kind is Kind.ENV_MAP:
            if v.kind != "map":
                return self._wrong(line, label, spec, v)
            env: dict[str, str] = {}
            for key, key_line, item in v.data:
                if not key or "=" in key or "\0" in key:
                    self.error(key_line or line, f'{label}: "{key}" is not a valid environment variable name')
                elif key in env:
                    self.error(key_line or line, f'{label}: duplicate key "{key}"')
                elif item.kind == "string":
                    env[key] = item.data
                elif item.kind == "number":
                    num = item.data
                    env[key] = str(int(num)) if isinstance(num, float) and num.is_integer() else str(num)
                elif item.kind == "bool":
                    env[key] = "true" if item.data else "false"
                else:
                    self.error(
                        item.line or key_line or line,
                        f"{label}: {key} must be a string, number or bool, got {self._describe(item)}",
                    )
            return env
        # Kind.CHOICE
        if v.kind != "string":
            return self._wrong(line, label, spec, v)
        text = v.data
        if attr.name == "stop_signal":
            text = text.upper()
            text = text if text.startswith("SIG") else "SIG" + text
        if text not in spec.choices:
            self.error(line, f'{label} must be {self._expected(spec)}, got "{v.data}"', suggest(v.data, spec.choices))
            return None
        return text

    def _expected(self, spec: Field) -> str:
        if spec.kind is Kind.CHOICE:
            return "one of " + ", ".join(f'"{c}"' for c in spec.choices)
        return str(spec.kind.value)

    def _describe(self, v: Value) -> str:
        if v.kind == "string":
            return f'the string "{v.data}"'
        if v.kind == "number":
            return f"the number {v.data}"
        if v.kind == "bool":
            return "true" if v.data else "false"
        return {"null": "null", "list": "a list", "map": "a map"}.get(v.kind, v.kind)

    def _wrong(self, line: int, label: str, spec: Field, v: Value, hint: str | None = None) -> None:
        self.error(line, f"{label} must be {self._expected(spec)}, got {self._describe(v)}", hint)

    # ------------------------------------------------------------------ blocks

    def settings(self, blocks: list[Block]) -> tuple[GlobalSettings, int | None]:
        """The dev block (or defaults) with A3S_PROXY_PORT applied; also the proxy_port line."""
        dev_blocks = [b for b in blocks if b.type == "dev"]
        for extra in dev_blocks[1:]:
            self.error(extra.line, f"duplicate dev block (first on line {dev_blocks[0].line})", "merge them into one")
        defaults = GlobalSettings()
        log_max_size, log_keep = defaults.log_max_size, defaults.log_keep
        https, https_port = defaults.https, defaults.https_port
        name = None
        if not dev_blocks:
            proxy_port, log_level, stop_timeout, port_line = defaults.proxy_port, defaults.log_level, defaults.stop_timeout, None
        else:
            block = dev_blocks[0]
            if block.labels:
                self.error(block.line, f'the dev block takes no name, got "{block.labels[0]}"', "write dev { ... }")
            attrs, _ = self.members(block.body, "dev", "dev")
            spec = SCHEMA["dev"]
            proxy_port = self.value(attrs.get("proxy_port"), spec["proxy_port"], "dev")
            log_level = self.value(attrs.get("log_level"), spec["log_level"], "dev")
            stop_timeout = self.value(attrs.get("stop_timeout"), spec["stop_timeout"], "dev")
            port_line = attrs["proxy_port"].line if "proxy_port" in attrs else None
            proxy_port = defaults.proxy_port if proxy_port is None else proxy_port
            log_level = log_level or defaults.log_level
            stop_timeout = defaults.stop_timeout if stop_timeout is None else stop_timeout
            size = self.value(attrs.get("log_max_size"), spec["log_max_size"], "dev")
            keep = self.value(attrs.get("log_keep"), spec["log_keep"], "dev")
            name = self.value(attrs.get("name"), spec["name"], "dev")
            if name is not None and not DNS_LABEL.match(name):
                self.error(
                    attrs["name"].line,
                    f'dev: name "{name}" is not a DNS label',
                    f'use lower-case letters, digits and "-", e.g. "{dns_label(name) or "shop"}"',
                )
                name = None
            log_max_size = log_max_size if size is None else size
            log_keep = log_keep if keep is None else keep
            https = self.value(attrs.get("https"), spec["https"], "dev") or https
            https_port = self.value(attrs.get("https_port"), spec["https_port"], "dev") or https_port
        flag = self.environ.get("A3S_HTTPS", "").strip().lower()
        if flag in ("1", "true", "yes", "on"):
            https = True
        elif flag in ("0", "false", "no", "off"):
            https = False
        elif flag:
            self.error(None, f'A3S_HTTPS="{self.environ["A3S_HTTPS"]}" is not 1 or 0')
        override = self.environ.get("A3S_PROXY_PORT")
        if override is not None and override.strip() != "":
            raw = override.strip()
            if raw.isdigit() and int(raw) <= 65535:
                proxy_port, port_line = int(raw), None
            else:
                self.error(None, f'A3S_PROXY_PORT="{override}" is not a port number (0-65535; 0 turns the proxy off)')
        if name is None and self.environ.get("A3S_PROJECT", "").strip():
            name = dns_label(self.environ["A3S_PROJECT"]) or None
        settings = GlobalSettings(
            name=name,
            proxy_port=proxy_port,
            log_level=log_level,
            stop_timeout=stop_timeout,
            log_max_size=log_max_size,
            log_keep=log_keep,
            https=bool(https),
            https_port=int(https_port),
        )
        return settings, port_line

    def service(self, block: Block, settings: GlobalSettings, lines: dict[tuple[str, str], int]) -> ServiceDef | None:
        """One service block -> ServiceDef with every default applied (None when it has no usable name)."""
        if len(block.labels) != 1:
            if not block.labels:
                self.error(block.line, "a service block needs a name", 'write service "api" { ... }')
            else:
                self.error(block.line, f"a service block takes one name, got {len(block.labels)}", f'write service "{block.labels[0]}" {{ ... }}')
            self.members(block.body, "service", "this service")  # still report what is inside
            return None
        name = block.labels[0]
        owner = f'service "{name}"'
        if not SERVICE_NAME.match(name):
            self.error(block.line, f'service name "{name}" may hold only letters, digits, "-", "_" and "."')
        elif name == RESERVED:
            self.error(block.line, f'service name "{name}" is reserved for a3s\'s own messages', "pick another name")
        attrs, blocks = self.members(block.body, "service", owner)
        for attr_name, attr in attrs.items():
            lines[(name, attr_name)] = attr.line
        spec = SCHEMA["service"]

        def get(key: str) -> Any:
            return self.value(attrs.get(key), spec[key], owner)


        cmd = get("cmd")
        if "cmd" not in attrs:
            self.error(block.line, f"{owner} has no cmd", 'add the command to run, e.g. cmd = "python3 app.py"')
        elif cmd is not None and not cmd.strip():
            self.error(attrs["cmd"].line, f"{owner}: cmd is empty")
        dir_text = get("dir")
        service_dir = Path(os.path.normpath(self.root / (dir_text or ".")))
        if dir_text is not None and service_dir.exists() and not service_dir.is_dir():
            self.error(attrs["dir"].line, f'{owner}: dir "{dir_text}" is a file, not a folder ({service_dir})')
        elif dir_text is not None and not service_dir.is_dir():
            self.warn(attrs["dir"].line, f'{owner}: dir "{dir_text}" does not exist ({service_dir})')
        port = get("port")
        auto_port = port is AUTO
        if auto_port:
            port = None  # chosen when the supervisor starts (run.choose_ports)
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
        env = get("env") or {}
        env_file_text = get("env_file")
        env_file = Path(os.path.normpath(service_dir / env_file_text)) if env_file_text else None
        if env_file is not None and env_file.is_dir():
            self.error(attrs["env_file"].line, f'{owner}: env_file "{env_file_text}" is a folder, not a file ({env_file})')
        elif env_file is not None and env_file.is_file():
            self.env_file_text(env_file, env_file_text or "", attrs["env_file"].line, owner)
        elif env_file is not None and service_dir.is_dir():
            self.warn(attrs["env_file"].line, f'{owner}: env_file "{env_file_text}" does not exist ({env_file})')
        depends = get("depends_on") or []
        seen: set[str] = set()
        depends_on: list[str] = []
        conditions: dict[str, Condition] = {}
        for dep, dep_line, *condition in depends:
            if dep in seen:
                self.warn(dep_line, f'{owner}: "{dep}" is listed twice in depends_on')
                continue
            seen.add(dep)
            depends_on.append(dep)
            if condition:
                conditions[dep] = Condition(condition[0])
            lines[(name, f"depends_on:{dep}")] = dep_line
        oneshot = bool(get("oneshot"))
        proxy = get("proxy")
        restart_text = get("restart")
        restart = RestartMode(restart_text) if restart_text else (RestartMode.NEVER if oneshot else RestartMode.ON_FAILURE)
        stop_timeout = get("stop_timeout")
        stop_signal = get("stop_signal") or "SIGTERM"

        watch: WatchConfig | None = None
        health: HealthConfig | None = None
        seen_blocks: dict[str, int] = {}
        for sub in blocks:
            if sub.type in seen_blocks:
                self.error(sub.line, f"{owner}: duplicate {sub.type} block (first on line {seen_blocks[sub.type]})")
                continue
            seen_blocks[sub.type] = sub.line
            if sub.labels:
                self.error(sub.line, f'{owner}: the {sub.type} block takes no name, got "{sub.labels[0]}"')
            if sub.type == "watch":
                watch = self.watch(sub, owner, service_dir)
            else:
                health = self.health(sub, owner)
                needs_port = health is not None and health.type in (ProbeKind.HTTP, ProbeKind.TCP) and not auto_port
                if needs_port and port is None and "port" not in attrs:
                    assert health is not None
                    self.error(
                        sub.line,
                        f"{owner}: {'an' if health.type is ProbeKind.HTTP else 'a'} {health.type.value} probe needs a port",
                        'set port = ... on the service, or probe with type = "cmd" or "log"',
                    )
        return ServiceDef(
            name=name,
            cmd=cmd or "",
            dir=service_dir,
            port=port,
            subdomain=subdomain,
            env=env,
            env_file=env_file,
            depends_on=tuple(depends_on),
            conditions=conditions,
            restart=restart,
            stop_timeout=settings.stop_timeout if stop_timeout is None else stop_timeout,
            stop_signal=stop_signal,
            oneshot=oneshot,
            watch=watch,
            health=health,
            proxy=True if proxy is None else proxy,
            auto_port=auto_port,
            line=block.line,
        )

    def env_file_text(self, path: Path, shown: str, line: int, owner: str) -> None:
        """An env_file a process environment cannot hold: a NUL byte, or bytes that are not UTF-8."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.error(line, f'{owner}: env_file "{shown}" cannot be read ({exc.strerror or exc})')
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

    def health(self, block: Block, owner: str) -> HealthConfig | None:
        """A health block; without `type`: `command` means cmd, `pattern` log, `path` http, else tcp."""
        label = f"{owner} health"
        attrs, _ = self.members(block.body, "health", label)
        spec = SCHEMA["health"]

        def get(key: str) -> Any:
            return self.value(attrs.get(key), spec[key], label)

        type_text, path, command, pattern = get("type"), get("path"), get("command"), get("pattern")
        interval, timeout, retries = get("interval"), get("timeout"), get("retries")
        start_timeout, on_failure = get("start_timeout"), get("on_failure")
        if type_text is None and "type" not in attrs:
            type_text = "cmd" if "command" in attrs else "log" if "pattern" in attrs else "http" if path is not None else "tcp"
        if type_text is None:
            return None  # a type that is not one: said already, and nothing else depends on it
        kind = ProbeKind(type_text)
        if "type" in attrs and type_text is not None:
            if kind is not ProbeKind.HTTP and "path" in attrs:
                self.error(attrs["path"].line, f"{label}: path applies to http probes only", 'remove it, or set type = "http"')
            for key, wanted in (("command", ProbeKind.CMD), ("pattern", ProbeKind.LOG)):
                if key in attrs and kind is not wanted:
                    self.error(attrs[key].line, f"{label}: {key} applies to {wanted.value} probes only", f'set type = "{wanted.value}"')
        if kind is ProbeKind.CMD and "command" not in attrs and type_text is not None:
            self.error(block.line, f"{label}: a cmd probe needs a command", 'add command = "pg_isready -q -p $PORT"')
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
        )


# ---------------------------------------------------------------------------- cross-service checks


def check_services(
    config: DevConfig,
    lines: Mapping[tuple[str, str], int] | None = None,
    *,
    proxy_port_line: int | None = None,
) -> list[Diagnostic]:
    """Checks across services: ports, subdomains, depends_on names and cycles.

    Works on a DevConfig built in code too; `lines` maps (service, attribute) to a line
    ((service, "depends_on:<dep>") for one list item) so messages can point at it.
    """
    lines = lines or {}
    out: list[Diagnostic] = []
    names = config.names

    def at(svc: ServiceDef, key: str) -> int | None:
        return lines.get((svc.name, key), svc.line)

    def err(line: int | None, message: str, hint: str | None = None) -> None:
        out.append(Diagnostic(Severity.ERROR, message, line, hint))

    first_by_name: dict[str, ServiceDef] = {}
    for svc in config.services:
        if svc.name in first_by_name:
            first = first_by_name[svc.name]
            err(svc.line, f'duplicate service "{svc.name}" (first declared on line {first.line})', "rename or merge one of them")
        else:
            first_by_name[svc.name] = svc

    proxy = config.settings.proxy_port
    by_port: dict[int, ServiceDef] = {}
    by_subdomain: dict[str, ServiceDef] = {}
    for svc in config.services:
        owner = f'service "{svc.name}"'
        if svc.port is not None:
            if svc.port in by_port and by_port[svc.port].name != svc.name:
                other = by_port[svc.port]
                err(at(svc, "port"), f'{owner}: port {svc.port} is already used by service "{other.name}" (line {at(other, "port")})')
            else:
                by_port.setdefault(svc.port, svc)
            if proxy and svc.port == proxy:
                where = f"line {proxy_port_line}" if proxy_port_line else "dev.proxy_port / A3S_PROXY_PORT"
                err(at(svc, "port"), f"{owner}: port {svc.port} is the proxy's port ({where})", "pick another port or change proxy_port")
        if svc.subdomain is not None and svc.port is not None:
            if svc.subdomain == RESERVED:
                err(at(svc, "subdomain"), f'{owner}: subdomain "{RESERVED}" is reserved for the proxy\'s own page')
            elif svc.subdomain in by_subdomain and by_subdomain[svc.subdomain].name != svc.name:
                other = by_subdomain[svc.subdomain]
                err(
                    at(svc, "subdomain"),
                    f'{owner}: subdomain "{svc.subdomain}" is already used by service "{other.name}" (line {at(other, "subdomain")})',
                )
            else:
                by_subdomain.setdefault(svc.subdomain, svc)

    known = set(names)
    deps: dict[str, list[str]] = {}
    for svc in config.services:
        owner = f'service "{svc.name}"'
        mine = deps.setdefault(svc.name, [])
        for dep in svc.depends_on:
            line = lines.get((svc.name, f"depends_on:{dep}"), at(svc, "depends_on"))
            if dep == svc.name:
                err(line, f"{owner} depends on itself", "remove it from depends_on")
            elif dep not in known:
                hint = suggest(dep, [n for n in names if n != svc.name])
                err(line, f'{owner}: depends_on names unknown service "{dep}"', hint)
            elif svc.conditions.get(dep) is Condition.COMPLETED and not first_by_name[dep].oneshot:
                err(
                    line,
                    f'{owner}: depends_on {dep} = "completed", but {dep} is not a task (oneshot) and never completes',
                    'use "healthy", or set oneshot = true on it',
                )
            elif dep not in mine:
                mine.append(dep)

    from a3s_dev.config.graph import acyclic, cycle_in

    # Report each independent cycle once: take one out, look again among the rest.
    remaining = dict(deps)
    while not acyclic(remaining):
        cycle = cycle_in(remaining)
        assert cycle is not None
        head = first_by_name[cycle[0]]
        err(
            lines.get((head.name, f"depends_on:{cycle[1]}"), at(head, "depends_on")),
            f"dependency cycle: {' -> '.join(cycle)}",
            "remove one of these depends_on entries",
        )
        for name in cycle:
            remaining.pop(name, None)
        remaining = {n: [d for d in ds if d in remaining] for n, ds in remaining.items()}
    return out


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
        checker.diagnostics + check_services(config, lines, proxy_port_line=proxy_line), key=lambda d: d.line or 0
    )
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return Report(path, tuple(diagnostics))
    if not order:
        return Report(path, tuple(diagnostics), config)
    from a3s_dev.config.graph import start_order

    return Report(path, tuple(diagnostics), config, tuple(start_order(config)))


def check(config: DevConfig) -> list[Diagnostic]:
    """The cross-service checks for a DevConfig built in code (positions from ServiceDef.line)."""
    return check_services(config)

