"""The loader: defaults of SPEC §1, paths, env values, A3S_PROXY_PORT, file discovery, durations."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from a3s_dev.config.load import load, load_with_report
from a3s_dev.config.model import DevConfig, HealthConfig, ProbeKind, RestartMode, parse_duration
from a3s_dev.errors import A3sError, ConfigError
from a3s_dev.run.workspace import find_file

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]


def write(folder: Path, text: str, name: str = "A3sfile.hcl") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1m", 60.0), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5),
     ("3", 3.0), (3, 3.0), (0.5, 0.5), ("0", 0.0), (" 2s ", 2.0)],
)
def test_parse_duration_accepts_the_contract_forms(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5 s", "5x", "1s2", "-1", "-1s", "ms", "1m30", True])
def test_parse_duration_rejects_everything_else(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


# ---------------------------------------------------------------- defaults


def test_defaults_of_the_contract_are_applied(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, 'service "api" {\n  cmd = "run"\n  port = 8080\n}\nservice "w" { cmd = "w" }\n'), environ={})
    assert cfg.settings.proxy_port == 7080 and cfg.settings.log_level == "info" and cfg.settings.stop_timeout == 5.0
    api, w = cfg.services
    assert api.dir == tmp_path and api.subdomain == "api" and api.restart is RestartMode.ON_FAILURE
    assert api.stop_signal == "SIGTERM" and api.stop_timeout == 5.0 and not api.oneshot
    assert api.health is None and api.probe == HealthConfig(type=ProbeKind.TCP)
    assert w.port is None and w.subdomain is None and w.probe is None


def test_oneshot_defaults_to_restart_never(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, 'service "m" {\n  cmd = "m"\n  oneshot = true\n}\n'), environ={})
    assert cfg.services[0].oneshot and cfg.services[0].restart is RestartMode.NEVER


def test_service_stop_timeout_defaults_to_the_dev_one(tmp_path: Path) -> None:
    cfg = load(
        write(tmp_path, 'dev {\n  stop_timeout = "7s"\n}\nservice "a" { cmd = "x" }\nservice "b" {\n  cmd = "x"\n  stop_timeout = "250ms"\n}\n'),
        environ={},
    )
    assert [s.stop_timeout for s in cfg.services] == [7.0, 0.25]


def test_declaration_order_is_kept(tmp_path: Path) -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    text = "".join(f'service "{n}" {{ cmd = "x" }}\n' for n in names)
    assert load(write(tmp_path, text), environ={}).names == tuple(names)


def test_env_values_become_strings(tmp_path: Path) -> None:
    cfg = load(
        write(tmp_path, 'service "a" {\n  cmd = "x"\n  env = { S = "s", I = 4, F = 1.5, T = true, N = false, "DOTTED.KEY" = "d" }\n}\n'),
        environ={},
    )
    assert dict(cfg.services[0].env) == {"S": "s", "I": "4", "F": "1.5", "T": "true", "N": "false", "DOTTED.KEY": "d"}


def test_paths_are_absolute_against_the_a3sfile_folder(tmp_path: Path) -> None:
    (tmp_path / "svc" / "src").mkdir(parents=True)
    (tmp_path / "svc" / ".env").write_text("A=1\n")
    cfg = load(
        write(
            tmp_path,
            """
            service "a" {
              cmd      = "x"
              dir      = "svc"
              env_file = ".env"
              watch {
                paths  = ["svc/src"]
                ignore = ["*.tmp"]
                restart = false
                debounce = "200ms"
              }
            }
            """,
        ),
        environ={},
    )
    svc = cfg.services[0]
    assert svc.dir == tmp_path / "svc"
    assert svc.env_file == tmp_path / "svc" / ".env"  # relative to dir
    assert svc.watch is not None and svc.watch.paths == (tmp_path / "svc" / "src",)
    assert svc.watch.ignore == ("*.tmp",) and svc.watch.restart is False and svc.watch.debounce == 0.2


def test_watch_without_paths_watches_the_service_dir(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    cfg = load(write(tmp_path, 'service "a" {\n  cmd = "x"\n  dir = "svc"\n  watch {}\n}\n'), environ={})
    assert cfg.services[0].watch is not None and cfg.services[0].watch.paths == (tmp_path / "svc",)


def test_health_block_values_and_http_inferred_from_path(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            'service "a" {\n  cmd = "x"\n  port = 5000\n  health {\n    path = "/health"\n    interval = "1s"\n    timeout = "300ms"\n    retries = 5\n  }\n}\n',
        ),
        environ={},
    )
    assert cfg.services[0].health == HealthConfig(ProbeKind.HTTP, "/health", 1.0, 0.3, 5)


def test_name_with_underscore_gets_a_dns_safe_default_subdomain(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, 'service "My_Api" {\n  cmd = "x"\n  port = 5000\n}\n'), environ={})
    assert cfg.services[0].subdomain == "my-api"


def test_stop_signal_is_normalized(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, 'service "a" {\n  cmd = "x"\n  stop_signal = "int"\n}\n'), environ={})
    assert cfg.services[0].stop_signal == "SIGINT"


def test_strings_keep_shell_templates_and_unescape(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, 'service "a" {\n  cmd = "serve --port ${PORT} \\"q\\"\\tx"\n}\n'), environ={})
    assert cfg.services[0].cmd == 'serve --port ${PORT} "q"\tx'


def test_heredoc_cmd(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, 'service "a" {\n  cmd = <<-EOT\n    echo one\n    echo two\n  EOT\n}\n'), environ={})
    assert cfg.services[0].cmd == "echo one\necho two\n"


def test_comments_of_every_kind(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, '# one\n// two\n/* three\n */\nservice "a" { cmd = "x" } # four\n'), environ={})
    assert cfg.names == ("a",)


# ---------------------------------------------------------------- proxy port override


def test_a3s_proxy_port_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'dev {\n  proxy_port = 7080\n}\nservice "a" { cmd = "x" }\n')
    assert load(path, environ={"A3S_PROXY_PORT": "9090"}).settings.proxy_port == 9090
    assert load(path, environ={"A3S_PROXY_PORT": "0"}).settings.proxy_port == 0
    assert load(path, environ={}).settings.proxy_port == 7080


def test_https_is_off_unless_the_file_or_a3s_https_turns_it_on(tmp_path: Path) -> None:
    plain = write(tmp_path, 'service "a" { cmd = "x" }\n')
    assert (load(plain, environ={}).settings.https, load(plain, environ={}).settings.https_port) == (False, 7443)
    assert load(plain, environ={"A3S_HTTPS": "1"}).settings.https is True
    on = tmp_path / "on.hcl"
    on.write_text('dev {\n  https = true\n  https_port = 8443\n}\nservice "a" { cmd = "x" }\n')
    settings = load(on, environ={}).settings
    assert (settings.https, settings.https_port) == (True, 8443)
    assert load(on, environ={"A3S_HTTPS": "0"}).settings.https is False


def test_load_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3S_PROXY_PORT", "7181")
    assert load(write(tmp_path, 'service "a" { cmd = "x" }\n')).settings.proxy_port == 7181


# ---------------------------------------------------------------- errors


def test_load_raises_one_line_per_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'service "a" {\n  prot = 1\n}\nservice "b" {\n  cmd = "x"\n  port = 0\n}\n')
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    lines = info.value.message.splitlines()
    assert len(lines) == 3
    assert all(": error: " in ln for ln in lines)
    assert [ln.split(":")[1] for ln in lines] == ["1", "2", "6"]
    assert isinstance(info.value, A3sError)


def test_load_with_report_keeps_warnings(tmp_path: Path) -> None:
    report = load_with_report(write(tmp_path, 'service "a" {\n  cmd = "x"\n  dir = "gone"\n}\n'), environ={})
    assert report.ok and len(report.warnings) == 1 and isinstance(report.config, DevConfig)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nope.hcl")


# ---------------------------------------------------------------- discovery


def test_find_file_prefers_the_explicit_path(tmp_path: Path) -> None:
    other = write(tmp_path, "", name="other.hcl")
    write(tmp_path, "")
    assert find_file(Path("other.hcl"), cwd=tmp_path, environ={"A3S_FILE": "x"}) == other


def test_find_file_uses_a3s_file_next(tmp_path: Path) -> None:
    env_file = write(tmp_path, "", name="env.hcl")
    write(tmp_path, "")
    assert find_file(None, cwd=tmp_path, environ={"A3S_FILE": str(env_file)}) == env_file


def test_find_file_searches_parent_folders(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_file(None, cwd=deep, environ={}) == path


def test_find_file_accepts_a_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert find_file(tmp_path, cwd=Path("/"), environ={}) == path


def test_find_file_explains_when_there_is_none(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no A3sfile.hcl in .* or any parent folder"):
        find_file(None, cwd=tmp_path, environ={})
    with pytest.raises(ConfigError, match="given by A3S_FILE"):
        find_file(None, cwd=tmp_path, environ={"A3S_FILE": "missing.hcl"})
    with pytest.raises(ConfigError, match="given by --file"):
        find_file(Path("missing.hcl"), cwd=tmp_path, environ={})


# ---------------------------------------------------------------- bundled examples


@pytest.mark.parametrize("rel", ["A3sfile.hcl", "examples/quickstart/A3sfile.hcl", "examples/monorepo/A3sfile.hcl", "examples/containers/A3sfile.hcl"])
def test_bundled_examples_are_valid_without_warnings(rel: str) -> None:
    report = load_with_report(ROOT / rel, environ={})
    assert report.ok and report.diagnostics == (), report.lines()


def test_monorepo_example_has_the_eight_services_in_a_sensible_order() -> None:
    cfg = load(ROOT / "examples/monorepo/A3sfile.hcl", environ={})
    assert set(cfg.names) == {"gateway", "power", "search", "event", "lane", "safeclaw", "box", "os"}
    from a3s_dev.config.graph import start_order

    order = start_order(cfg)
    assert order[0] == "event" and order[-1] == "gateway"
    assert all(s.watch is not None and s.port is not None for s in cfg.services)


def test_crlf_line_endings_and_a_byte_order_mark_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "A3sfile.hcl"
    path.write_bytes(b'\xef\xbb\xbfservice "a" {\r\n  cmd = "x"\r\n  port = 3000\r\n}\r\n')
    cfg = load(path, environ={})
    assert cfg.services[0].cmd == "x" and cfg.services[0].port == 3000


def test_empty_file_is_valid_with_a_warning(tmp_path: Path) -> None:
    report = load_with_report(write(tmp_path, ""), environ={})
    assert report.ok and report.config is not None and report.config.services == ()
    assert [w.text.split(" (")[0] for w in report.warnings] == ["no services declared"]


def test_an_automatic_port_is_never_one_browsers_refuse() -> None:
    from a3s_dev.config.model import BROWSER_BLOCKED_PORTS

    assert {6000, 6665, 6666, 6667, 6668, 6669, 10080} <= BROWSER_BLOCKED_PORTS
