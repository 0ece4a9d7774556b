"""The `a3s` command line: parse arguments, call one library function, render its result.

Heavy modules (aiohttp, httpx, watchfiles, networkx, rich's table/live) are imported
inside the commands that need them so that `a3s validate` and `a3s status` stay fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from a3s_dev import __version__
from a3s_dev.errors import A3sError

app = typer.Typer(
    name="a3s",
    help="Local development orchestrator: every service of A3sfile.hcl up, healthy, proxied and watched.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Globals:
    """Options given before the command (`a3s -f x.hcl --no-color status`)."""

    file: Path | None = None
    color: bool = True


G = Globals()

FileOpt = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="A3sfile to use (default: $A3S_FILE, else A3sfile.hcl here or in a parent folder)."),
]
LongFileOpt = Annotated[
    Path | None, typer.Option("--file", help="A3sfile to use (default: $A3S_FILE, else search upward).")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"a3s {__version__}")
        raise typer.Exit()


@app.callback()
def _globals(
    file: FileOpt = None,
    no_color: Annotated[bool, typer.Option("--no-color", help="No ANSI colors (also: NO_COLOR=1).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    G.file = file
    G.color = not no_color and not os.environ.get("NO_COLOR")


def config_file(file: Path | None) -> Path | None:
    """The A3sfile named after the command wins over the one named before it."""
    return file if file is not None else G.file


# ---------------------------------------------------------------------------- validate


@app.command()
def validate(
    file: FileOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Parse and check the A3sfile; print the start order. Exit 1 when invalid."""
    # The same function serves the typer-free fast path of entry.py.
    from a3s_dev.entry import ValidateArgs, run_validate

    code = run_validate(ValidateArgs(file=config_file(file), json=json_, color=G.color))
    if code:
        raise typer.Exit(code)


# ---------------------------------------------------------------------------- up


@app.command()
def up(
    services: Annotated[list[str] | None, typer.Argument(help="Services to start (default: all).")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run the supervisor in the background.")] = False,
    no_deps: Annotated[bool, typer.Option("--no-deps", help="Do not start dependencies.")] = False,
    no_proxy: Annotated[bool, typer.Option("--no-proxy", help="Do not start the reverse proxy.")] = False,
    no_watch: Annotated[bool, typer.Option("--no-watch", help="Do not restart on file changes.")] = False,
    file: FileOpt = None,
) -> None:
    """Start services (and what they depend on), gated by health probes."""
    # Only what the first wave needs is imported before the services are spawned.
    from a3s_dev.config import find_file, load

    a3sfile = find_file(config_file(file))
    from a3s_dev import daemon, runtime

    opts = daemon.UpOptions(tuple(services or ()), not no_deps, not no_proxy, not no_watch)
    # In the background, or with a supervisor already running: the control plane's client path.
    code = daemon.up(a3sfile, opts, detach=detach, color=G.color)
    if code >= 0:
        # Nothing of ours is left to clean up (the supervisor is another process); skipping the
        # interpreter's teardown of typer and pydantic saves ~40 ms of `up -d`'s wall time.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    config = load(a3sfile)
    from a3s_dev.session import run_foreground

    code = run_foreground(
        config,
        services=services or None,
        deps=not no_deps,
        attachments=daemon.attachments(config, runtime.paths_for(a3sfile), opts),
        color=None if G.color else False,
        proxy_port=config.settings.proxy_port if opts.proxy else 0,
    )
    raise typer.Exit(code)


# ---------------------------------------------------------------------------- down


@app.command()
def down(
    services: Annotated[list[str] | None, typer.Argument(help="Services to stop (default: everything).")] = None,
    file: FileOpt = None,
) -> None:
    """Stop services (their dependents first) or everything, in reverse order."""
    from a3s_dev import remote
    from a3s_dev.config import find_file

    raise typer.Exit(remote.down(find_file(config_file(file)), services or [], out=sys.stdout))


# ---------------------------------------------------------------------------- restart


@app.command()
def restart(
    services: Annotated[list[str], typer.Argument(help="Services to restart.")],
    file: FileOpt = None,
) -> None:
    """Gracefully stop, start and wait until healthy. Exit 1 if one does not get healthy."""
    from a3s_dev import remote
    from a3s_dev.config import find_file

    raise typer.Exit(remote.restart(find_file(config_file(file)), services, out=sys.stdout, err=sys.stderr))


# ---------------------------------------------------------------------------- status


@app.command()
def status(
    file: FileOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """One row a service: NAME STATE PID PORT HEALTH UPTIME RESTARTS URL."""
    from a3s_dev import remote
    from a3s_dev.config import find_file

    raise typer.Exit(remote.status(find_file(config_file(file)), as_json=json_, out=sys.stdout, color=G.color))


# ---------------------------------------------------------------------------- logs


@app.command()
def logs(
    services: Annotated[list[str] | None, typer.Argument(help="Services to show (default: all).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following new lines.")] = False,
    lines: Annotated[int | None, typer.Option("-n", "--lines", help="Last N lines per service.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only lines newer than this (30s, 5m).")] = None,
    file: LongFileOpt = None,
) -> None:
    """The merged log history in time order; --follow keeps following."""
    from a3s_dev import remote
    from a3s_dev.config import find_file, parse_duration

    try:
        window = parse_duration(since) if since is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    if lines is not None and lines < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="-n")
    code = remote.logs(find_file(config_file(file)), services or [], follow=follow, last=lines, since=window,
                       out=remote.stdout_bytes(), color=G.color and sys.stdout.isatty())
    raise typer.Exit(code)


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app; a user mistake is one line on stderr, never a traceback."""
    # Standalone mode lets click print usage errors itself (exit 2); A3sError is ours.
    try:
        app(args=argv, prog_name="a3s")
    except A3sError as exc:
        print(f"a3s: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
