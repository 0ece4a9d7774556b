"""Every validation message of SPEC §1: one test each, asserting the line and the suggestion."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from a3s_dev.config.validate import Report, Severity, check_text

pytestmark = pytest.mark.timeout(30)


def check(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> Report:
    path = tmp_path / "A3sfile.hcl"
    path.write_text(textwrap.dedent(text))
    return check_text(path.read_text(), path, environ or {})


def only_error(report: Report) -> tuple[int | None, str]:
    assert len(report.errors) == 1, report.lines()
    err = report.errors[0]
    return err.line, err.text


def finding(name: str, text: str, line: int | None, message: str, env: dict[str, str] | None = None) -> Any:
    return pytest.param(text, env or {}, line, message, id=name)


# ---------------------------------------------------------------------------- one error each, as the spec reads


# (A3sfile, line, the one error as printed after `A3sfile.hcl:LINE: error: `, environment);
# {folder} stands for the A3sfile's folder.
ONE_ERROR = [
    # issue 21: what validation let through
    finding('https-port-is-proxy-port', 'dev {\n  https = true\n  proxy_port = 7443\n}\nservice "a" { cmd = "x" }\n', 3, 'dev: https_port 7443 is proxy_port too (give https its own port, e.g. 7443)'),
    finding('service-on-the-https-port', 'dev {\n  https = true\n}\nservice "a" {\n  cmd = "x"\n  port = 7443\n}\n', 6, "service \"a\": port 7443 is the proxy's https_port (pick another port or change dev.https_port)"),
    finding('path-beside-command', 'service "a" {\n  cmd = "x"\n  health {\n    command = "true"\n    path = "/h"\n  }\n}\n', 5, 'service "a" health: path applies to http probes only (remove it, or set type = "http")'),
    finding('pattern-beside-command', 'service "a" {\n  cmd = "x"\n  health {\n    command = "true"\n    pattern = "up"\n  }\n}\n', 5, 'service "a" health: pattern applies to log probes only (set type = "log")'),
    finding('endless-stop-timeout', 'service "a" {\n  cmd = "x"\n  stop_timeout = "99999999999999999999999h"\n}\n', 3, 'service "a": stop_timeout: "99999999999999999999999h" is longer than a day (at most "24h")'),
    finding('project-named-a3s', 'dev {\n  name = "a3s"\n}\nservice "a" { cmd = "x" }\n', 2, 'dev: name "a3s" is reserved for the dashboard (a3s.localhost) (pick another name)'),
    finding('A3S_PROJECT-not-a-label', 'service "a" { cmd = "x" }\n', None, 'A3S_PROJECT="Shop" cannot name a project (lower-case letters, digits and "-"; not a3s or localhost), e.g. A3S_PROJECT=shop', env={'A3S_PROJECT': 'Shop'}),
    finding('A3S_PROJECT-a-path', 'service "a" { cmd = "x" }\n', None, 'A3S_PROJECT="../x" cannot name a project (lower-case letters, digits and "-"; not a3s or localhost), e.g. A3S_PROJECT=x', env={'A3S_PROJECT': '../x'}),
    finding('unknown-attribute', 'service "api" {\n  cmd = "x"\n  prot = 8080\n}\n', 3, 'unknown attribute "prot" in service "api" (did you mean "port"?)'),
    finding('unknown-block', 'services "api" {\n  cmd = "x"\n}\n', 1, 'unknown block "services" in the file (did you mean "service"?)'),
    finding('unknown-nested-block', 'service "api" {\n  cmd = "x"\n  port = 1234\n  heath {\n  }\n}\n', 4, 'unknown block "heath" in service "api" (did you mean "health"?)'),
    finding('attribute-at-top-level', 'proxy_port = 7000\nservice "a" { cmd = "x" }\n', 1, 'unknown attribute "proxy_port" in the file (it belongs in a dev block)'),
    finding('missing-cmd', 'service "a" { cmd = "x" }\n\nservice "api" {\n  port = 8080\n}\n', 3, 'service "api" has no cmd (add the command to run, e.g. cmd = "python3 app.py", or an image = "postgres:16")'),
    finding('wrong-type', 'service "api" {\n  cmd = 3\n}\n', 2, 'service "api": cmd must be a string, got the number 3'),
    finding('quoted-port', 'service "api" {\n  cmd = "x"\n  port = "8080"\n}\n', 3, 'service "api": port must be a whole number from 1 to 65535, or "auto", got the string "8080" (write 8080 without quotes)'),
    finding('depends-on-a-string', 'service "db" { cmd = "x" }\nservice "api" {\n  cmd = "x"\n  depends_on = "db"\n}\n', 4, 'service "api": depends_on must be a list of strings, like ["a", "b"], got the string "db" (write ["db"])'),
    finding('expression', 'service "api" {\n  cmd = "x"\n  port = var.port\n}\n', 3, 'service "api": port must be a whole number from 1 to 65535, or "auto", got the expression var.port (a3s reads literal values only; it does not evaluate references or functions)'),
    finding('bad-duration', 'dev {\n  stop_timeout = "5 secs"\n}\n', 2, 'dev: stop_timeout: "5 secs" is not a duration (examples: "250ms", "2s", "1m30s")'),
    finding('bad-duration-in-health', 'service "a" {\n  cmd = "x"\n  port = 3000\n  health {\n    interval = "2x"\n  }\n}\n', 5, 'service "a" health: interval: "2x" is not a duration (examples: "250ms", "2s", "1m30s")'),
    finding('port-0', 'service "api" {\n  cmd = "x"\n  port = 0\n}\n', 3, 'service "api": port 0 is out of range (must be a whole number from 1 to 65535, or "auto")'),
    finding('port-65536', 'service "api" {\n  cmd = "x"\n  port = 65536\n}\n', 3, 'service "api": port 65536 is out of range (must be a whole number from 1 to 65535, or "auto")'),
    finding('port-negative', 'service "api" {\n  cmd = "x"\n  port = -1\n}\n', 3, 'service "api": port -1 is out of range (must be a whole number from 1 to 65535, or "auto")'),
    finding('proxy-port-70000', 'dev {\n  proxy_port = 70000\n}\n', 2, 'dev: proxy_port 70000 is out of range (must be a whole number from 0 to 65535)'),
    finding('https-not-a-bool', 'dev {\n  https = "yes"\n}\nservice "a" { cmd = "x" }\n', 2, 'dev: https must be true or false, got the string "yes"'),
    finding('https-port-0', 'dev {\n  https_port = 0\n}\nservice "a" { cmd = "x" }\n', 2, 'dev: https_port 0 is out of range (must be a whole number from 1 to 65535)'),
    finding('A3S_HTTPS', 'service "a" { cmd = "x" }\n', None, 'A3S_HTTPS="maybe" is not 1 or 0', env={'A3S_HTTPS': 'maybe'}),
    finding('two-services-one-port', 'service "a" {\n  cmd = "x"\n  port = 8080\n}\nservice "b" {\n  cmd = "x"\n  port = 8080\n}\n', 7, 'service "b": port 8080 is already used by service "a" (line 3)'),
    finding('service-on-the-proxy-port', 'dev {\n  proxy_port = 9000\n}\nservice "a" {\n  cmd = "x"\n  port = 9000\n}\n', 6, 'service "a": port 9000 is the proxy\'s port (line 2) (pick another port or change proxy_port)'),
    finding('two-services-one-subdomain', 'service "a" {\n  cmd = "x"\n  port = 1\n  subdomain = "web"\n}\nservice "web" {\n  cmd = "x"\n  port = 2\n}\n', 6, 'service "web": subdomain "web" is already used by service "a" (line 4)'),
    finding('subdomain-underscore', 'service "a" {\n  cmd = "x"\n  port = 1\n  subdomain = "my_api"\n}\n', 4, 'service "a": subdomain "my_api" is not a DNS label (use lower-case letters, digits and "-", at most 63, no dots, e.g. "my-api")'),
    finding('subdomain-dot', 'service "a" {\n  cmd = "x"\n  port = 1\n  subdomain = "a.b"\n}\n', 4, 'service "a": subdomain "a.b" is not a DNS label (use lower-case letters, digits and "-", at most 63, no dots, e.g. "my-api")'),
    finding('subdomain-dash', 'service "a" {\n  cmd = "x"\n  port = 1\n  subdomain = "-x"\n}\n', 4, 'service "a": subdomain "-x" is not a DNS label (use lower-case letters, digits and "-", at most 63, no dots, e.g. "my-api")'),
    finding('subdomain-64', 'service "a" {\n  cmd = "x"\n  port = 1\n  subdomain = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"\n}\n', 4, 'service "a": subdomain "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" is not a DNS label (use lower-case letters, digits and "-", at most 63, no dots, e.g. "my-api")'),
    finding('subdomain-empty', 'service "a" {\n  cmd = "x"\n  port = 1\n  subdomain = ""\n}\n', 4, 'service "a": subdomain "" is not a DNS label (use lower-case letters, digits and "-", at most 63, no dots, e.g. "my-api")'),
    finding('unknown-dependency', 'service "event" { cmd = "x" }\nservice "api" {\n  cmd = "x"\n  depends_on = [\n    "evnt",\n  ]\n}\n', 5, 'service "api": depends_on names unknown service "evnt" (did you mean "event"?)'),
    finding('depends-on-itself', 'service "api" {\n  cmd = "x"\n  depends_on = ["api"]\n}\n', 3, 'service "api" depends on itself (remove it from depends_on)'),
    finding('three-cycle', 'service "a" {\n  cmd = "x"\n  depends_on = ["b"]\n}\nservice "b" {\n  cmd = "x"\n  depends_on = ["c"]\n}\nservice "c" {\n  cmd = "x"\n  depends_on = ["a"]\n}\n', 3, 'dependency cycle: a -> b -> c -> a (remove one of these depends_on entries)'),
    finding('duplicate-service', 'service "a" { cmd = "x" }\n\nservice "a" { cmd = "y" }\n', 3, 'duplicate service "a" (first declared on line 1) (rename or merge one of them)'),
    finding('duplicate-attribute', 'service "a" {\n  cmd = "x"\n  port = 1\n  cmd = "y"\n}\n', 4, 'duplicate attribute "cmd" in service "a" (first set on line 2)'),
    finding('duplicate-env-key', 'service "a" {\n  cmd = "x"\n  env = {\n    A = "1"\n    A = "2"\n  }\n}\n', 5, 'service "a": env: duplicate key "A"'),
    finding('path-on-a-tcp-probe', 'service "a" {\n  cmd = "x"\n  port = 1\n  health {\n    type = "tcp"\n    path = "/health"\n  }\n}\n', 6, 'service "a" health: path applies to http probes only (remove it, or set type = "http")'),
    finding('tcp-probe-without-port', 'service "a" {\n  cmd = "x"\n  health {\n    type = "tcp"\n  }\n}\n', 3, 'service "a": a tcp probe needs a port (set port = ... on the service, or probe with type = "cmd" or "log")'),
    finding('http-probe-without-port', 'service "a" {\n  cmd = "x"\n  health {\n    path = "/h"\n  }\n}\n', 3, 'service "a": an http probe needs a port (set port = ... on the service, or probe with type = "cmd" or "log")'),
    finding('unknown-choice', 'service "a" {\n  cmd = "x"\n  restart = "allways"\n}\n', 3, 'service "a": restart must be one of "on-failure", "always", "never", got "allways" (did you mean "always"?)'),
    finding('bad-stop-signal', 'service "a" {\n  cmd = "x"\n  stop_signal = "SIGKILL"\n}\n', 3, 'service "a": stop_signal must be one of "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", got "SIGKILL" (did you mean "SIGINT"?)'),
    finding('service-without-a-name', 'service {\n  cmd = "x"\n}\n', 1, 'a service block needs a name (write service "api" { ... })'),
    finding('reserved-service-name', 'service "a3s" { cmd = "x" }\n', 1, 'service name "a3s" is reserved for a3s\'s own messages (pick another name)'),
    finding('A3S_PROXY_PORT', 'service "a" { cmd = "x" }\n', None, 'A3S_PROXY_PORT="http" is not a port number (0-65535; 0 turns the proxy off)', env={'A3S_PROXY_PORT': 'http'}),
    finding('missing-equals', 'service "api" {\n  cmd "x"\n  port = 3\n}\n', 2, 'syntax error at column 3: "cmd" needs "=" (an attribute) or "{" (a block): cmd "x"'),
    finding('port-auto-capital', 'service "api" {\n  cmd = "x"\n  port = "Auto"\n}\n', 3, 'service "api": port must be a whole number from 1 to 65535, or "auto", got the string "Auto" (write port = "auto")'),
    finding('dir-is-a-file', 'service "a" {\n  cmd = "x"\n  dir = "notes.txt"\n}\n', 3, 'service "a": dir "notes.txt" is a file, not a folder ({folder}/notes.txt)'),
    finding('log-max-size', 'dev {\n  log_max_size = "ten"\n}\n', 2, 'dev: log_max_size: "ten" is not a size (examples: "10MB", "512KB", "1GB")'),
    finding('log-keep', 'dev {\n  log_keep = -1\n}\n', 2, 'dev: log_keep -1 is out of range (must be a whole number of 0 or more)'),
    # containers (SPEC §14)
    finding('image-upper-case', 'service "db" {\n  image = "Postgres:16"\n}\n', 2, 'service "db": image "Postgres:16" is not an image reference (write it in lower case: "postgres:16")'),
    finding('image-with-spaces', 'service "db" {\n  image = "postgres 16"\n}\n', 2, 'service "db": image "postgres 16" is not an image reference (e.g. "postgres:16" or "ghcr.io/org/app:1.2")'),
    finding('container-port-without-image', 'service "a" {\n  cmd = "x"\n  container_port = 80\n}\n', 3, 'service "a": container_port applies to a container service only (add image = "..." or remove it)'),
    finding('container-port-range', 'service "db" {\n  image = "redis:7"\n  container_port = 70000\n}\n', 3, 'service "db": container_port 70000 is out of range (must be a whole number from 1 to 65535)'),
    finding('volumes-without-image', 'service "a" {\n  cmd = "x"\n  volumes = ["d:/data"]\n}\n', 3, 'service "a": volumes applies to a container service only (add image = "..." or remove it)'),
    finding('volume-without-target', 'service "db" {\n  image = "redis:7"\n  volumes = ["data"]\n}\n', 3, 'service "db": volume "data" is not SOURCE:TARGET[:OPTIONS] (e.g. "pgdata:/var/lib/postgresql/data" or "./init:/docker-entrypoint-initdb.d:ro")'),
    finding('volume-relative-target', 'service "db" {\n  image = "redis:7"\n  volumes = ["data:data"]\n}\n', 3, 'service "db": volume "data:data": the path in the container "data" must start with "/"'),
    finding('volume-option', 'service "db" {\n  image = "redis:7"\n  volumes = ["data:/data:r0"]\n}\n', 3, 'service "db": volume "data:/data:r0": unknown option "r0" (use "ro" or "rw")'),
    finding('volume-name', 'service "db" {\n  image = "redis:7"\n  volumes = ["my data:/data"]\n}\n', 3, 'service "db": volume "my data:/data": "my data" is neither a volume name nor a path (name volumes with letters, digits, "_", "." and "-"; start host paths with "./" or "/")'),
    finding('in-container-without-image', 'service "a" {\n  cmd = "x"\n  health {\n    command = "true"\n    in_container = true\n  }\n}\n', 5, 'service "a" health: in_container = true needs an image (add image = "..." to the service, or remove in_container)'),
    finding('in-container-http', 'service "db" {\n  image = "redis:7"\n  port = 6379\n  health {\n    type = "tcp"\n    in_container = true\n  }\n}\n', 6, 'service "db" health: in_container applies to cmd probes only (http and tcp probes reach the published port from the host)'),
    # interpolation (SPEC §13)
    finding('unknown-service-reference', 'service "db" {\n  cmd = "x"\n  port = 5432\n}\nservice "api" {\n  cmd = "serve --db ${services.dbb.port}"\n}\n', 6, 'service "api": cmd: ${services.dbb.port} names no service (did you mean "db"?)'),
    finding('unknown-service-attribute', 'service "db" {\n  cmd = "x"\n  port = 5432\n}\nservice "api" {\n  cmd = "x"\n  env = { DB = "${services.db.prot}" }\n}\n', 7, 'service "api": env: ${services.db.prot}: a service has no "prot" (did you mean "port"?)'),
    finding('reference-to-a-portless-service', 'service "worker" { cmd = "x" }\nservice "api" {\n  cmd = "x"\n  health {\n    command = "curl ${services.worker.url}"\n  }\n}\n', 4, 'service "api": health: ${services.worker.url}: worker has no port (give worker a port)'),
    finding('unset-env', 'service "api" {\n  cmd = "serve --key ${env.API_KEY}"\n}\n', 2, 'service "api": cmd: ${env.API_KEY}: API_KEY is not set in a3s\'s environment (set it, or give a default: ${env.API_KEY:-value})'),
    finding('services-in-a-path', 'service "db" {\n  cmd = "x"\n  port = 5432\n}\nservice "api" {\n  cmd = "x"\n  env_file = "${services.db.port}.env"\n}\n', 7, 'service "api": env_file: ${services.db.port} cannot be used here (only ${project} and ${env.NAME} are)'),
    finding('idle-stop-zero', 'service "a" {\n  cmd = "x"\n  port = 8000\n  idle_stop = "0s"\n}\n', 4, 'service "a": idle_stop must be more than zero (e.g. idle_stop = "15m")'),
    finding('lazy-not-bool', 'service "a" {\n  cmd = "x"\n  lazy = "yes"\n}\n', 3, 'service "a": lazy must be true or false, got the string "yes"'),
    finding('container-runtime', 'dev {\n  container_runtime = "lxc"\n}\n', 2, 'dev: container_runtime must be one of "podman", "docker", got "lxc"'),
]


@pytest.mark.parametrize(("text", "env", "line", "message"), ONE_ERROR)
def test_each_mistake_is_one_error_with_its_line_and_hint(
    tmp_path: Path, text: str, env: dict[str, str], line: int | None, message: str
) -> None:
    (tmp_path / "notes.txt").write_text("")  # a file where a folder is wanted
    assert only_error(check(text, tmp_path, env)) == (line, message.replace("{folder}", str(tmp_path)))


def test_a_container_service_reads_image_ports_volumes_and_its_own_command(tmp_path: Path) -> None:
    (tmp_path / "init").mkdir()
    report = check(
        'dev {\n  container_runtime = "docker"\n}\n'
        'service "db" {\n  image = "docker.io/library/postgres:16"\n  port = "auto"\n  container_port = 5432\n'
        '  volumes = ["pgdata:/var/lib/postgresql/data", "./init:/docker-entrypoint-initdb.d:ro", "/scratch"]\n'
        '  health {\n    command = "pg_isready -q"\n    in_container = true\n  }\n}\n'
        'service "cache" {\n  image = "redis:7"\n  cmd = "redis-server --save \'\'"\n}\n',
        tmp_path,
    )
    assert report.ok, report.lines()
    assert report.config is not None
    db, cache = report.config.services
    assert report.config.settings.container_runtime == "docker"
    assert (db.image, db.container_port, db.auto_port, db.cmd) == ("docker.io/library/postgres:16", 5432, True, "")
    assert [v.spec("shop") for v in db.volumes] == [
        "shop-pgdata:/var/lib/postgresql/data", f"{tmp_path}/init:/docker-entrypoint-initdb.d:ro", "/scratch"]
    assert db.probe is not None and db.probe.in_container and db.probe.type.value == "cmd"
    assert (cache.image, cache.cmd) == ("redis:7", "redis-server --save ''")


def test_project_and_env_are_expanded_and_service_references_resolved_once_ports_are_known(tmp_path: Path) -> None:
    from a3s_dev.config.interpolate import resolve
    from a3s_dev.config.model import with_ports

    report = check(
        'dev {\n  name = "shop"\n}\n'
        'service "db" {\n  cmd = "pg -p $PORT"\n  port = "auto"\n  proxy = false\n}\n'
        'service "api" {\n  cmd = "serve --name ${project} --home ${env.HOME} --mode ${env.MODE:-dev} ${PORT}"\n'
        '  port = 8000\n  dir = "app-${project}"\n'
        '  env = { DATABASE_URL = "postgres://127.0.0.1:${services.db.port}/app_${project}", SELF = "${services.api.url}" }\n'
        '  health {\n    path = "/health?db=${services.db.url}"\n  }\n}\n',
        tmp_path,
        {"HOME": "/home/dev"},
    )
    assert report.ok, report.lines()
    assert report.config is not None
    api = report.config.service("api")
    assert api.cmd == "serve --name shop --home /home/dev --mode dev ${PORT}"  # ${PORT}: the shell's
    assert api.dir == tmp_path / "app-shop"
    assert api.env["DATABASE_URL"] == "postgres://127.0.0.1:${services.db.port}/app_shop"  # until ports are known
    resolved = resolve(with_ports(report.config, {"db": 54321}))
    api = resolved.service("api")
    assert api.env["DATABASE_URL"] == "postgres://127.0.0.1:54321/app_shop"
    assert api.env["SELF"] == "http://api.shop.localhost:7080"  # through the proxy
    assert api.health is not None and api.health.path == "/health?db=127.0.0.1:54321"  # proxy = false


def test_valid_file_has_no_diagnostics_and_a_start_order(tmp_path: Path) -> None:
    report = check(
        """
        service "db" { cmd = "db" }
        service "api" {
          cmd = "api"
          depends_on = ["db"]
        }
        """,
        tmp_path,
    )
    assert report.ok and report.diagnostics == ()
    assert report.start_order == ("db", "api")
    assert report.config is not None


def test_syntax_error_names_line_column_and_the_text(tmp_path: Path) -> None:
    report = check(
        """
        service "api" {
          cmd = "x"
          port = = 3
        }
        """,
        tmp_path,
    )
    line, text = only_error(report)
    assert line == 4
    assert "syntax error at column" in text and "port = = 3" in text
    assert "Traceback" not in text and "lark" not in text.lower()


def test_unclosed_block_is_a_syntax_error_not_a_crash(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd = "x"\n', tmp_path)
    line, text = only_error(report)
    assert "syntax error" in text and "end of file" in text
    assert line == 2


def test_unclosed_string_is_a_syntax_error_on_its_line(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd = "x\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 2 and "syntax error" in text


def test_proxy_port_zero_is_allowed(tmp_path: Path) -> None:
    assert check("dev {\n  proxy_port = 0\n}\n", tmp_path).ok


def test_two_separate_cycles_are_both_reported(tmp_path: Path) -> None:
    report = check(
        'service "a" {\n cmd = "x"\n depends_on = ["b"]\n}\nservice "b" {\n cmd = "x"\n depends_on = ["a"]\n}\n'
        'service "c" {\n cmd = "x"\n depends_on = ["d"]\n}\nservice "d" {\n cmd = "x"\n depends_on = ["c"]\n}\n',
        tmp_path,
    )
    assert [e.text.split(" (")[0] for e in report.errors] == [
        "dependency cycle: a -> b -> a",
        "dependency cycle: c -> d -> c",
    ]


def test_every_error_of_a_file_is_reported_in_one_pass(tmp_path: Path) -> None:
    report = check(
        """\
        dev {
          stop_timeout = "forever"
        }
        service "api" {
          prot = 1
          depends_on = ["nope"]
        }
        service "web" {
          cmd = "x"
          port = 99999
          restart = "sometimes"
        }
        """,
        tmp_path,
    )
    assert [e.line for e in report.errors] == [2, 4, 5, 6, 10, 11]
    assert report.config is None


def test_missing_dir_and_watch_path_are_warnings_not_errors(tmp_path: Path) -> None:
    report = check(
        'service "a" {\n  cmd = "x"\n  dir = "nowhere"\n  watch {\n    paths = ["src"]\n  }\n}\n', tmp_path
    )
    assert report.ok and report.config is not None
    assert [(d.severity, d.line) for d in report.diagnostics] == [(Severity.WARNING, 3), (Severity.WARNING, 5)]
    assert 'dir "nowhere" does not exist' in report.warnings[0].text


def test_printed_lines_follow_the_contract_format(tmp_path: Path) -> None:
    report = check('service "a" {\n  cmd = "x"\n  prot = 1\n}\n', tmp_path)
    assert report.lines(filename="A3sfile.hcl") == [
        'A3sfile.hcl:3: error: unknown attribute "prot" in service "a" (did you mean "port"?)'
    ]


def test_json_document_shape(tmp_path: Path) -> None:
    doc = check('service "a" {\n  cmd = "x"\n  prot = 1\n}\n', tmp_path).to_json()
    assert doc["ok"] is False
    assert doc["errors"][0]["line"] == 3 and "prot" in doc["errors"][0]["message"]
    assert doc["warnings"] == [] and doc["start_order"] == []


# ---------------------------------------------------------------------------- SPEC §8: bad input, one line each


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('service "a" {\n  cmd = "echo a\\u0000b"\n}\n', 2, 'service "a": cmd holds a NUL byte'),
        ('service "a" {\n  cmd = "x"\n  dir = "\\uD800"\n}\n', 3, 'service "a": dir holds a lone surrogate (\\uD800)'),
        ('service "a" {\n  cmd = "x"\n  env = {\n    K = "v\\u0000"\n  }\n}\n', 4, 'service "a": env: K holds a NUL byte'),
        ('service "a" {\n  cmd = "x"\n  watch {\n    paths = ["ok", "b\\u0000d"]\n  }\n}\n', 4, 'service "a" watch: paths holds a NUL'),
    ],
)
def test_a_string_no_process_can_take_is_an_error_with_its_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    got_line, got = only_error(check(text, tmp_path))
    assert got_line == line and got.startswith(message), got


@pytest.mark.parametrize(
    "text",
    ["x = " + "[" * 5000 + "]" * 5000 + "\n", "".join(f"b{i} {{\n" for i in range(500)) + "}\n" * 500],
    ids=["5000-lists", "500-blocks"],
)
def test_nesting_hundreds_deep_is_one_error_never_a_recursion_error(tmp_path: Path, text: str) -> None:
    line, message = only_error(check(text, tmp_path))
    assert "nest more than 64 levels deep" in message and line is not None


def test_brackets_inside_strings_and_comments_do_not_count_as_nesting(tmp_path: Path) -> None:
    text = 'service "a" {\n  cmd = "echo ' + "{[(" * 100 + '"\n  # ' + "{" * 100 + "\n}\n"
    assert check(text, tmp_path).ok


def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    from a3s_dev.config.load import load_with_report

    path = tmp_path / "A3sfile.hcl"
    path.write_bytes(b'service "a" {\n  cmd = "caf\xe9"\n}\n')
    line, message = only_error(load_with_report(path))
    assert line == 2 and message == "not UTF-8 text: byte 0xe9 at column 13 (save the file as UTF-8)"


def test_an_env_file_that_is_a_folder_or_holds_a_nul_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "envs").mkdir()
    line, message = only_error(check('service "a" {\n  cmd = "x"\n  env_file = "envs"\n}\n', tmp_path))
    assert line == 3 and 'env_file "envs" is a folder, not a file' in message
    (tmp_path / ".env").write_bytes(b"A=1\nB=x\x00y\n")
    line, message = only_error(check('service "a" {\n  cmd = "x"\n  env_file = ".env"\n}\n', tmp_path))
    assert line == 3 and 'env_file ".env" line 2 holds a NUL byte' in message


def test_log_rotation_settings_are_read_and_checked(tmp_path: Path) -> None:
    report = check('dev {\n  log_max_size = "512KB"\n  log_keep = 5\n}\nservice "a" {\n  cmd = "x"\n}\n', tmp_path)
    assert report.ok and report.config is not None
    assert (report.config.settings.log_max_size, report.config.settings.log_keep) == (512 * 1024, 5)
    defaults = check('service "a" {\n  cmd = "x"\n}\n', tmp_path).config
    assert defaults is not None and (defaults.settings.log_max_size, defaults.settings.log_keep) == (10 * 1024**2, 3)


# ---------------------------------------------------------------------------- SPEC §5: readiness


@pytest.mark.parametrize(
    ("block", "line", "message"),
    [
        ('health {\n    type = "cmd"\n  }', 3, 'service "db" health: a cmd probe needs a command'),
        ('health {\n    type = "log"\n  }', 3, 'service "db" health: a log probe needs a pattern'),
        ('health {\n    pattern = "(unclosed"\n  }', 4, 'service "db" health: pattern "(unclosed" is not a regular expression'),
        # issue 21: `^(a+)+$` against 27 `a`s froze the supervisor's loop for seconds
        ('health {\n    pattern = "^(a+)+$"\n  }', 4, 'pattern "^(a+)+$" repeats a repetition ((a+)+), which can take exponential time'),
        ('health {\n    pattern = "(\\\\w+\\\\s?)*ready"\n  }', 4, "repeats a repetition ((\\w+\\s?)*)"),
        ('health {\n    type = "cmd"\n    command = "x"\n    path = "/h"\n  }', 6, "path applies to http probes only"),
        ('health {\n    type = "tcp"\n    pattern = "x"\n  }', 5, 'pattern applies to log probes only'),
        ('health {\n    type = "cdm"\n  }', 4, 'must be one of "http", "tcp", "cmd", "log", got "cdm" (did you mean "cmd"?)'),
        ('health {\n    command = "x"\n    on_failure = "restrat"\n  }', 5, '(did you mean "restart"?)'),
        ('health {\n    command = "x"\n    start_timeout = "soon"\n  }', 5, 'start_timeout: "soon" is not a duration'),
        ('proxy = "no"', 3, 'proxy must be true or false, got the string "no"'),
    ],
)
def test_readiness_attributes_are_checked_one_line_each(tmp_path: Path, block: str, line: int, message: str) -> None:
    text = f'service "db" {{\n  cmd = "x"\n  {block}\n  port = 5432\n}}\n'
    got_line, got = only_error(check(text, tmp_path))
    assert message in got and got_line == line, (got_line, got)


def test_cmd_and_log_probes_need_no_port_and_are_inferred_from_their_attribute(tmp_path: Path) -> None:
    text = (
        'service "db" {\n  cmd = "x"\n  proxy = false\n  health {\n    command = "pg_isready -q"\n'
        '    start_timeout = "2m"\n    on_failure = "restart"\n  }\n}\n'
        'service "search" {\n  cmd = "x"\n  health {\n    pattern = "listening on .*:\\\\d+"\n  }\n}\n'
    )
    report = check(text, tmp_path)
    assert report.ok, report.lines()
    assert report.config is not None
    db, search = report.config.services
    assert db.health is not None and db.health.type.value == "cmd" and db.health.command == "pg_isready -q"
    assert db.health.start_timeout == 120.0 and db.health.on_failure.value == "restart" and db.proxy is False
    assert search.health is not None and search.health.type.value == "log" and search.health.pattern == "listening on .*:\\d+"
    assert search.health.start_timeout == 300.0  # the default, 5m


def test_a_service_that_is_not_http_shows_no_http_url(tmp_path: Path) -> None:
    report = check('service "db" {\n  cmd = "x"\n  port = 5432\n  proxy = false\n}\n', tmp_path)
    assert report.config is not None
    db = report.config.services[0]
    assert db.url == "127.0.0.1:5432" and db.proxy_url(7080, "shop") is None


def test_depends_on_as_a_map_of_conditions(tmp_path: Path) -> None:
    text = (
        'service "db" {\n  cmd = "x"\n}\nservice "migrate" {\n  cmd = "x"\n  oneshot = true\n}\n'
        'service "cache" {\n  cmd = "x"\n}\n'
        'service "api" {\n  cmd = "x"\n  depends_on = { db = "healthy", migrate = "completed", cache = "started" }\n}\n'
    )
    report = check(text, tmp_path)
    assert report.ok, report.lines()
    assert report.config is not None
    api = report.config.service("api")
    assert api.depends_on == ("db", "migrate", "cache")
    assert {k: v.value for k, v in api.conditions.items()} == {"db": "healthy", "migrate": "completed", "cache": "started"}
    assert report.start_order[-1] == "api"


@pytest.mark.parametrize(
    ("deps", "message"),
    [
        ('{ db = "helthy" }', 'depends_on: db: "helthy" is not a condition (one of started, healthy, completed) (did you mean "healthy"?)'),
        ('{ db = "completed" }', 'depends_on db = "completed", but db is not a task (oneshot) and never completes'),
        ('{ dbb = "healthy" }', 'depends_on names unknown service "dbb" (did you mean "db"?)'),
    ],
)
def test_a_bad_condition_is_one_line_with_a_suggestion(tmp_path: Path, deps: str, message: str) -> None:
    text = f'service "db" {{\n  cmd = "x"\n}}\nservice "api" {{\n  cmd = "x"\n  depends_on = {deps}\n}}\n'
    line, got = only_error(check(text, tmp_path))
    assert line == 6 and message in got, got


def test_port_auto_is_read_and_checked(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd = "x"\n  port = "auto"\n}\nservice "b" {\n  cmd = "x"\n  port = "auto"\n}\n', tmp_path)
    assert report.ok, report.lines()  # two automatic ports are no conflict
    assert report.config is not None
    api = report.config.service("api")
    assert api.auto_port and api.port is None and api.subdomain == "api" and api.probe is not None


def test_an_env_file_that_is_a_fifo_or_a_device_is_an_error_and_is_never_opened(tmp_path: Path) -> None:
    """Issue 21: a FIFO (a secret manager's pattern) hung `up` in open(); /dev/zero grew until
    the OOM killer; `validate` said they "do not exist"."""
    import os

    from a3s_dev.core.service_env import read_env_file
    from a3s_dev.errors import RuntimeFailure

    os.mkfifo(tmp_path / "secrets.env")  # nobody ever writes it: opening it would block for good
    line, message = only_error(check('service "a" {\n  cmd = "x"\n  env_file = "secrets.env"\n}\n', tmp_path))
    assert line == 3 and 'env_file "secrets.env" is a FIFO, not a regular file' in message
    line, message = only_error(check('service "a" {\n  cmd = "x"\n  env_file = "/dev/zero"\n}\n', tmp_path))
    assert line == 3 and "is a device or a socket, not a regular file" in message
    with pytest.raises(RuntimeFailure, match="a FIFO, not a regular file"):
        read_env_file(tmp_path / "secrets.env")
    with pytest.raises(RuntimeFailure, match="a character device, not a regular file"):
        read_env_file(Path("/dev/zero"))
    (tmp_path / "huge.env").write_bytes(b"A=" + b"x" * (1 << 20) + b"\n")
    with pytest.raises(RuntimeFailure, match="more than an env file holds"):
        read_env_file(tmp_path / "huge.env")


@pytest.mark.parametrize(
    ("pattern", "nested"),
    [
        ("^(a+)+$", "(a+)+"),
        ("(a*)*", "(a*)*"),
        ("(a+){2,}", "(a+){2,}"),
        ("((x+)y)+z", "((x+)y)+"),
        ("listening on port \\d+", None),
        ("(GET|POST) /\\S+ 200", None),
        ("(ab)+", None),
        ("[(a+)]+", None),  # a character class: no group in it
        ("\\(a+\\)+", None),  # escaped parentheses
        ("(a+){1}", None),  # once is not a repetition
        ("(?:x+y)?", None),
    ],
)
def test_a_repetition_inside_a_repeated_group_is_found(pattern: str, nested: str | None) -> None:
    from a3s_dev.config.patterns import nested_repetition

    assert nested_repetition(pattern) == nested
