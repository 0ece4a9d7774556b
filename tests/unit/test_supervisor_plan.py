"""Which services `up` starts, the first wave, and the probe registry (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from a3s_dev.config.graph import independent
from a3s_dev.config.model import DevConfig, HealthConfig, ServiceDef
from a3s_dev.core import health
from a3s_dev.core.health import ProbeResources, ProbeResult, TcpProbe, make_probe, register_probe
from a3s_dev.errors import UsageError
from a3s_dev.run.prepare import wanted_services

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
    assert independent(config, wanted_services(config, None, True)) == ["db", "cache", "docs"]
    assert independent(config, ["web"]) == ["web"]  # --no-deps


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
