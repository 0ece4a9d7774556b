"""The typer app: every command's options and help; each command calls one function of commands.py.

Heavy modules (aiohttp, httpx, watchfiles, networkx, rich's table/live) are imported
inside the commands that need them. `status`, `validate` and `up` usually never get here:
argv.py reads them first (see there); this app serves them when the line needs typer's
parsing (help, a typo, an unknown option) and explains what is wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.core

from a3s_dev import __version__

app = typer.Typer(
    name="a3s",
    help="Local development orchestrator: every service of A3sfile.hcl up, healthy, proxied and watched.",
    no_args_is_help=True,
    add_completion=True,  # `a3s --install-completion`: commands, options and service names
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def service_names(incomplete: str) -> list[str]:
    """The A3sfile's service names that start with `incomplete` (shell completion); none when no
    A3sfile is found or it does not load."""
    from a3s_dev.config.load import load_with_report
    from a3s_dev.run.workspace import find_file

    try:
        report = load_with_report(find_file(G.file), order=False)
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return []
    names = report.config.names if report.config is not None else ()
    return [name for name in names if name.startswith(incomplete)]


class Globals:
    """Options given before the command (`a3s -f x.hcl --no-color status`)."""

    file: Path | None = None
    color: bool = True


G = Globals()

FILE_HELP = "A3sfile to use (default: $A3S_FILE, else A3sfile.hcl here or in a parent folder)."
FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help=FILE_HELP, metavar="FILE")]
LongFileOpt = Annotated[Path | None, typer.Option("--file", help=FILE_HELP, metavar="FILE")]
NoColorOpt = Annotated[bool, typer.Option("--no-color", help="No ANSI colors (also: NO_COLOR=1).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"a3s {__version__}")
        raise typer.Exit()


@app.callback()
def _globals(
    file: FileOpt = None,
    no_color: NoColorOpt = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    G.file = file
    G.color = not no_color


def config_file(file: Path | None) -> Path | None:
    """The A3sfile named after the command wins over the one named before it."""
    return file if file is not None else G.file


def color(no_color: bool) -> bool:
    """`--no-color` before or after the command."""
    return G.color and not no_color


def a3sfile(file: Path | None) -> Path:
    from a3s_dev.run.workspace import find_file

    return find_file(config_file(file))


def _duration(text: str | None, option: str) -> float | None:
    from a3s_dev.config.model import parse_duration

    try:
        return parse_duration(text) if text is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


# ---------------------------------------------------------------------------- commands


@app.command()
def validate(
    file: FileOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
    no_color: NoColorOpt = False,
) -> None:
    """Parse and check the A3sfile; print the start order. Exit 1 when invalid."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.validate(config_file(file), as_json=json_, color=color(no_color)))


