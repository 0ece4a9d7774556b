"""The one stdlib reader of the command line, for the commands that must not wait for typer.

Importing typer costs ~55 ms and its parameter coercion pulls in pydantic (~80 ms more): more
than `a3s status` may take in all, and most of the time a service takes to start. So the
console script reads `status`, `validate` and `up` here into a typed command; anything else
(help, typos, other commands, an option this reader does not know) is None, and the typer
app parses it and explains. Both paths call the same functions (cli/commands.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # imported when an `up` line is read: `status` never loads run.py
    from a3s_dev.run.options import UpOptions


class Status(NamedTuple):
    file: str | None
    color: bool
    json: bool


class Validate(NamedTuple):
    file: str | None
    color: bool
    json: bool


class Up(NamedTuple):
    file: str | None
    color: bool
    options: UpOptions
    json: bool = False


class Run(NamedTuple):
    file: str | None
    color: bool
    service: str
    deps: bool
    command: tuple[str, ...]


Command = Status | Validate | Up | Run

# Each command's own flags (without values), --detach spelled -d, and whether it takes service names.
_FLAGS: dict[str, tuple[frozenset[str], bool]] = {
    "status": (frozenset({"--json"}), False),
    "validate": (frozenset({"--json"}), False),
    "up": (frozenset({"-d", "--no-deps", "--no-proxy", "--no-watch", "--json"}), True),
}
_WITH_VALUE = {"up": frozenset({"--timeout"})}


def _run(rest: Sequence[str], file: str | None, color: bool) -> Run | None:
    """`run [-f F | --no-deps | --no-color]... SVC [-f F | --no-deps | --no-color]... [--] CMD...`:
    everything from the first word after SVC (or after `--`) on is the command, as it is."""
    service: str | None = None
    deps = True
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--no-deps":
            deps = False
        elif arg == "--no-color":
            color = False
        elif arg in ("-f", "--file") and i + 1 < len(rest):
            i += 1
            file = rest[i]
        elif arg.startswith("--file="):
            file = arg.split("=", 1)[1]
        elif arg == "--":
            i += 1
            break
        elif arg.startswith("-"):
            return None  # help, or an option the typer app explains
        elif service is None:
            service = arg
        else:
            break
        i += 1
    if service is None:
        return None
    return Run(file, color, service, deps, tuple(rest[i:]))


def parse(argv: Sequence[str]) -> Command | None:
    """`[-f F | --file F | --file=F | --no-color]... COMMAND [FLAG | OPTION VALUE | -f F | --no-color | NAME]...`
    for status, validate and up; None for anything else. A file named after the command wins
    over one named before it."""
    command: str | None = None
    before: str | None = None
    after: str | None = None
    color = True
    flags: set[str] = set()
    values: dict[str, str] = {}
    names: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        value: str | None = None
        key = arg.split("=", 1)[0] if arg.startswith("--") else arg
        inline = arg[len(key) + 1 :] if "=" in arg and arg.startswith("--") else None
        takes = command is not None and key in _WITH_VALUE.get(command, ())
        if key in ("-f", "--file") or takes:
            if inline is None:
                if i + 1 >= len(args) or args[i + 1].startswith("-"):
                    return None
                i += 1
                inline = args[i]
            if not inline:
                return None
            if takes:
                values[key] = inline
            else:
                value = inline
        elif arg == "--no-color":
            color = False
        elif command is None and arg == "run":
            return _run(args[i + 1 :], before, color)
        elif command is None:
            if arg not in _FLAGS:
                return None
            command = arg
        elif (arg == "--detach" and command == "up") or arg in _FLAGS[command][0]:
            flags.add("-d" if arg == "--detach" else arg)
        elif _FLAGS[command][1] and arg and not arg.startswith("-"):
            names.append(arg)
        else:
            return None
        if value is not None:
            if command is None:
                before = value
            else:
                after = value
        i += 1
    file = after if after is not None else before
    if command == "status":
        return Status(file, color, "--json" in flags)
    if command == "validate":
        return Validate(file, color, "--json" in flags)
    if command == "up":
        from a3s_dev.run.options import UpOptions

        timeout: float | None = None
        if "--timeout" in values:
            from a3s_dev.config.model import parse_duration

            try:
                timeout = parse_duration(values["--timeout"])
            except ValueError:
                return None  # typer says what is wrong with it
        options = UpOptions(
            tuple(names),
            deps="--no-deps" not in flags,
            proxy="--no-proxy" not in flags,
            watch="--no-watch" not in flags,
            detach="-d" in flags,
            timeout=timeout,
        )
        return Up(file, color, options, "--json" in flags)
    return None
