"""The bodies of the commands: each takes what the command line said and its output streams,
does the work through the library, and returns the exit code.

Both readers of the command line (the stdlib one in argv.py and the typer app) call these,
so both print the same bytes; tests drive them directly too. Heavy modules are imported
inside the function that needs them, so that `a3s status` and `a3s validate` stay fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from a3s_dev.control.client import ControlClient, NotRunning
from a3s_dev.errors import A3sError, ConfigError, UsageError, unknown_service
from a3s_dev.run import workspace
from a3s_dev.run.inspect import status_answer, status_rows

if TYPE_CHECKING:
    from a3s_dev.run.options import UpOptions


# The states of a service that was started and has not ended: what `down` says it stopped (a
# service still pending behind a dependency never started, so it is never named).
STARTED = ("starting", "running", "unhealthy", "stopping", "backoff")


class NothingRunning(A3sError):
    """A command that needs a supervisor found none."""


def use_color(color: bool) -> bool:
    """Colors unless `--no-color` or NO_COLOR says otherwise."""
    return color and not os.environ.get("NO_COLOR")


# ---------------------------------------------------------------------------- validate


def validate(file: str | Path | None, *, as_json: bool, color: bool, out: IO[str] | None = None) -> int:
    """`a3s validate`: print diagnostics (stderr) and the start order (stdout); the exit code."""
    from a3s_dev.cli.render import paint_diagnostic
    from a3s_dev.config.load import load_with_report
    from a3s_dev.config.validate import display_name

    out = out or sys.stdout
    try:
        report = load_with_report(workspace.find_file(file))
    except A3sError as exc:
        if not as_json:
            raise
        error = {"line": None, "message": exc.message, "hint": None}
        doc = {"ok": False, "file": None, "errors": [error], "warnings": [], "start_order": []}
        out.write(json.dumps(doc, indent=2) + "\n")
        return 1
    if as_json:
        out.write(json.dumps(report.to_json(), indent=2) + "\n")
        return 0 if report.ok else 1
    painted = use_color(color) and sys.stderr.isatty()
    for line in report.lines():
        sys.stderr.write(paint_diagnostic(line, painted) + "\n")
    if not report.ok:
        count = len(report.errors)
        sys.stderr.write(f"{count} error{'s' if count != 1 else ''}, nothing started\n")
        return 1
    assert report.config is not None
    services = len(report.config.services)
    out.write(f"{display_name(report.path)}: valid, {services} service{'s' if services != 1 else ''}\n")
    if report.start_order:
        out.write("start order: " + " -> ".join(report.start_order) + "\n")
    if profiles := report.config.profiles:
        out.write("profiles: " + ", ".join(f"{p} ({', '.join(names)})" for p, names in profiles.items()) + "\n")
    return 0


# ---------------------------------------------------------------------------- up


def up(file: str | Path | None, opts: UpOptions, *, color: bool, as_json: bool = False) -> int:
    """`a3s up`: in the background with `-d`, through the running supervisor when there is
    one, else in the foreground until Ctrl-C. `as_json` (with `-d`): one JSON object."""
    a3sfile = workspace.find_file(file)
    paths = workspace.paths_for(a3sfile)
    if as_json and not opts.detach:
        raise UsageError("--json goes with -d (a foreground `up` streams the logs)")
    opts = with_profiles(a3sfile, opts)
    # A supervisor serves this A3sfile, or holds its lock while it starts: ask it.
    if opts.detach or workspace.lock_held(paths) or ControlClient(paths.socket).healthz():
        from a3s_dev.cli.render import Progress
        from a3s_dev.run import background

        if as_json:
            return background.up_json(a3sfile, opts, sys.stdout, sys.stderr)
        return background.up(a3sfile, opts, Progress(sys.stdout, use_color(color)))
    from a3s_dev.config.load import load
    from a3s_dev.run.serve import run_foreground

    return run_foreground(load(a3sfile), opts, color=None if use_color(color) else False)


# ---------------------------------------------------------------------------- ui


def ui(file: str | Path | None, *, color: bool) -> int:
    """`a3s ui`: the terminal UI on the project's supervisor, started in the background first
    when none runs. Quitting leaves the stack running."""
    a3sfile = workspace.find_file(file)
    client = ControlClient(workspace.paths_for(a3sfile).socket)
    if not client.healthz():
        from a3s_dev.run.options import UpOptions

        up(a3sfile, UpOptions(detach=True), color=color)  # a service that failed is shown in the UI
        if not client.healthz():
            raise NothingRunning("the supervisor did not start (see `a3s logs a3s`)")
    from a3s_dev.ui.app import StackView

    rows = client.status().get("services", [])
    project = next((str(r["project"]) for r in rows if r.get("project")), a3sfile.parent.name)
    StackView(client, project, attach=functools.partial(_attach_in_child, a3sfile)).run()
    return 0


def _attach_in_child(a3sfile: Path, service: str) -> None:
    """`a3s attach` in a child process on this terminal (the UI hands it over meanwhile): the
    session needs a main thread of its own (its SIGWINCH handler) and leaves the UI untouched."""
    import subprocess

    subprocess.run([sys.executable, "-m", "a3s_dev", "attach", "--file", str(a3sfile), service], check=False)


def with_profiles(a3sfile: Path, opts: UpOptions) -> UpOptions:
    """SPEC §13: without service names, `up` starts the services without a profile and those in
    a chosen one (`--profile`, else A3S_PROFILES), as names (their dependencies follow)."""
    import dataclasses

    profiles = opts.profiles or tuple(p.strip() for p in os.environ.get("A3S_PROFILES", "").split(",") if p.strip())
    if opts.services or (not profiles and b"profiles" not in _read(a3sfile)):
        return opts  # named services start whatever their profiles; no profiles: everything
    from a3s_dev.config.load import load

    config = load(a3sfile)
    known = config.profiles
    _check_profiles(profiles, known, a3sfile)
    names = config.chosen(profiles)
    if not names:
        raise UsageError(f"every service has a profile: choose one with --profile ({', '.join(known)})")
    return dataclasses.replace(opts, services=tuple(names))


def _check_profiles(profiles: Sequence[str], known: Mapping[str, Any], a3sfile: Path, said: str = "") -> None:
    """UsageError naming each profile the A3sfile does not have, and the ones it has."""
    unknown = [p for p in profiles if p not in known]
    if unknown:
        listed = ", ".join(known) or "none"
        raise UsageError(f"{said}unknown profile {', '.join(map(repr, unknown))} (profiles in {a3sfile.name}: {listed})")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""  # the load that follows says what is wrong


# ---------------------------------------------------------------------------- status


def status(file: str | Path | None, *, as_json: bool, color: bool, out: IO[str] | None = None) -> int:
    """`a3s status [--json]`; the orphans of a killed supervisor are named with what to do."""
    from a3s_dev.cli.render import render_status

    a3sfile = workspace.find_file(file)
    rows, applied, warnings = status_answer(a3sfile)
    render_status(rows, as_json=as_json, out=out or sys.stdout, color=use_color(color))
    for text in warnings.values():
        print(f"a3s: {text}", file=sys.stderr)
    if applied and applied != workspace.file_digest(a3sfile):
        print(f"a3s: {a3sfile.name} changed since the stack applied it; `a3s up -d` applies it", file=sys.stderr)
    orphaned = [r["name"] for r in rows if r["state"] == "orphaned"]
    if orphaned:
        print(
            f"a3s: no supervisor runs, but {', '.join(orphaned)} still run{'s' if len(orphaned) == 1 else ''}"
            " (orphaned by a killed supervisor): run `a3s down` to end them",
            file=sys.stderr,
        )
    return 0


# ---------------------------------------------------------------------------- logs


def _declared_names(a3sfile: Path, client: ControlClient, running: bool) -> tuple[str, ...] | None:
    """The services in declaration order: from the supervisor, else from the A3sfile; None when
    it does not load (the logs are still worth showing then)."""
    if running:
        try:
            return tuple(r["name"] for r in client.status()["services"])
        except NotRunning:
            pass
    from a3s_dev.config.load import load

    try:
        return load(a3sfile).names
    except A3sError:
        return None


def _check_names(names: Sequence[str], known: Sequence[str]) -> None:
    error = unknown_service((n for n in names if n != "a3s"), known)
    if error is not None:
        raise error


def logs(
    a3sfile: Path,
    services: Sequence[str],
    *,
    follow: bool,
    last: int | None,
    since: float | None,
    out: IO[bytes],
    color: bool,
    grep: re.Pattern[str] | None = None,
    as_json: bool = False,
) -> int:
    """`a3s logs`: the merged history from `.a3s/logs/` in time order, then (with `follow`) the
    live lines from the supervisor's log stream until it stops or Ctrl-C; only the lines `grep`
    matches; with `as_json` one JSON object a line."""
    from a3s_dev.cli.render import JsonLines
    from a3s_dev.core.history import read_history, service_files
    from a3s_dev.core.logs import LogSink, TerminalSink

    paths = workspace.paths_for(a3sfile)
    client = ControlClient(paths.socket)
    running = client.healthz()
    files = service_files(paths.logs_dir)
    declared = _declared_names(a3sfile, client, running)
    if services and declared is not None:
        _check_names(services, declared)
    stream = None
    until = None
    if follow and running:
        # Subscribe first: lines up to `since` come from the files, later ones from the stream.
        try:
            stream = client.logs(services, n=0, follow=True)
            until = float(next(stream)["since"])
        except (NotRunning, StopIteration):
            stream = None
    since_at = time.time() - since if since is not None else None
    history = read_history(paths.logs_dir, services or None, since=since_at, until=until, last=last)
    # The declared names in their order give the foreground's padding and colors exactly.
    names = list(declared) if declared is not None else sorted(set(services) | set(files))
    sink: LogSink = JsonLines(out) if as_json else TerminalSink([*names, "a3s"], out, color=color)
    try:
        for entry in history:
            if grep is None or grep.search(entry.text):
                sink.write(entry.service, [entry.text], entry.at, "stdout")
        if stream is not None:
            try:
                for line in stream:
                    if "text" in line and (grep is None or grep.search(line["text"])):
                        sink.write(line["service"], [line["text"]], float(line["at"]), line.get("stream", "stdout"))
            except KeyboardInterrupt:
                pass
    finally:
        sink.close()
    return 0


# ---------------------------------------------------------------------------- wait

def wait(file: str | Path | None, services: Sequence[str], *, until: str, timeout: float | None,
         as_json: bool, out: IO[str], err: IO[str]) -> int:
    """`a3s wait [SVC...] [--for ready|stopped] [--timeout D] [--json]`: 0 once every named
    service (default: all) is ready, or stopped; 1 on timeout or when one failed, naming each
    service that is not there yet with its state and last probe result or reason (SPEC §10)."""
    from a3s_dev.run.background import wait_for

    if until not in ("ready", "stopped"):
        raise UsageError(f'--for must be "ready" or "stopped", got "{until}"')
    client = ControlClient(workspace.paths_for(workspace.find_file(file)).socket)
    try:
        ok, rows, said = wait_for(client, services, until=until, timeout=timeout)
    except NotRunning:
        raise NothingRunning("nothing is running (start the stack with `a3s up -d`)") from None
    return _waited(as_json, out, err, ok, rows, said)


def _why(row: Mapping[str, Any]) -> str:
    detail = row.get("probe") if row.get("state") in ("starting", "unhealthy") else row.get("reason")
    return f"{row['name']} ({row['state']}: {detail})" if detail else f"{row['name']} ({row['state']})"


def _waited(as_json: bool, out: IO[str], err: IO[str], ok: bool, rows: Sequence[Mapping[str, Any]], said: str) -> int:
    if as_json:
        keys = ("name", "state", "probe", "reason")
        out.write(json.dumps({"ok": ok, "services": [{k: r.get(k) for k in keys} for r in rows]}) + "\n")
    elif ok:
        print(f"a3s: {said}", file=out)
    else:
        print(f"a3s: {said}: {', '.join(_why(r) for r in rows)}", file=err)
    return 0 if ok else 1


# ---------------------------------------------------------------------------- mcp


def mcp(file: str | Path | None, *, print_config: bool, out: IO[str]) -> int:
    """`a3s mcp [--print-config]`: the MCP server of this project on stdio (agents/server.py)."""
    a3sfile = workspace.find_file(file)
    try:
        from a3s_dev.agents import server
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("mcp"):
            raise
        raise A3sError("a3s mcp needs the MCP SDK: pip install 'a3s-dev[mcp]'") from None
    if print_config:
        print(server.client_config(a3sfile), file=out)
        return 0
    return server.serve(a3sfile)


# ---------------------------------------------------------------------------- attach


def attach(file: str | Path | None, service: str) -> int:
    """`a3s attach SVC`: this terminal on an interactive service until `Ctrl-]` (cli/attach.py)."""
    from a3s_dev.cli.attach import attach as attach_terminal

    socket = workspace.paths_for(workspace.find_file(file)).socket
    try:
        return attach_terminal(socket, service)
    except NotRunning:
        raise NothingRunning("nothing is running (start the stack with `a3s up -d`)") from None


# ---------------------------------------------------------------------------- open


def open_service(file: str | Path | None, service: str, *, out: IO[str]) -> int:
    """`a3s open SVC`: its URL (through the proxy while it runs) in the browser, and printed; a
    service that is not HTTP (`proxy = false`) or has no port: its address, or why there is none."""
    rows = status_rows(workspace.find_file(file))
    _check_names([service], [r["name"] for r in rows])
    url = next(r.get("url") for r in rows if r["name"] == service)
    if not url:
        print(f"a3s: {service} has no port, so there is nothing to open", file=out)
        return 1
    print(url, file=out)
    if url.startswith(("http://", "https://")):
        import webbrowser

        with contextlib.suppress(webbrowser.Error):
            webbrowser.open(url)
    return 0


# ---------------------------------------------------------------------------- run


def run(file: str | Path | None, service: str, command: Sequence[str], *, deps: bool, color: bool) -> int:
    """`a3s run SVC [--no-deps] [--] CMD...`: CMD in SVC's folder with SVC's environment exactly as
    the supervisor gives it (SPEC §10), after SVC's dependencies are up (a background supervisor
    is started for them when none runs). The command replaces this process: the terminal, Ctrl-C
    and the exit code are its own. Returns only when it cannot be run."""
    if not command:
        raise UsageError("a3s run: name the command to run, e.g. `a3s run api -- python manage.py migrate`")
    from a3s_dev.cli.render import Progress
    from a3s_dev.run.background import run_place

    # Progress on stderr: stdout is the command's.
    a3sfile = workspace.find_file(file)
    code, place = run_place(a3sfile, service, deps=deps, progress=Progress(sys.stderr, use_color(color)))
    if code != 0:
        return code
    env = dict(place["env"], PWD=place["dir"])  # as the service's shell sets it
    if sys.stdin.isatty() and os.environ.get("TERM"):
        env["TERM"] = os.environ["TERM"]  # this terminal's, which the command now talks to
    argv = list(command) if len(command) > 1 else ["/bin/sh", "-c", command[0]]
    if place.get("image"):  # SPEC §14: a new container of its image, its environment and volumes
        argv, env = _in_new_container(a3sfile, service, argv)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.chdir(place["dir"])
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        print(f"a3s: run: {argv[0]}: command not found", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"a3s: run: {argv[0]}: permission denied", file=sys.stderr)
        return 126
    except OSError as exc:
        raise A3sError(f"run: cannot run {argv[0]} in {place['dir']}: {exc.strerror or exc}") from None
    return 0  # pragma: no cover - exec does not return


def _in_new_container(a3sfile: Path, service: str, command: list[str]) -> tuple[list[str], dict[str, str]]:
    """`a3s run` of a container service: the runtime's client line and environment."""
    from a3s_dev.config.load import load
    from a3s_dev.core.containers import one_off

    argv, env, _ = one_off(load(a3sfile), service, command, tty=sys.stdin.isatty() and sys.stdout.isatty())
    return argv, env


