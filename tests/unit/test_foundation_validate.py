"""Every validation message of SPEC §1: one test each, asserting the line and the suggestion."""

from __future__ import annotations

import textwrap
from pathlib import Path

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


def test_unknown_attribute_suggests_the_closest_name(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd = "x"\n  prot = 8080\n}\n', tmp_path)
    assert only_error(report) == (3, 'unknown attribute "prot" in service "api" (did you mean "port"?)')


def test_unknown_block_suggests_the_closest_name(tmp_path: Path) -> None:
    report = check('services "api" {\n  cmd = "x"\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 1 and 'unknown block "services"' in text and 'did you mean "service"?' in text


def test_unknown_nested_block_suggests_health(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd = "x"\n  port = 1234\n  heath {\n  }\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 4 and 'unknown block "heath"' in text and '"health"' in text


def test_attribute_misplaced_at_top_level_says_where_it_belongs(tmp_path: Path) -> None:
    report = check('proxy_port = 7000\nservice "a" { cmd = "x" }\n', tmp_path)
    line, text = only_error(report)
    assert line == 1 and "dev block" in text


def test_missing_cmd_points_at_the_service(tmp_path: Path) -> None:
    report = check('service "a" { cmd = "x" }\n\nservice "api" {\n  port = 8080\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 3 and 'service "api" has no cmd' in text


def test_wrong_type_names_expected_and_actual(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd = 3\n}\n', tmp_path)
    assert only_error(report) == (2, 'service "api": cmd must be a string, got the number 3')


def test_quoted_port_is_a_type_error_with_a_fix(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd = "x"\n  port = "8080"\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 3 and "whole number" in text and "write 8080 without quotes" in text


def test_depends_on_as_a_string_suggests_a_list(tmp_path: Path) -> None:
    report = check('service "db" { cmd = "x" }\nservice "api" {\n  cmd = "x"\n  depends_on = "db"\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 4 and 'write ["db"]' in text


def test_expression_is_rejected_because_nothing_is_evaluated(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd = "x"\n  port = var.port\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 3 and "var.port" in text and "literal" in text


def test_bad_duration_names_the_value(tmp_path: Path) -> None:
    report = check('dev {\n  stop_timeout = "5 secs"\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 2 and '"5 secs" is not a duration' in text


def test_bad_duration_in_health_block(tmp_path: Path) -> None:
    report = check('service "a" {\n  cmd = "x"\n  port = 3000\n  health {\n    interval = "2x"\n  }\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 5 and "interval" in text and '"2x"' in text


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_service_port_outside_1_65535(tmp_path: Path, port: str) -> None:
    report = check(f'service "api" {{\n  cmd = "x"\n  port = {port}\n}}\n', tmp_path)
    line, text = only_error(report)
    assert line == 3 and f"port {port} is out of range" in text and "1 to 65535" in text


def test_proxy_port_zero_is_allowed_but_not_70000(tmp_path: Path) -> None:
    assert check("dev {\n  proxy_port = 0\n}\n", tmp_path).ok
    line, text = only_error(check("dev {\n  proxy_port = 70000\n}\n", tmp_path))
    assert line == 2 and "0 to 65535" in text


def test_https_settings_are_checked(tmp_path: Path) -> None:
    line, message = only_error(check('dev {\n  https = "yes"\n}\nservice "a" { cmd = "x" }\n', tmp_path))
    assert line == 2 and "dev: https must be true or false" in message
    line, message = only_error(check('dev {\n  https_port = 0\n}\nservice "a" { cmd = "x" }\n', tmp_path))
    assert line == 2 and "https_port" in message and "1 to 65535" in message
    _, message = only_error(check('service "a" { cmd = "x" }\n', tmp_path, {"A3S_HTTPS": "maybe"}))
    assert message == 'A3S_HTTPS="maybe" is not 1 or 0'


def test_two_services_on_one_port(tmp_path: Path) -> None:
    report = check(
        'service "a" {\n  cmd = "x"\n  port = 8080\n}\nservice "b" {\n  cmd = "x"\n  port = 8080\n}\n', tmp_path
    )
    line, text = only_error(report)
    assert line == 7 and 'port 8080 is already used by service "a" (line 3)' in text


def test_service_on_the_proxy_port(tmp_path: Path) -> None:
    report = check('dev {\n  proxy_port = 9000\n}\nservice "a" {\n  cmd = "x"\n  port = 9000\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 6 and "proxy's port" in text


def test_two_services_on_one_subdomain(tmp_path: Path) -> None:
    report = check(
        'service "a" {\n  cmd = "x"\n  port = 1\n  subdomain = "web"\n}\n'
        'service "web" {\n  cmd = "x"\n  port = 2\n}\n',
        tmp_path,
    )
    line, text = only_error(report)
    assert line == 6 and 'subdomain "web" is already used by service "a" (line 4)' in text


@pytest.mark.parametrize("sub", ["my_api", "a.b", "-x", "x" * 64, ""])
def test_subdomain_must_be_a_dns_label(tmp_path: Path, sub: str) -> None:
    report = check(f'service "a" {{\n  cmd = "x"\n  port = 1\n  subdomain = "{sub}"\n}}\n', tmp_path)
    line, text = only_error(report)
    assert line == 4 and "is not a DNS label" in text


def test_unknown_dependency_suggests_the_closest_service(tmp_path: Path) -> None:
    report = check(
        'service "event" { cmd = "x" }\nservice "api" {\n  cmd = "x"\n  depends_on = [\n    "evnt",\n  ]\n}\n',
        tmp_path,
    )
    assert only_error(report) == (5, 'service "api": depends_on names unknown service "evnt" (did you mean "event"?)')


def test_dependency_on_itself(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd = "x"\n  depends_on = ["api"]\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 3 and 'service "api" depends on itself' in text


def test_three_cycle_is_printed_as_a_path(tmp_path: Path) -> None:
    report = check(
        'service "a" {\n  cmd = "x"\n  depends_on = ["b"]\n}\n'
        'service "b" {\n  cmd = "x"\n  depends_on = ["c"]\n}\n'
        'service "c" {\n  cmd = "x"\n  depends_on = ["a"]\n}\n',
        tmp_path,
    )
    line, text = only_error(report)
    assert line == 3 and "dependency cycle: a -> b -> c -> a" in text


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


def test_duplicate_service_names(tmp_path: Path) -> None:
    report = check('service "a" { cmd = "x" }\n\nservice "a" { cmd = "y" }\n', tmp_path)
    line, text = only_error(report)
    assert line == 3 and 'duplicate service "a" (first declared on line 1)' in text


def test_duplicate_attribute_is_caught_although_hcl2_would_merge_it(tmp_path: Path) -> None:
    report = check('service "a" {\n  cmd = "x"\n  port = 1\n  cmd = "y"\n}\n', tmp_path)
    assert only_error(report) == (4, 'duplicate attribute "cmd" in service "a" (first set on line 2)')


def test_duplicate_key_in_env_map(tmp_path: Path) -> None:
    report = check('service "a" {\n  cmd = "x"\n  env = {\n    A = "1"\n    A = "2"\n  }\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 5 and 'duplicate key "A"' in text


def test_health_path_on_a_tcp_probe(tmp_path: Path) -> None:
    report = check(
        'service "a" {\n  cmd = "x"\n  port = 1\n  health {\n    type = "tcp"\n    path = "/health"\n  }\n}\n',
        tmp_path,
    )
    line, text = only_error(report)
    assert line == 6 and "path applies to http probes only" in text


def test_health_without_port(tmp_path: Path) -> None:
    report = check('service "a" {\n  cmd = "x"\n  health {\n    type = "tcp"\n  }\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 3 and "needs a port" in text


def test_unknown_choice_suggests_the_closest(tmp_path: Path) -> None:
    report = check('service "a" {\n  cmd = "x"\n  restart = "allways"\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 3 and 'did you mean "always"?' in text


def test_bad_stop_signal(tmp_path: Path) -> None:
    report = check('service "a" {\n  cmd = "x"\n  stop_signal = "SIGKILL"\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 3 and "stop_signal" in text and '"SIGTERM"' in text


def test_service_without_a_name(tmp_path: Path) -> None:
    report = check('service {\n  cmd = "x"\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 1 and "needs a name" in text


def test_reserved_service_name(tmp_path: Path) -> None:
    line, text = only_error(check('service "a3s" { cmd = "x" }\n', tmp_path))
    assert line == 1 and "reserved" in text


def test_bad_proxy_port_override_is_an_error_without_line(tmp_path: Path) -> None:
    report = check('service "a" { cmd = "x" }\n', tmp_path, {"A3S_PROXY_PORT": "http"})
    line, text = only_error(report)
    assert line is None and "A3S_PROXY_PORT" in text


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


def test_missing_equals_points_at_the_attribute_not_the_next_line(tmp_path: Path) -> None:
    report = check('service "api" {\n  cmd "x"\n  port = 3\n}\n', tmp_path)
    line, text = only_error(report)
    assert line == 2 and '"cmd" needs "="' in text


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


def test_a_dir_that_is_a_file_is_an_error_not_a_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("")
    line, message = only_error(check('service "a" {\n  cmd = "x"\n  dir = "notes.txt"\n}\n', tmp_path))
    assert line == 3 and 'dir "notes.txt" is a file, not a folder' in message


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
    line, message = only_error(check('dev {\n  log_max_size = "ten"\n}\n', tmp_path))
    assert line == 2 and 'dev: log_max_size: "ten" is not a size' in message
    line, message = only_error(check("dev {\n  log_keep = -1\n}\n", tmp_path))
    assert line == 2 and "log_keep -1 is out of range" in message


# ---------------------------------------------------------------------------- SPEC §5: readiness


@pytest.mark.parametrize(
    ("block", "line", "message"),
    [
        ('health {\n    type = "cmd"\n  }', 3, 'service "db" health: a cmd probe needs a command'),
        ('health {\n    type = "log"\n  }', 3, 'service "db" health: a log probe needs a pattern'),
        ('health {\n    pattern = "(unclosed"\n  }', 4, 'service "db" health: pattern "(unclosed" is not a regular expression'),
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


def test_an_http_probe_still_needs_a_port(tmp_path: Path) -> None:
    line, message = only_error(check('service "a" {\n  cmd = "x"\n  health {\n    path = "/h"\n  }\n}\n', tmp_path))
    assert line == 3 and "an http probe needs a port" in message


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
    line, message = only_error(check('service "api" {\n  cmd = "x"\n  port = "Auto"\n}\n', tmp_path))
    assert line == 3 and 'write port = "auto"' in message
