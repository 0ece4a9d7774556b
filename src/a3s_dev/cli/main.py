"""The `a3s` console script: the stdlib reader for status, validate and up, typer for the rest.

A user mistake is one line on stderr and a non-zero exit, never a traceback; anything else
that escapes is a bug and shows one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from a3s_dev.cli import argv
from a3s_dev.errors import A3sError


def _fast(command: argv.Command) -> int:
    from a3s_dev.cli import commands

    if isinstance(command, argv.Status):
        return commands.status(command.file, as_json=command.json, color=command.color)
    if isinstance(command, argv.Validate):
        return commands.validate(command.file, as_json=command.json, color=command.color)
    if isinstance(command, argv.Run):
        return commands.run(command.file, command.service, command.command, deps=command.deps, color=command.color)
    return commands.up(command.file, command.options, color=command.color, as_json=command.json)


def _typer(args: list[str]) -> int:
    from a3s_dev.cli.app import command

    command().main(args=args, prog_name="a3s")  # standalone: click prints usage errors itself and exits 2
    return 0


def finish(body: Callable[[], int]) -> NoReturn:
    """Run a command's body and end the process with its exit code: the one way out of every
    command. A user mistake is one line on stderr; click's own exits keep their code."""
    try:
        code = body()
    except SystemExit as exc:  # typer and click end every command this way
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except A3sError as exc:
        print(exc.printed(), file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C before the event loop took over the signals
        code = 130
    except BrokenPipeError:
        code = 0
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    # Nothing of ours needs tearing down (a foreground run has stopped every service by now):
    # skip the interpreter's module cleanup (typer's and pydantic's take ~40 ms).
    os._exit(code)


def main(args: list[str] | None = None, *, fast: bool = True) -> NoReturn:
    """Console-script entry: the typer-free path when the command line is one argv.parse reads
    (`fast=False`: always typer, which tests use to compare the two)."""
    args = sys.argv[1:] if args is None else args
    command = argv.parse(args) if fast else None
    if command is None:
        finish(lambda: _typer(args))
    finish(lambda: _fast(command))