# ---------------------------------------------------------------------------- export


def export(a3sfile: Path, target: str, services: Sequence[str], *, output: Path | None, namespace: str | None,
           domain: str, out: IO[str], profiles: Sequence[str] = ()) -> int:
    """`a3s export compose|kubernetes`: the documents to `output` (stdout without), what did not
    carry over on stderr, one line each; 1 when nothing could be exported."""
    from a3s_dev.config.load import load_with_report
    from a3s_dev.config.validate import DNS_LABEL, display_name
    from a3s_dev.core.service_env import read_env_file
    from a3s_dev.export.common import Source

    report = load_with_report(a3sfile, order=False)
    if report.config is None:
        raise ConfigError("\n".join(report.lines(errors_only=True)))
    _check_names(services, list(report.config.names))
    _check_profiles(profiles, report.config.profiles, a3sfile, "export: ")
    if namespace is not None and not DNS_LABEL.match(namespace):
        raise UsageError(f'export: --namespace "{namespace}" is not a DNS label (lower-case letters, digits and "-")')
    source = Source(report.config, report.positions)
    if target == "compose":
        from a3s_dev.export import compose

        base = (output.absolute().parent if output is not None else Path.cwd())
        result = compose.export(source, services, base=base, profiles=profiles)
        text = compose.render(result) if result.ok else ""
    else:
        from a3s_dev.export import kubernetes

        result = kubernetes.export(source, services, read_env=read_env_file, namespace=namespace, domain=domain,
                                   profiles=profiles)
        text = kubernetes.render(result) if result.ok else ""
    name = display_name(a3sfile)
    for finding in sorted(result.findings, key=lambda f: (f.line or 0, f.message)):
        print(finding.format(name), file=sys.stderr)
    if not result.ok:
        return 1
    if output is None:
        out.write(text)
        return 0
    try:
        if target == "compose":
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text)
        else:
            from a3s_dev.export.common import to_yaml

            output.mkdir(parents=True, exist_ok=True)
            for filename, documents in result.files.items():
                (output / filename).write_text(to_yaml(documents))
    except OSError as exc:
        raise A3sError(f"export: cannot write {exc.filename or output}: {exc.strerror or exc}") from None
    files = f" ({len(result.files)} files)" if target == "kubernetes" else ""
    print(f"a3s: wrote {output}{files}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- down


def down(a3sfile: Path, services: Sequence[str], *, out: IO[str], wait: float = 300.0, as_json: bool = False) -> int:
    """`a3s down [SVC...]`: everything (the supervisor exits) or the named services, dependents
    first. With no supervisor: end what a SIGKILLed one left, or say nothing is running."""
    from a3s_dev.system import procfs

    paths = workspace.paths_for(a3sfile)
    client = ControlClient(paths.socket)
    if not workspace.wait_for_supervisor(paths, client.healthz, 30.0):
        ended = workspace.clean_stale(paths)
        if as_json:
            out.write(json.dumps({"ok": True, "stopped": [], "orphans_ended": [o.service for o in ended]}) + "\n")
        elif ended:
            names = ", ".join(o.service for o in ended)
            print(f"a3s: ended the process groups a killed supervisor left: {names}", file=out)
        else:
            print("nothing is running", file=out)
        return 0
    before = {r["name"]: r for r in client.status()["services"]}
    if services:
        _check_names(services, list(before))
        after = client.stop(services)["services"]
        stopped = [r["name"] for r in after if r["state"] == "stopped" and before[r["name"]]["state"] in STARTED]
        if as_json:
            out.write(json.dumps({"ok": True, "stopped": stopped, "supervisor_stopped": False}) + "\n")
        else:
            print(f"a3s: stopped {', '.join(stopped)}" if stopped else "a3s: nothing to stop", file=out)
        return 0
    pid = int(client.down().get("pid") or 0)
    deadline = time.monotonic() + wait
    # The supervisor stops every service, removes its socket and releases its lock, then exits.
    while workspace.lock_held(paths) or (pid and procfs.alive(pid)):
        if time.monotonic() > deadline:
            if as_json:
                out.write(json.dumps({"ok": False, "reason": f"the supervisor (pid {pid}) is still stopping"}) + "\n")
            else:
                print(f"a3s: the supervisor (pid {pid}) is still stopping after {wait:g}s", file=out)
            return 1
        time.sleep(0.02)
    live = [n for n, r in before.items() if r["state"] in STARTED]
    if as_json:
        out.write(json.dumps({"ok": True, "stopped": live, "supervisor_stopped": True}) + "\n")
    else:
        print(f"a3s: stopped {', '.join(live)}" if live else "a3s: stopped the supervisor", file=out)
    return 0


# ---------------------------------------------------------------------------- restart


def restart(
    a3sfile: Path, services: Sequence[str], *, out: IO[str], err: IO[str], timeout: float = 60.0, as_json: bool = False
) -> int:
    """`a3s restart SVC...`: graceful stop, start, wait until healthy; 1 with the reason if not."""
    client = ControlClient(workspace.socket_path_for(a3sfile))
    if not client.healthz():
        raise NothingRunning("nothing is running (start the stack with `a3s up -d`)")
    answer = client.restart(services, timeout=timeout)
    if as_json:
        rows = [r for r in answer.get("services", []) if r["name"] in services]
        result = {"ok": bool(answer.get("ok")), "services": rows}
        if not answer.get("ok"):
            result.update(failed=answer.get("failed"), reason=answer.get("reason"), tail=answer.get("tail") or [])
        out.write(json.dumps(result) + "\n")
        return 0 if answer.get("ok") else 1
    if answer.get("ok"):
        pids = {r["name"]: r["pid"] for r in answer.get("services", [])}
        done = ", ".join(f"{n} (pid {pids.get(n)})" if pids.get(n) else n for n in services)
        print(f"a3s: restarted {done}", file=out)
        return 0
    from a3s_dev.run.background import print_failure

    failed = str(answer.get("failed"))
    print_failure(f"{failed} did not get healthy: {answer.get('reason')}", failed, answer.get("tail") or [], err)
    return 1


def stdout_bytes() -> IO[bytes]:
    """The binary stdout (log lines pass through as bytes, the children's ANSI colors included)."""
    return sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout  # type: ignore[return-value]


# ---------------------------------------------------------------------------- proxy


def proxy_port(port: int | None) -> int:
    """`--port`, else A3S_PROXY_PORT, else the default `dev.proxy_port`."""
    from a3s_dev.config.environment import parse_proxy_port
    from a3s_dev.config.model import GlobalSettings

    if port is not None:
        if not 1 <= port <= 65535:
            raise UsageError(f"--port {port} is not a port number (1-65535)")
        return port
    raw = os.environ.get("A3S_PROXY_PORT", "").strip()
    if not raw:
        return GlobalSettings().proxy_port
    found = parse_proxy_port(raw)
    if found is None:
        raise UsageError(f"A3S_PROXY_PORT={raw!r} is not a port number (0-65535; 0 turns the proxy off)")
    if found == 0:
        raise UsageError("A3S_PROXY_PORT=0 turns the proxy off; name its port with --port")
    return found


def ls(port: int | None, *, as_json: bool, out: IO[str]) -> int:
    """`a3s ls [--json]`: every project registered with this user's proxy (SPEC §13), read from
    the proxy's dashboard API; where the dashboard asks for a login, with a login link."""
    from a3s_dev.link import proxy_process

    port = proxy_port(port)
    projects: list[dict[str, Any]] = []
    if proxy_process.running_pid(port) is not None:
        projects = list(_dashboard_api(port, "/api/projects", proxy_process.login(port)))
    if as_json:
        out.write(json.dumps(projects, indent=2) + "\n")
        return 0
    if not projects:
        print(f"no project is registered with a proxy on port {port}", file=out)
        return 0
    cells = [["PROJECT", "SERVICES", "FAILED", "A3SFILE", "DASHBOARD"]] + [
        [p["name"], f"{p['running']}/{p['total']} running", str(p["failed"]), str(p["a3sfile"] or ""), p["dashboard"]]
        for p in projects
    ]
    from a3s_dev.cli.render import aligned

    out.write(aligned(cells))
    login = proxy_process.login(port)
    if login is not None:
        from a3s_dev.link.addresses import login_link

        print(f"dashboard login (good once): {login_link(port, login)}", file=out)
    return 0


def _dashboard_api(port: int, path: str, login: str | None) -> Any:
    """GET `path` of the dashboard's API on this user's proxy, as JSON; `login`: a token to
    exchange first for the cookie, where the dashboard asks for one."""
    import http.client
    from urllib.parse import quote

    headers = {"Host": f"a3s.localhost:{port}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        if login is not None:
            conn.request("GET", f"{path}?login={quote(login)}", headers=headers)
            answer = conn.getresponse()
            answer.read()
            cookie = (answer.getheader("Set-Cookie") or "").split(";")[0]
            if answer.status == 303 and cookie:
                headers["Cookie"] = cookie
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
    except OSError as exc:
        raise A3sError(f"ls: the proxy on port {port} did not answer ({exc.strerror or exc})") from None
    finally:
        conn.close()
    if answer.status != 200:
        raise A3sError(f"ls: the proxy on port {port} answered {answer.status}: {body[:200].decode(errors='replace')}")
    return json.loads(body)


def proxy(action: str | None, port: int | None, *, out: IO[str]) -> int:
    """`a3s proxy`: this user's shared proxy in the foreground (until Ctrl-C; it does not exit
    when projects leave); `a3s proxy stop`: stop the one that runs."""
    from a3s_dev.link import proxy_process

    port = proxy_port(port)
    if action == "stop":
        pid = proxy_process.stop(port)
        if pid is None:
            print(f"a3s: no proxy is running on port {port}", file=out)
        else:
            print(f"a3s: stopped the proxy on port {port}" + (f" (pid {pid})" if pid else ""), file=out)
        return 0
    if action is not None:
        raise UsageError(f'a3s proxy: unknown action "{action}" (the one there is: stop)')
    with proxy_process.spawn_lock(port):
        running = proxy_process.connect(port)
        if running is not None:
            running.close()
            pid = proxy_process.running_pid(port)
            raise A3sError(
                f"a proxy already runs on port {port}" + (f" (pid {pid})" if pid else "")
                + f"; stop it with `a3s proxy stop --port {port}`"
            )
        tcp, unix = proxy_process.listen(port)
    from a3s_dev.proxy.server import serve_shared

    print(f"a3s: proxy on http://localhost:{port} (Ctrl-C stops it)", file=out, flush=True)
    return serve_shared(port, [s.detach() for s in (*tcp, unix)], linger=None)


# ---------------------------------------------------------------------------- trust


def trust(*, uninstall: bool, print_path: bool, out: IO[str]) -> int:
    """`a3s trust [--uninstall] [--print]`: the local CA into the trust stores, out again, or its path."""
    import shutil

    from a3s_dev.tls import trust as stores
    from a3s_dev.tls.ca import LocalCA

    ca = LocalCA()
    if print_path:
        print(ca.ensure().cert_path, file=out)
        return 0
    certutil = shutil.which("certutil")
    if uninstall:
        outcome = stores.uninstall(ca, certutil=certutil)
    else:
        home = Path.home()
        outcome = stores.install(
            ca, store=stores.system_store(), nss=stores.nss_databases(home), certutil=certutil, home=home
        )
    for line in outcome.lines:
        print(f"a3s: {line}" if not line.startswith("  ") else line, file=out)
    if uninstall:
        return 1 if outcome.failed else 0
    return 0 if outcome.trusted_somewhere or not outcome.failed else 1
