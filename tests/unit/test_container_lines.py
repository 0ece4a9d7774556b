"""The container CLI's command lines and environment (SPEC §14), without a runtime."""

from __future__ import annotations

from pathlib import Path

from a3s_dev.config.model import DevConfig, GlobalSettings, ServiceDef, Volume
from a3s_dev.core.containers import (
    CLIENT_VARIABLES,
    client_env,
    container_env,
    container_name,
    exec_argv,
    find_runtime,
    run_argv,
)


def config_of(tmp_path: Path, *services: ServiceDef, runtime: str | None = None) -> DevConfig:
    return DevConfig(tmp_path / "A3sfile.hcl", GlobalSettings(name="shop", container_runtime=runtime), services)


def db(tmp_path: Path, **extra: object) -> ServiceDef:
    fields: dict[str, object] = {
        "name": "db", "cmd": "", "dir": tmp_path, "image": "postgres:16", "port": 15432, "container_port": 5432,
        "stop_signal": "SIGINT", "stop_timeout": 2.5,
        "volumes": (Volume("pgdata", "/var/lib/postgresql/data", named=True), Volume(str(tmp_path / "init"), "/init", "ro")),
        "env": {"POSTGRES_PASSWORD": "secret", "PATH": "/opt/bin"},
    }
    fields.update(extra)
    return ServiceDef(**fields)  # type: ignore[arg-type]


def test_the_run_line_names_labels_publishes_on_loopback_and_keeps_values_off_the_command_line(tmp_path: Path) -> None:
    svc = db(tmp_path)
    config = config_of(tmp_path, svc)
    env = container_env(svc, config)
    argv = run_argv("/usr/bin/podman", svc, config, env)
    assert argv[:4] == ["/usr/bin/podman", "run", "--rm", "--init"]
    line = " ".join(argv)
    assert "--name a3s-shop-db --replace" in line
    assert f"--label dev.a3s.project=shop --label dev.a3s.a3sfile={tmp_path}/A3sfile.hcl --label dev.a3s.service=db" in line
    assert "--stop-signal SIGINT --stop-timeout 3" in line  # whole seconds, rounded up
    assert "--publish 127.0.0.1:15432:5432" in line
    assert f"--volume shop-pgdata:/var/lib/postgresql/data --volume {tmp_path}/init:/init:ro" in line
    assert "secret" not in line and "--env POSTGRES_PASSWORD " in line  # by name: ps shows no value
    assert "--env PATH=/opt/bin" in line  # the client needs its own PATH
    assert argv[-1] == "postgres:16"  # no cmd: the image's own command
    client = client_env(env, base={"PATH": "/usr/bin", "HOME": "/root"})
    assert client["POSTGRES_PASSWORD"] == "secret" and client["PATH"] == "/usr/bin"
    assert env == {"POSTGRES_PASSWORD": "secret", "PATH": "/opt/bin", "A3S_SERVICE": "db", "PORT": "5432"}


def test_cmd_is_split_like_a_shell_line_and_docker_gets_no_replace(tmp_path: Path) -> None:
    svc = db(tmp_path, cmd="redis-server --save '' --port 6379", volumes=(), env={})
    argv = run_argv("/usr/bin/docker", svc, config_of(tmp_path, svc), container_env(svc, config_of(tmp_path, svc)))
    assert argv[argv.index("postgres:16") + 1:] == ["redis-server", "--save", "", "--port", "6379"]
    assert "--replace" not in argv


def test_a_one_off_is_a_new_named_container_with_no_port_and_an_interactive_service_gets_a_tty(tmp_path: Path) -> None:
    svc = db(tmp_path, volumes=(), env={})
    argv = run_argv("podman", svc, config_of(tmp_path, svc), {}, command=["psql", "-c", "select 1"], name="a3s-shop-db-run-7")
    assert "--publish" not in argv and "--replace" not in argv and "--stop-signal" not in argv
    assert argv[argv.index("--name") + 1] == "a3s-shop-db-run-7"
    assert "--interactive" in argv and "--tty" not in argv
    assert argv[-4:] == ["postgres:16", "psql", "-c", "select 1"]
    interactive = db(tmp_path, interactive=True, volumes=(), env={})
    assert "--tty" in run_argv("podman", interactive, config_of(tmp_path, interactive), {})


def test_the_runtime_is_the_chosen_one_else_podman_else_docker(tmp_path: Path) -> None:
    def on_path(*names: str):  # type: ignore[no-untyped-def]
        return lambda name: f"/usr/bin/{name}" if name in names else None

    assert find_runtime(None, on_path("podman", "docker")) == "/usr/bin/podman"
    assert find_runtime(None, on_path("docker")) == "/usr/bin/docker"
    assert find_runtime("docker", on_path("podman", "docker")) == "/usr/bin/docker"
    assert find_runtime("docker", on_path("podman")) is None
    assert find_runtime(None, on_path()) is None


def test_exec_runs_through_the_containers_shell_and_names_are_per_project() -> None:
    assert exec_argv("podman", "shop", "db", "pg_isready -q") == ["podman", "exec", "a3s-shop-db", "/bin/sh", "-c", "pg_isready -q"]
    assert container_name("blog", "db") != container_name("shop", "db")
    assert "PATH" in CLIENT_VARIABLES and "CONTAINERS_CONF" in CLIENT_VARIABLES
