"""Which services `up` starts, the first wave, and the probe registry (no processes)."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from a3s_dev import health
from a3s_dev.config import DevConfig, HealthConfig, ServiceDef
from a3s_dev.errors import UsageError
from a3s_dev.health import ProbeResources, ProbeResult, TcpProbe, make_probe, register_probe
from a3s_dev.session import UpArgs, first_wave, parse_fast_up, wanted_services

ROOT = Path("/tmp")


def _config() -> DevConfig:
    return DevConfig(
        path=ROOT / "A3sfile.hcl",
        services=(
            ServiceDef("db", "x", ROOT, port=5432),
            ServiceDef("cache", "x", ROOT),
            ServiceDef("api", "x", ROOT, port=8080, depends_on=("db", "cache")),
            ServiceDef("web", "x", ROOT, port=3000, depends_on=("api",)),
            ServiceDef("docs", "x", ROOT),
        ),
    )


def test_up_with_names_adds_their_dependency_closure_in_declaration_order() -> None:
    config = _config()
    assert wanted_services(config, None, True) == ["db", "cache", "api", "web", "docs"]
    assert wanted_services(config, ["web"], True) == ["db", "cache", "api", "web"]
    assert wanted_services(config, ["web"], False) == ["web"]
    with pytest.raises(UsageError, match=r"unknown service 'nope' \(services: db, cache, api, web, docs\)"):
        wanted_services(config, ["nope"], True)
    with pytest.raises(UsageError, match=r"unknown service 'wbe' \(did you mean 'web'\?\)"):
        wanted_services(config, ["wbe"], True)


def test_first_wave_is_what_waits_for_nothing_wanted() -> None:
    config = _config()
    assert [s.name for s in first_wave(config, wanted_services(config, None, True))] == [
        "db",
        "cache",
        "docs",
    ]
    assert [s.name for s in first_wave(config, ["web"])] == ["web"]  # --no-deps


def test_implicit_tcp_probe_on_port_and_none_without_port() -> None:
    config = _config()
    resources = ProbeResources()
    probe = make_probe(config.service("db"), resources)
    assert isinstance(probe, TcpProbe) and probe.port == 5432
    assert make_probe(config.service("cache"), resources) is None


def test_a_new_probe_kind_is_one_registry_entry() -> None:
    class AlwaysHealthy:
        async def check(self) -> ProbeResult:
            return ProbeResult(True)

    register_probe("always", lambda svc, cfg, res: AlwaysHealthy())
    try:
        svc = ServiceDef("x", "x", ROOT, port=1, health=HealthConfig(type="always"))  # type: ignore[arg-type]
        assert isinstance(make_probe(svc, ProbeResources()), AlwaysHealthy)
    finally:
        health._REGISTRY.pop("always")


def test_tcp_probe_answers_for_a_listener_and_explains_a_refusal() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert anyio.run(TcpProbe(port, 1.0).check).ok
    result = anyio.run(TcpProbe(port, 1.0).check)
    assert not result.ok and "ECONNREFUSED" in result.detail


def test_no_httpx_until_an_http_probe_checks() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from a3s_dev import supervisor, session;"
        "print(sorted(m for m in ('httpx', 'aiohttp', 'watchfiles', 'networkx', 'rich.table') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["up"], UpArgs()),
        (["up", "api", "web", "--no-deps"], UpArgs(services=("api", "web"), deps=False)),
        (
            ["-f", "x.hcl", "--no-color", "up", "--no-proxy", "--no-watch"],
            UpArgs(file=Path("x.hcl"), proxy=False, watch=False, color=False),
        ),
        (["up", "--file", "y.hcl"], UpArgs(file=Path("y.hcl"))),
        (["up", "--file=z.hcl", "api"], UpArgs(services=("api",), file=Path("z.hcl"))),
        (["up", "-d"], None),  # the background path belongs to typer/daemon
        (["up", "--help"], None),
        (["up", "--no-such"], None),
        (["up", "-f"], None),
        (["status"], None),
        (["up", "--no-color"], None),  # only a global option
        ([], None),
    ],
)
def test_fast_up_parses_plain_foreground_command_lines_only(
    argv: list[str], expected: UpArgs | None
) -> None:
    assert parse_fast_up(argv) == expected
