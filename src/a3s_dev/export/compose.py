"""The A3sfile as a Compose file (the compose-spec): one document, the services with an image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from a3s_dev.config.model import Condition, HealthConfig, ProbeKind, RestartMode, ServiceDef, Volume
from a3s_dev.export.common import (
    Export,
    Finding,
    Source,
    arguments,
    condition_of,
    duration,
    not_carried,
    relative,
    select,
    to_yaml,
)

CONDITIONS = {
    Condition.STARTED: "service_started",
    Condition.HEALTHY: "service_healthy",
    Condition.COMPLETED: "service_completed_successfully",
}
RESTARTS = {RestartMode.ON_FAILURE: "on-failure", RestartMode.ALWAYS: "always", RestartMode.NEVER: "no"}


def export(source: Source, names: Sequence[str] = (), *, base: Path, profiles: Sequence[str] = ()) -> Export:
    """The Compose document for `names` (else every service with an image); relative paths
    (env files, bind mounts) are written relative to `base`, the Compose file's folder."""
    chosen, findings = select(source, names, profiles)
    result = Export(findings=findings)
    if not result.ok:
        return result
    exported = {s.name for s in chosen}
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    for svc in chosen:
        services[svc.name] = _service(source, svc, exported, base, result.findings)
        for volume in svc.volumes:
            if volume.named and volume.source is not None:
                volumes[volume.source] = {}
    document: dict[str, Any] = {"name": source.config.project, "services": services}
    if volumes:
        document["volumes"] = dict(sorted(volumes.items()))
    result.files["compose.yaml"] = [document]
    return result


def _service(source: Source, svc: ServiceDef, exported: set[str], base: Path, findings: list[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {"image": svc.image}
    if args := arguments(svc):
        out["command"] = args
    out["environment"] = svc.container_variables()
    if svc.env_file is not None:
        out["env_file"] = [relative(svc.env_file, base)]
    if svc.port is not None and svc.inside_port is not None:
        out["ports"] = [f"127.0.0.1:{svc.port}:{svc.inside_port}"]
    elif svc.auto_port and svc.inside_port is not None:
        out["ports"] = [f"127.0.0.1::{svc.inside_port}"]  # a free host port, as "auto" chooses one
    if svc.volumes:
        out["volumes"] = [_volume(v, base) for v in svc.volumes]
    depends = _depends_on(source, svc, exported, findings)
    if depends:
        out["depends_on"] = depends
    if (check := _healthcheck(source, svc, findings)) is not None:
        out["healthcheck"] = check
    out["restart"] = "no" if svc.oneshot else RESTARTS[svc.restart]
    out["stop_signal"] = svc.stop_signal
    out["stop_grace_period"] = duration(svc.stop_timeout)
    findings.extend(not_carried(source, svc))
    return out


def _volume(volume: Volume, base: Path) -> str:
    """A volume as Compose writes it: a named volume as is (Compose prefixes the project name,
    as a3s does), a host path relative to the Compose file."""
    if volume.source is None:
        return volume.target
    source = volume.source if volume.named else relative(Path(volume.source), base)
    return ":".join(filter(None, (source, volume.target, volume.options)))


def _depends_on(source: Source, svc: ServiceDef, exported: set[str], findings: list[Finding]) -> dict[str, Any]:
    config = source.config
    out: dict[str, Any] = {}
    for dep in svc.depends_on:
        line = source.dependency_line(svc, dep)
        if dep not in exported:
            findings.append(Finding(svc.name, f"depends_on {dep}: {dep} is not exported (no image), so not waited for", line))
            continue
        condition = condition_of(config, svc, dep)
        target = config.service(dep)
        if condition is Condition.HEALTHY and target.oneshot:
            condition = Condition.COMPLETED  # a task is ready when it exited 0
        if condition is Condition.HEALTHY and target.probe is not None and _health_test(target.probe) is None:
            findings.append(Finding(svc.name, f"depends_on {dep} = healthy: {dep}'s {target.probe.type.value} probe has no "
                                    "Compose health check, so it waits for service_started", line))
            condition = Condition.STARTED
        elif condition is Condition.HEALTHY and target.probe is None:
            condition = Condition.STARTED  # ready once spawned, in a3s as in Compose
        out[dep] = {"condition": CONDITIONS[condition]}
    return out


def _health_test(probe: HealthConfig) -> list[str] | None:
    if probe.type is ProbeKind.CMD and probe.command:
        return ["CMD-SHELL", probe.command]
    return None


def _healthcheck(source: Source, svc: ServiceDef, findings: list[Finding]) -> dict[str, Any] | None:
    probe = svc.probe
    if probe is None or svc.oneshot:
        return None
    line = source.line(svc, "health") if svc.health is not None else source.line(svc, "port")
    test = _health_test(probe)
    if test is None:
        if probe.type in (ProbeKind.HTTP, ProbeKind.TCP):
            what = f"GET {probe.path}" if probe.type is ProbeKind.HTTP else f"port {svc.inside_port}"
            findings.append(Finding(svc.name, f"{probe.type.value} probe ({what}): Compose runs health checks inside "
                                    "the container, which may have no client for it (add a cmd probe with in_container = true)",
                                    line))
        return None
    if not probe.in_container:
        findings.append(Finding(svc.name, "cmd probe: runs inside the container in Compose, on the host in a3s "
                                "(in_container = true says they agree)", line))
    check: dict[str, Any] = {
        "test": test,
        "interval": duration(probe.interval),
        "timeout": duration(probe.timeout),
        "retries": probe.retries,
        "start_period": duration(probe.start_timeout),
    }
    return check


def render(result: Export) -> str:
    return to_yaml(result.files["compose.yaml"])
