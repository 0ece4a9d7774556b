"""`a3s export` as pure functions (SPEC §15): one A3sfile in, Compose and Kubernetes documents and
the report out, feature by feature. The schemas check the same documents in
tests/integration/test_export.py."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from a3s_dev.config.validate import check_text
from a3s_dev.export import compose, kubernetes
from a3s_dev.export.common import Export, Source

STACK = (Path(__file__).parent.parent / "golden" / "export-stack.hcl").read_text()  # also exported in CI, schemas checked


@pytest.fixture
def source(tmp_path: Path) -> Source:
    (tmp_path / "db.env").write_text("POSTGRES_USER=shop\nPOSTGRES_DB=app\n")
    (tmp_path / "init").mkdir()
    path = tmp_path / "A3sfile.hcl"
    path.write_text(STACK)
    report = check_text(STACK, path, {}, order=False)
    assert report.config is not None, report.lines()
    return Source(report.config, report.positions)


def line_of(text: str) -> int:
    return next(i for i, line in enumerate(STACK.splitlines(), 1) if text in line)


def said(result: Export) -> dict[str, int | None]:
    return {f"{f.service}: {f.message}": f.line for f in result.findings}


def one(result: Export, needle: str) -> int | None:
    found = [line for message, line in said(result).items() if needle in message]
    assert len(found) == 1, (needle, said(result))
    return found[0]


# ---------------------------------------------------------------------------- compose


def test_compose_maps_image_command_env_ports_volumes_and_stop(source: Source, tmp_path: Path) -> None:
    result = compose.export(source, base=tmp_path)
    doc = result.files["compose.yaml"][0]
    assert doc["name"] == "shop" and list(doc["services"]) == ["db", "migrate", "api", "cache", "tail"]
    db = doc["services"]["db"]
    assert db["image"] == "postgres:16" and "command" not in db
    assert db["environment"] == {"POSTGRES_PASSWORD": "dev", "A3S_SERVICE": "db", "PORT": "5432"}
    assert db["env_file"] == ["./db.env"]
    assert db["ports"] == ["127.0.0.1:15432:5432"]
    assert db["volumes"] == ["pgdata:/var/lib/postgresql/data", "./init:/docker-entrypoint-initdb.d:ro", "/scratch"]
    assert doc["volumes"] == {"pgdata": {}}
    assert (db["stop_signal"], db["stop_grace_period"]) == ("SIGINT", "20s")
    api = doc["services"]["api"]
    assert api["command"] == ["gunicorn", "app:app", "--bind", "0.0.0.0:8000"]
    assert api["ports"] == ["127.0.0.1::8000"]  # "auto": a free host port


def test_compose_conditions_and_restart_policies(source: Source, tmp_path: Path) -> None:
    doc = compose.export(source, base=tmp_path).files["compose.yaml"][0]
    api = doc["services"]["api"]
    assert api["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "db": {"condition": "service_healthy"},
        "cache": {"condition": "service_started"},
    }
    assert doc["services"]["migrate"]["restart"] == "no"  # a oneshot
    assert doc["services"]["db"]["restart"] == "on-failure"
    assert doc["services"]["tail"]["restart"] == "no"


def test_compose_healthcheck_from_a_cmd_probe_and_the_report_of_what_has_none(source: Source, tmp_path: Path) -> None:
    result = compose.export(source, base=tmp_path)
    services = result.files["compose.yaml"][0]["services"]
    assert services["db"]["healthcheck"] == {
        "test": ["CMD-SHELL", "pg_isready -q"], "interval": "3s", "timeout": "1s", "retries": 3, "start_period": "1m",
    }
    assert "healthcheck" not in services["api"]
    assert one(result, "http probe (GET /health)") == line_of("path       = \"/health\"") - 1  # the health block
    assert one(result, "log probe") == line_of('pattern = "ready"') - 1
    assert one(result, "watch: restarts on file change") == line_of("watch {")
    assert one(result, "web: a host process") == line_of('cmd        = "npm run dev"')
    assert result.ok


# ---------------------------------------------------------------------------- kubernetes


def kinds(result: Export) -> dict[str, list[str]]:
    return {name: [f"{d['kind']}/{d['metadata']['name']}" for d in docs] for name, docs in result.files.items()}


def workload(result: Export, name: str) -> dict[str, Any]:
    return next(d for d in result.files[f"{name}.yaml"] if d["kind"] in ("Deployment", "Job"))


def container(result: Export, name: str) -> dict[str, Any]:
    spec = workload(result, name)["spec"]["template"]["spec"]
    return spec["containers"][0]


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_kubernetes_objects_per_service_a_job_for_a_oneshot_and_pvcs(source: Source) -> None:
    result = kubernetes.export(source, read_env=read_env, namespace="shop-dev", domain="dev.example.com")
    assert kinds(result) == {
        "00-namespace.yaml": ["Namespace/shop-dev"],
        "01-volumes.yaml": ["PersistentVolumeClaim/pgdata"],
        "api.yaml": ["Deployment/api", "Service/api"],
        "cache.yaml": ["Deployment/cache", "Service/cache"],
        "db.yaml": ["ConfigMap/db-env", "Deployment/db", "Service/db"],
        "ingress.yaml": ["Ingress/shop"],
        "migrate.yaml": ["Job/migrate"],
        "tail.yaml": ["Deployment/tail"],
    }
    assert all(d["metadata"].get("namespace") == "shop-dev" for docs in list(result.files.values())[1:] for d in docs)
    job = workload(result, "migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert result.files["db.yaml"][0]["data"] == {"POSTGRES_USER": "shop", "POSTGRES_DB": "app"}
    db = container(result, "db")
    assert db["envFrom"] == [{"configMapRef": {"name": "db-env"}}]
    assert {"name": "POSTGRES_PASSWORD", "value": "dev"} in db["env"]
    assert db["volumeMounts"] == [{"name": "pgdata", "mountPath": "/var/lib/postgresql/data"},
                                  {"name": "scratch-2", "mountPath": "/scratch"}]
    pod = workload(result, "db")["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "pgdata", "persistentVolumeClaim": {"claimName": "pgdata"}},
                              {"name": "scratch-2", "emptyDir": {}}]
    assert pod["terminationGracePeriodSeconds"] == 20
    assert container(result, "api")["args"] == ["gunicorn", "app:app", "--bind", "0.0.0.0:8000"]


def test_kubernetes_probes_readiness_startup_and_liveness(source: Source) -> None:
    result = kubernetes.export(source, read_env=read_env)
    db = container(result, "db")
    assert db["readinessProbe"] == {"exec": {"command": ["sh", "-c", "pg_isready -q"]}, "periodSeconds": 3,
                                    "timeoutSeconds": 1, "failureThreshold": 3}
    assert db["startupProbe"]["failureThreshold"] == 20  # 1m / 3s
    assert "livenessProbe" not in db
    api = container(result, "api")
    assert api["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    assert api["livenessProbe"]["failureThreshold"] == 5  # on_failure = "restart"
    cache = container(result, "cache")
    assert cache["readinessProbe"]["tcpSocket"] == {"port": 16379}  # the implicit probe on its port
    assert "readinessProbe" not in container(result, "tail")  # a log probe: reported


def test_kubernetes_waits_for_dependencies_and_reports_what_it_cannot_wait_for(source: Source) -> None:
    result = kubernetes.export(source, read_env=read_env)
    api_pod = workload(result, "api")["spec"]["template"]["spec"]
    assert api_pod["initContainers"] == [
        {"name": "wait-for-db", "image": "busybox:1.36", "command": ["sh", "-c", "until nc -z db 5432; do sleep 1; done"]},
    ]  # migrate: a Job (reported); cache: "started" (no wait)
    assert one(result, "depends_on migrate = completed") == line_of("depends_on     = { migrate")
    assert one(result, "stop_signal SIGINT") == line_of('stop_signal    = "SIGINT"')
    assert one(result, "./init:/docker-entrypoint-initdb.d: a host folder") == line_of("volumes        = [")
    assert one(result, 'restart = "never"') == line_of('restart = "never"')


def test_kubernetes_ingress_hosts_are_subdomain_project_domain(source: Source) -> None:
    result = kubernetes.export(source, read_env=read_env, domain="dev.example.com")
    ingress = result.files["ingress.yaml"][0]
    rules = ingress["spec"]["rules"]
    assert [r["host"] for r in rules] == ["api.shop.dev.example.com"]  # db and cache: proxy = false
    assert rules[0]["http"]["paths"][0]["backend"] == {"service": {"name": "api", "port": {"number": 8000}}}


def test_a_named_service_without_an_image_is_an_error_with_its_line(source: Source, tmp_path: Path) -> None:
    for result in (compose.export(source, ["api", "web"], base=tmp_path),
                   kubernetes.export(source, ["web"], read_env=read_env)):
        assert not result.ok and result.files == {}
        error = next(f for f in result.findings if f.error)
        assert error.service == "web" and error.line == line_of('cmd        = "npm run dev"')
        assert "has no image" in error.message


def test_the_same_file_gives_the_same_bytes(source: Source, tmp_path: Path) -> None:
    first = compose.render(compose.export(source, base=tmp_path)), kubernetes.render(kubernetes.export(source, read_env=read_env))
    again = compose.render(compose.export(source, base=tmp_path)), kubernetes.render(kubernetes.export(source, read_env=read_env))
    assert first == again
    assert "&id" not in first[0] + first[1]  # no YAML anchors: every document reads on its own
    assert textwrap.dedent(first[0]).startswith("name: shop\nservices:\n  db:\n    image: postgres:16\n")


def test_a_profile_selects_what_up_would_start_with_it(tmp_path: Path) -> None:
    text = ('service "a" {\n  image = "x:1"\n  profiles = ["front"]\n}\nservice "b" {\n  image = "x:1"\n}\n'
            'service "c" {\n  image = "x:1"\n  profiles = ["e2e"]\n}\n')
    report = check_text(text, tmp_path / "A3sfile.hcl", {}, order=False)
    assert report.config is not None
    source = Source(report.config, report.positions)
    doc = compose.export(source, base=tmp_path, profiles=["front"]).files["compose.yaml"][0]
    assert list(doc["services"]) == ["a", "b"]
    assert list(kubernetes.export(source, read_env=read_env, profiles=["e2e"]).files) == ["b.yaml", "c.yaml"]


def test_lazy_and_idle_stop_are_reported_with_their_lines(tmp_path: Path) -> None:
    text = 'service "web" {\n  image = "x:1"\n  port = 80\n  lazy = true\n  idle_stop = "15m"\n}\n'
    report = check_text(text, tmp_path / "A3sfile.hcl", {}, order=False)
    assert report.config is not None
    result = compose.export(Source(report.config, report.positions), base=tmp_path)
    assert one(result, "lazy: started with the rest") == 4
    assert one(result, "idle_stop: nothing stops it") == 5
