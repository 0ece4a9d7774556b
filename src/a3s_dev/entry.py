"""The `a3s` console script: a typer-free fast path for `a3s validate`, typer for everything else.

Importing typer costs ~55 ms and its parameter coercion imports pydantic (~80 ms more), which
alone would eat most of the 250 ms budget of `a3s validate`. So a command line that is exactly
`[-f FILE | --file FILE | --no-color]... validate [--json | -f FILE | --file FILE]...` is run
here without them; anything else (help, typos, other commands) goes to the typer app in cli.py,
which calls the same `run_validate`, so both paths print byte-identical results.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from a3s_dev.errors import A3sError


@dataclass(frozen=True)
class ValidateArgs:
    """What `a3s validate` was asked: the file named on the command line, --json, colors."""

    file: Path | None = None
    json: bool = False
    color: bool = True


def parse_fast_validate(argv: list[str]) -> ValidateArgs | None:
    """ValidateArgs when argv is a plain `validate` command line, else None (let typer parse it)."""
    from a3s_dev.fast import parse_plain

    p = parse_plain(argv)
    if p is None or p.command != "validate":
        return None
    return ValidateArgs(file=Path(p.file) if p.file is not None else None, json="--json" in p.flags, color=p.color)


def run_validate(args: ValidateArgs) -> int:
    """`a3s validate`: print diagnostics (stderr) and the start order (stdout); the exit code."""
    from a3s_dev.config import find_file, load_with_report
    from a3s_dev.validate import display_name

    out = sys.stdout
    try:
        report = load_with_report(find_file(args.file))
    except A3sError as exc:
        if not args.json:
            raise
        doc = {"ok": False, "file": None, "errors": [{"line": None, "message": exc.message, "hint": None}], "warnings": [], "start_order": []}
        out.write(json.dumps(doc, indent=2) + "\n")
        return 1
    if args.json:
        out.write(json.dumps(report.to_json(), indent=2) + "\n")
        return 0 if report.ok else 1
    color = args.color and not os.environ.get("NO_COLOR") and sys.stderr.isatty()
    for line in report.lines():
        sys.stderr.write(_paint(line, color) + "\n")
    if not report.ok:
        count = len(report.errors)
        sys.stderr.write(f"{count} error{'s' if count != 1 else ''}, nothing started\n")
        return 1
    assert report.config is not None
    services = len(report.config.services)
    out.write(f"{display_name(report.path)}: valid, {services} service{'s' if services != 1 else ''}\n")
    if report.start_order:
        out.write("start order: " + " -> ".join(report.start_order) + "\n")
    return 0


def _paint(line: str, color: bool) -> str:
    """Errors red, warnings yellow, when stderr is a terminal that takes colors."""
    if not color:
        return line
    code = "31" if ": error: " in line else "33"
    return f"\x1b[{code}m{line}\x1b[0m"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: the fast path when it applies, else the typer app."""
    args = sys.argv[1:] if argv is None else argv
    fast = parse_fast_validate(args)
    if fast is None:
        from a3s_dev.cli import main as typer_main

        typer_main(args)
        return
    try:
        code = run_validate(fast)
    except A3sError as exc:
        print(f"a3s: {exc.message}", file=sys.stderr)
        code = exc.exit_code
    sys.stdout.flush()
    sys.exit(code)