@app.command()
def up(
    services: Annotated[list[str] | None, typer.Argument(help="Services to start (default: all).", metavar="SERVICE", show_default=False, autocompletion=service_names)] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run the supervisor in the background.")] = False,
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", metavar="DURATION", help="With -d: wait at most this long for readiness (30s, 2m)."),
    ] = None,
    no_deps: Annotated[bool, typer.Option("--no-deps", help="Do not start dependencies.")] = False,
    no_proxy: Annotated[bool, typer.Option("--no-proxy", help="Do not start the reverse proxy.")] = False,
    no_watch: Annotated[bool, typer.Option("--no-watch", help="Do not restart on file changes.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="With -d: one JSON object, each service's state.")] = False,
    ui: Annotated[bool, typer.Option("--ui", help="Start in the background, then open the terminal UI (a3s ui).")] = False,
    profile: Annotated[list[str] | None, typer.Option("--profile", help="Also start the services of this profile (repeatable; else A3S_PROFILES).", metavar="NAME")] = None,
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Start services (and what they depend on), gated by health probes."""
    from a3s_dev.cli import commands
    from a3s_dev.run.options import UpOptions

    if ui and json_:
        raise typer.BadParameter("--json and --ui do not go together", param_hint="--ui")
    opts = UpOptions(
        tuple(services or ()),
        deps=not no_deps,
        proxy=not no_proxy,
        watch=not no_watch,
        detach=detach or ui,
        timeout=_duration(timeout, "--timeout"),
        profiles=tuple(profile or ()),
    )
    code = commands.up(config_file(file), opts, color=color(no_color), as_json=json_)
    if ui:
        code = commands.ui(config_file(file), color=color(no_color))
    raise typer.Exit(code)


@app.command()
def ui(
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """A terminal UI on the stack (started in the background when it is not running); q quits
    and leaves it running."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.ui(config_file(file), color=color(no_color)))


@app.command()
def wait(
    services: Annotated[list[str] | None, typer.Argument(help="Services to wait for (default: all).", metavar="SERVICE", show_default=False, autocompletion=service_names)] = None,
    for_: Annotated[str, typer.Option("--for", metavar="ready|stopped", help="What to wait for.")] = "ready",
    timeout: Annotated[str | None, typer.Option("--timeout", metavar="DURATION", help="Give up after this long (30s, 2m).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Wait until services are ready (or stopped); say why each one that is not, is not."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.wait(config_file(file), services or [], until=for_, timeout=_duration(timeout, "--timeout"),
                                   as_json=json_, out=sys.stdout, err=sys.stderr))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service whose environment and folder the command gets.", metavar="SERVICE", show_default=False, autocompletion=service_names)],
    no_deps: Annotated[bool, typer.Option("--no-deps", help="Do not start the service's dependencies first.")] = False,
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Run a one-off command (`a3s run db -- psql`) with a service's environment, its dependencies up first."""
    from a3s_dev.cli import commands

    command = list(ctx.args[1:] if ctx.args[:1] == ["--"] else ctx.args)
    raise typer.Exit(commands.run(config_file(file), service, command, deps=not no_deps, color=color(no_color)))


@app.command()
def export(
    target: Annotated[str, typer.Argument(help="compose or kubernetes.", metavar="compose|kubernetes", show_default=False)],
    services: Annotated[list[str] | None, typer.Argument(help="Services to export (default: every one with an image).", metavar="SERVICE", show_default=False, autocompletion=service_names)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="compose: the file; kubernetes: the folder (default: stdout).", metavar="PATH")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", help="kubernetes: the namespace of every object (and a Namespace).", metavar="NS")] = None,
    domain: Annotated[str, typer.Option("--domain", help="kubernetes: Ingress hosts are <subdomain>.<project>.DOMAIN.", metavar="DOMAIN")] = "localhost",
    profile: Annotated[list[str] | None, typer.Option("--profile", help="The services `up --profile` would start (repeatable).", metavar="NAME")] = None,
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Write the services that have an image as a Compose file or Kubernetes objects; report what
    does not carry over (stderr). Exit 1 on errors."""
    from a3s_dev.cli import commands

    if target not in ("compose", "kubernetes"):
        raise typer.BadParameter(f'"{target}" is not a target: use compose or kubernetes', param_hint="TARGET")
    for option, given in (("--namespace", namespace), ("--domain", domain != "localhost" or None)):
        if target == "compose" and given:
            raise typer.BadParameter("applies to kubernetes only", param_hint=option)
    raise typer.Exit(commands.export(a3sfile(file), target, services or [], output=output, namespace=namespace,
                                     domain=domain, out=sys.stdout, profiles=tuple(profile or ())))


@app.command()
def mcp(
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the JSON that registers it in an MCP client.")] = False,
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """A Model Context Protocol server on stdio for coding agents (the `mcp` extra)."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.mcp(config_file(file), print_config=print_config, out=sys.stdout))


@app.command()
def attach(
    service: Annotated[str, typer.Argument(help="The interactive service to attach to.", metavar="SERVICE", show_default=False, autocompletion=service_names)],
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Connect this terminal to an interactive service (its keys, its screen); Ctrl-] detaches."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.attach(config_file(file), service))


@app.command("open")
def open_(
    service: Annotated[str, typer.Argument(help="The service to open.", metavar="SERVICE", show_default=False, autocompletion=service_names)],
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Open a service's URL in the browser (print it when it has none to open)."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.open_service(config_file(file), service, out=sys.stdout))


@app.command()
def down(
    services: Annotated[list[str] | None, typer.Argument(help="Services to stop (default: everything).", metavar="SERVICE", show_default=False, autocompletion=service_names)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Stop services (their dependents first) or everything, in reverse order."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.down(a3sfile(file), services or [], out=sys.stdout, as_json=json_))


@app.command()
def restart(
    services: Annotated[list[str], typer.Argument(help="Services to restart.", metavar="SERVICE", show_default=False, autocompletion=service_names)],
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
    file: FileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Gracefully stop, start and wait until healthy. Exit 1 if one does not get healthy."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.restart(a3sfile(file), services, out=sys.stdout, err=sys.stderr, as_json=json_))


@app.command()
def status(
    file: FileOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
    no_color: NoColorOpt = False,
) -> None:
    """One row a service: NAME STATE PID PORT HEALTH UPTIME RESTARTS URL."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.status(config_file(file), as_json=json_, color=color(no_color)))


@app.command()
def logs(
    services: Annotated[list[str] | None, typer.Argument(help="Services to show (default: all).", metavar="SERVICE", show_default=False, autocompletion=service_names)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following new lines.")] = False,
    lines: Annotated[int | None, typer.Option("-n", "--lines", metavar="N", help="Last N lines per service.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="DURATION", help="Only lines newer than this (30s, 5m).")
    ] = None,
    grep: Annotated[str | None, typer.Option("--grep", metavar="REGEX", help="Only lines this regular expression matches.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object a line: service, at (ISO 8601), text.")] = False,
    file: LongFileOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """The merged log history in time order; --follow keeps following."""
    import re

    from a3s_dev.cli import commands

    window = _duration(since, "--since")
    if lines is not None and lines < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="-n")
    try:
        pattern = re.compile(grep) if grep is not None else None
    except re.error as exc:
        raise typer.BadParameter(f"not a regular expression: {exc}", param_hint="--grep") from None
    code = commands.logs(
        a3sfile(file),
        services or [],
        follow=follow,
        last=lines,
        since=window,
        out=commands.stdout_bytes(),
        color=commands.use_color(color(no_color)) and sys.stdout.isatty(),
        grep=pattern,
        as_json=json_,
    )
    raise typer.Exit(code)


@app.command()
def proxy(
    action: Annotated[str | None, typer.Argument(help="`stop`: stop the proxy that runs.", metavar="[stop]", show_default=False)] = None,
    port: Annotated[int | None, typer.Option("--port", metavar="PORT", help="Its port, 1-65535 (default: A3S_PROXY_PORT, else 7080).", show_default=False)] = None,
    no_color: NoColorOpt = False,
) -> None:
    """Run the shared proxy in the foreground (`a3s up` starts it by itself), or stop it."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.proxy(action, port, out=sys.stdout))


@app.command("ls")
def ls_(
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable list.")] = False,
    port: Annotated[int | None, typer.Option("--port", metavar="PORT", help="The proxy's port (default: A3S_PROXY_PORT, else 7080).", show_default=False)] = None,
    no_color: NoColorOpt = False,
) -> None:
    """Every project registered with this user's proxy: services running, failed, its A3sfile."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.ls(port, as_json=json_, out=sys.stdout))


@app.command()
def trust(
    uninstall: Annotated[bool, typer.Option("--uninstall", help="Remove what `a3s trust` added, and only that.")] = False,
    print_: Annotated[bool, typer.Option("--print", help="Print the CA certificate's path.")] = False,
    no_color: NoColorOpt = False,
) -> None:
    """Trust a3s's local CA (https = true) in the system store and the browsers' NSS databases."""
    from a3s_dev.cli import commands

    raise typer.Exit(commands.trust(uninstall=uninstall, print_path=print_, out=sys.stdout))


def command() -> typer.core.TyperGroup:
    """The app as a click command, its help written for people: an argument is shown by its
    name alone (`SERVICE`), without typer's `<list[str]>` after it."""
    built = typer.main.get_command(app)
    assert isinstance(built, typer.core.TyperGroup)
    for sub in built.commands.values():
        for param in sub.params:
            if isinstance(param, typer.core.TyperArgument):
                param.display_type_rich = _no_type  # type: ignore[method-assign]
    return built


def _no_type(ctx: object) -> None:
    return None
