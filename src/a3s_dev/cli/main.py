"""The `a3s` console script: the stdlib reader for status, validate and up, typer for the rest.

A user mistake is one line on stderr and a non-zero exit, never a traceback; anything else
that escapes is a bug and shows one.
"""

from __future__ import annotations

import os
import sys

from a3s_dev.cli import argv
from a3s_dev.errors import A3sError


def _fast(command: argv.Command) -> int:
    from a3s_dev.cli import commands

    if isinstance(command, argv.Status):
        return commands.status(command.file, as_json=command.json, color=command.color)
    if isinstance(command, argv.Validate):
        return commands.validate(command.file, as_json=command.json, color=command.color)
    return commands.up(command.file, command.options, color=command.color)


def main(args: list[str] | None = None) -> None:
    """Console-script entry: the typer-free path when the command line is one argv.parse reads."""
    args = sys.argv[1:] if args is None else args
    command = argv.parse(args)
    if command is None:
        from a3s_dev.cli.app import main as typer_main

        typer_main(args)
        return
    try:
        code = _fast(command)
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
    # skip the interpreter's module cleanup.
    os._exit(code)
