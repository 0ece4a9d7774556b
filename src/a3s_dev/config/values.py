"""An A3sfile value -> what the model holds: one converter per `Kind`, in one table. Pure.

Each converter takes the value as read (`hcl.Value`) and the `Spot` it stands at (line, label,
expected kind, where errors go), and returns the converted value, or None once it has said
why it cannot (an error with the line and, where there is one, the likely fix).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from a3s_dev.config.hcl import Value
from a3s_dev.config.model import Condition, parse_duration, parse_size, signal_name


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
    SIGNAL = "one of (a signal)"  # a CHOICE whose text is normalised first: "term" is SIGTERM


@dataclass(frozen=True)
class Field:
    kind: Kind
    choices: tuple[str, ...] = ()


AUTO = object()  # `port = "auto"`, as read
CONDITIONS = tuple(c.value for c in Condition)


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """`did you mean "x"?` for the closest candidate, or None."""
    import difflib

    pool = list(candidates)
    match = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in pool}
        match = [lowered[word.lower()]] if word.lower() in lowered else []
    return f'did you mean "{match[0]}"?' if match else None


def expected(spec: Field) -> str:
    """What a value of `spec` must be, as said in an error."""
    if spec.kind in (Kind.CHOICE, Kind.SIGNAL):
        return "one of " + ", ".join(f'"{c}"' for c in spec.choices)
    return str(spec.kind.value)


def describe(v: Value) -> str:
    """What a value is, as said in an error: `the string "x"`, `a list`."""
    if v.kind == "string":
        return f'the string "{v.data}"'
    if v.kind == "number":
        return f"the number {v.data}"
    if v.kind == "bool":
        return "true" if v.data else "false"
    return {"null": "null", "list": "a list", "map": "a map"}.get(v.kind, v.kind)


@dataclass(frozen=True)
class Spot:
    """Where a value stands and how its errors are said: `service "api": port` on line 12."""

    line: int
    label: str
    spec: Field
    report: Callable[[int | None, str, str | None], None]

    def error(self, message: str, hint: str | None = None, *, line: int | None = None) -> None:
        self.report(line or self.line, message, hint)

    def wrong(self, v: Value, hint: str | None = None) -> None:
        """`<label> must be <expected>, got <what it is>`."""
        self.error(f"{self.label} must be {expected(self.spec)}, got {describe(v)}", hint)

    def at(self, line: int, label: str | None = None, spec: Field | None = None) -> Spot:
        """The same spot for a part of the value (a list item, a map entry)."""
        return dataclasses.replace(self, line=line, label=label or self.label, spec=spec or self.spec)


Converter = Callable[[Value, Spot], Any]


# ---------------------------------------------------------------------------- the converters


def string(v: Value, spot: Spot) -> str | None:
    if v.kind != "string":
        spot.wrong(v)
        return None
    return str(v.data)


def whole_number(low: int, high: int | None) -> Converter:
    """A converter of whole numbers from `low` to `high` (None: no upper bound)."""

    def convert(v: Value, spot: Spot) -> int | None:
        if v.kind == "string" and v.data.strip().isdigit():
            spot.wrong(v, f"write {v.data.strip()} without quotes")
            return None
        if v.kind != "number" or isinstance(v.data, float) and not v.data.is_integer():
            spot.wrong(v)
            return None
        number = int(v.data)
        if number < low or (high is not None and number > high):
            spot.error(f"{spot.label} {number} is out of range (must be {expected(spot.spec)})")
            return None
        return number

    return convert


_port = whole_number(1, 65535)


def port_or_auto(v: Value, spot: Spot) -> Any:
    if v.kind == "string" and v.data == "auto":
        return AUTO
    if v.kind == "string" and not v.data.strip().isdigit():
        spot.wrong(v, 'write port = "auto"' if v.data.strip().lower() == "auto" else None)
        return None
    return _port(v, spot)


def size(v: Value, spot: Spot) -> int | None:
    if v.kind not in ("string", "number"):
        spot.wrong(v)
        return None
    try:
        found = parse_size(v.data)
    except ValueError as exc:
        spot.error(f"{spot.label}: {exc}")
        return None
    if found < 1024:
        spot.error(f"{spot.label}: {found} bytes is too small (at least 1KB)")
        return None
    return found


def boolean(v: Value, spot: Spot) -> bool | None:
    if v.kind != "bool":
        quoted = v.kind == "string" and v.data.lower() in ("true", "false")
        spot.wrong(v, f"write {str(v.data).lower()} without quotes" if quoted else None)
        return None
    return bool(v.data)


MAX_DURATION = 24 * 3600.0  # no wait of a3s's lasts longer (a stop_timeout of 10^20 h made `down` hang)


def duration(v: Value, spot: Spot) -> float | None:
    if v.kind not in ("string", "number"):
        spot.wrong(v)
        return None
    try:
        seconds = parse_duration(v.data)
    except ValueError as exc:
        spot.error(f"{spot.label}: {exc}")
        return None
    if seconds > MAX_DURATION:
        spot.error(f'{spot.label}: "{v.data}" is longer than a day', 'at most "24h"')
        return None
    return seconds


def string_list(v: Value, spot: Spot) -> list[tuple[str, int]] | None:
    """[(text, line)] of a list of strings."""
    if v.kind == "string":
        spot.wrong(v, f'write ["{v.data}"]')
        return None
    if v.kind != "list":
        spot.wrong(v)
        return None
    items: list[tuple[str, int]] = []
    for item in v.data:
        if item.kind != "string":
            spot.at(item.line or spot.line).wrong(item)
            return None
        items.append((item.data, item.line or spot.line))
    return items


def dependencies(v: Value, spot: Spot) -> list[tuple[str, int, str | None]] | list[tuple[str, int]] | None:
    """[(name, line)] of a list, or [(name, line, condition)] of a map of conditions."""
    if v.kind != "map":
        return string_list(v, spot.at(spot.line, spec=Field(Kind.STRING_LIST)))
    found: list[tuple[str, int, str | None]] = []
    for key, key_line, item in v.data:
        line = item.line or key_line or spot.line
        if item.kind != "string":
            spot.at(line, f"{spot.label}: {key}", Field(Kind.CHOICE, CONDITIONS)).wrong(item)
        elif item.data not in CONDITIONS:
            spot.error(
                f'{spot.label}: {key}: "{item.data}" is not a condition (one of {", ".join(CONDITIONS)})',
                suggest(item.data, CONDITIONS),
                line=line,
            )
        else:
            found.append((key, key_line or spot.line, item.data))
    return found


def env_map(v: Value, spot: Spot) -> dict[str, str] | None:
    """KEY = "value" pairs; numbers and bools are written as the shell would read them."""
    if v.kind != "map":
        spot.wrong(v)
        return None
    env: dict[str, str] = {}
    for key, key_line, item in v.data:
        line = key_line or spot.line
        if not key or "=" in key or "\0" in key:
            spot.error(f'{spot.label}: "{key}" is not a valid environment variable name', line=line)
        elif key in env:
            spot.error(f'{spot.label}: duplicate key "{key}"', line=line)
        elif item.kind == "string":
            env[key] = item.data
        elif item.kind == "number":
            num = item.data
            env[key] = str(int(num)) if isinstance(num, float) and num.is_integer() else str(num)
        elif item.kind == "bool":
            env[key] = "true" if item.data else "false"
        else:
            spot.error(f"{spot.label}: {key} must be a string, number or bool, got {describe(item)}", line=item.line or line)
    return env


def choice(v: Value, spot: Spot, text: str | None = None) -> str | None:
    if v.kind != "string":
        spot.wrong(v)
        return None
    text = v.data if text is None else text
    if text not in spot.spec.choices:
        spot.error(f'{spot.label} must be {expected(spot.spec)}, got "{v.data}"', suggest(v.data, spot.spec.choices))
        return None
    return text


def signal(v: Value, spot: Spot) -> str | None:
    """A choice of signals, written any way a user would: `term`, `TERM`, `SIGTERM`."""
    return choice(v, spot, signal_name(v.data) if v.kind == "string" else None)


CONVERTERS: dict[Kind, Converter] = {
    Kind.STRING: string,
    Kind.PORT: _port,
    Kind.PORT_OR_AUTO: port_or_auto,
    Kind.PROXY_PORT: whole_number(0, 65535),
    Kind.POSITIVE_INT: whole_number(1, None),
    Kind.COUNT: whole_number(0, 1000),
    Kind.BOOL: boolean,
    Kind.DURATION: duration,
    Kind.SIZE: size,
    Kind.STRING_LIST: string_list,
    Kind.DEPENDENCIES: dependencies,
    Kind.ENV_MAP: env_map,
    Kind.CHOICE: choice,
    Kind.SIGNAL: signal,
}


def convert(v: Value, spot: Spot) -> Any:
    """`v` converted per `spot.spec`, or None once the error is said. An expression (a reference,
    a function call) is never evaluated."""
    if v.kind == "expression":
        spot.error(
            f"{spot.label} must be {expected(spot.spec)}, got the expression {v.data}",
            "a3s reads literal values only; it does not evaluate references or functions",
        )
        return None
    return CONVERTERS[spot.spec.kind](v, spot)
