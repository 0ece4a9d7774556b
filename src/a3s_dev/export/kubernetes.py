"""The A3sfile as Kubernetes objects: per service a Deployment (a Job for a oneshot), its Service,
its env_file as a ConfigMap; named volumes as PersistentVolumeClaims; the subdomains as the
rules of one Ingress, `<subdomain>.<project>.<domain>`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from a3s_dev.config.model import (
    Condition,
    HealthConfig,
    OnFailure,
    ProbeKind,
    RestartMode,
    ServiceDef,
    dns_label,
)
from a3s_dev.export.common import (
    EnvReader,
    Export,
    Finding,
    Source,
    arguments,
    condition_of,
    not_carried,
    relative,
    select,
    to_yaml,
    whole_seconds,
)

WAIT_IMAGE = "busybox:1.36"  # the init containers that wait for a dependency's port
VOLUME_SIZE = "1Gi"  # what each PersistentVolumeClaim asks for


def export(source: Source, names: Sequence[str] = (), *, read_env: EnvReader, namespace: str | None = None,
           domain: str = "localhost", profiles: Sequence[str] = ()) -> Export:
    """The objects for `names` (else every service with an image), one file per service, plus
    the namespace, the volumes and the Ingress when there are any."""
    chosen, findings = select(source, names, profiles)
    result = Export(findings=findings)
    if not result.ok:
        return result
    project = source.config.project
    meta = _Meta(project, namespace)
    if namespace:
        result.files["00-namespace.yaml"] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    exported = {s.name for s in chosen}
    claims: dict[str, dict[str, Any]] = {}
    rules: list[dict[str, Any]] = []
    for svc in chosen:
        documents: list[dict[str, Any]] = []
        if svc.env_file is not None:
            documents.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta.of(f"{svc.name}-env", svc.name),
                              "data": dict(read_env(svc.env_file))})
        documents.append(_workload(source, svc, meta, exported, result.findings))
        for volume in svc.volumes:
            if volume.named and volume.source is not None:
                claims.setdefault(dns_label(volume.source), _claim(meta, dns_label(volume.source)))
        if (port := svc.inside_port) is not None:
            documents.append(_service(meta, svc, port))
            if svc.proxy and svc.subdomain is not None:
                rules.append(_rule(f"{svc.subdomain}.{project}.{domain}", _name(svc), port))
        result.files[f"{_name(svc)}.yaml"] = documents
        result.findings.extend(not_carried(source, svc))
    if claims:
        result.files["01-volumes.yaml"] = [claims[k] for k in sorted(claims)]
    if rules:
        result.files["ingress.yaml"] = [{
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta.of(project, None),
            "spec": {"rules": rules},
        }]
    result.files = dict(sorted(result.files.items()))  # kubectl applies a folder in this order
    return result


def render(result: Export) -> str:
    """Every document in one stream (stdout)."""
    return to_yaml([d for docs in result.files.values() for d in docs])


class _Meta:
    def __init__(self, project: str, namespace: str | None) -> None:
        self.project = project
        self.namespace = namespace

    def labels(self, service: str | None) -> dict[str, str]:
        labels = {"app.kubernetes.io/part-of": self.project, "app.kubernetes.io/managed-by": "a3s"}
        if service is not None:
            labels = {"app.kubernetes.io/name": dns_label(service), **labels}
        return labels

    def of(self, name: str, service: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": dns_label(name), "labels": self.labels(service)}
        if self.namespace:
            meta["namespace"] = self.namespace
        return meta


def _name(svc: ServiceDef) -> str:
    return dns_label(svc.name)


def _workload(source: Source, svc: ServiceDef, meta: _Meta, exported: set[str], findings: list[Finding]) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": _name(svc), "app.kubernetes.io/part-of": meta.project}
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": whole_seconds(svc.stop_timeout, 0)}
    if waits := _waits(source, svc, exported, findings):
        pod["initContainers"] = waits
    pod["containers"] = [_container(source, svc, findings)]
    if volumes := _pod_volumes(source, svc, findings):
        pod["volumes"] = volumes
    if svc.stop_signal != "SIGTERM":
        findings.append(Finding(svc.name, f"stop_signal {svc.stop_signal}: Kubernetes stops with SIGTERM "
                                "(set STOPSIGNAL in the image)", source.line(svc, "stop_signal")))
    template = {"metadata": {"labels": meta.labels(svc.name)}, "spec": pod}
    if svc.oneshot:
        pod["restartPolicy"] = "Never" if svc.restart is RestartMode.NEVER else "OnFailure"
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta.of(svc.name, svc.name),
                "spec": {"backoffLimit": 0 if svc.restart is RestartMode.NEVER else 6, "template": template}}
    if svc.restart is RestartMode.NEVER:
        findings.append(Finding(svc.name, 'restart = "never": a Deployment always restarts its pod',
                                source.line(svc, "restart")))
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta.of(svc.name, svc.name),
            "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": template}}


def _container(source: Source, svc: ServiceDef, findings: list[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _name(svc), "image": svc.image}
    if args := arguments(svc):
        out["args"] = args  # like `a3s up` and Compose: the image's entrypoint stays
    if svc.env_file is not None:
        out["envFrom"] = [{"configMapRef": {"name": f"{_name(svc)}-env"}}]  # then env, which wins
    out["env"] = [{"name": k, "value": v} for k, v in svc.container_variables().items()]
    if (port := svc.inside_port) is not None:
        out["ports"] = [{"containerPort": port}]
    mounts = [{"name": _volume_name(i, v.source if v.named else None), "mountPath": v.target,
               **({"readOnly": True} if "ro" in v.options.split(",") else {})}
              for i, v in enumerate(svc.volumes) if v.source is None or v.named]
    if mounts:
        out["volumeMounts"] = mounts
    out.update(_probes(source, svc, findings))
    return out


def _volume_name(index: int, named: str | None) -> str:
    return dns_label(named) if named else f"scratch-{index}"


def _pod_volumes(source: Source, svc: ServiceDef, findings: list[Finding]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, volume in enumerate(svc.volumes):
        if volume.named and volume.source is not None:
            out.append({"name": _volume_name(i, volume.source),
                        "persistentVolumeClaim": {"claimName": dns_label(volume.source)}})
        elif volume.source is None:
            out.append({"name": _volume_name(i, None), "emptyDir": {}})
        else:
            shown = relative(Path(volume.source), source.config.root)
            findings.append(Finding(svc.name, f"volume {shown}:{volume.target}: a host folder is not in the "
                                    "cluster (put it in the image or a ConfigMap)", source.line(svc, "volumes")))
    return out


def _claim(meta: _Meta, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta.of(name, None),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": VOLUME_SIZE}}}}


def _service(meta: _Meta, svc: ServiceDef, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta.of(svc.name, svc.name),
            "spec": {"selector": {"app.kubernetes.io/name": _name(svc), "app.kubernetes.io/part-of": meta.project},
                     "ports": [{"port": port, "targetPort": port}]}}


def _rule(host: str, service: str, port: int) -> dict[str, Any]:
    backend = {"service": {"name": service, "port": {"number": port}}}
    return {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}


def _waits(source: Source, svc: ServiceDef, exported: set[str], findings: list[Finding]) -> list[dict[str, Any]]:
    """An init container per dependency that must be ready: it waits until the dependency's
    Service takes connections, which it does once a pod passed its readiness probe."""
    config = source.config
    out = []
    for dep in svc.depends_on:
        line = source.dependency_line(svc, dep)
        condition = condition_of(config, svc, dep)
        target = config.service(dep)
        if dep not in exported:
            findings.append(Finding(svc.name, f"depends_on {dep}: {dep} is not exported (no image), so not waited for", line))
        elif condition is Condition.STARTED:
            continue  # pods start together
        elif target.oneshot:
            findings.append(Finding(svc.name, f"depends_on {dep} = completed: waiting for the Job {dep} needs the API; "
                                    f"run `kubectl wait --for=condition=complete job/{dns_label(dep)}` first", line))
        elif (port := target.inside_port) is None:
            findings.append(Finding(svc.name, f"depends_on {dep}: {dep} has no port to wait for; not waited for", line))
        else:
            host = dns_label(dep)
            out.append({"name": f"wait-for-{host}", "image": WAIT_IMAGE,
                        "command": ["sh", "-c", f"until nc -z {host} {port}; do sleep 1; done"]})
    return out


def _handler(svc: ServiceDef, probe: HealthConfig) -> dict[str, Any] | None:
    if probe.type is ProbeKind.HTTP:
        return {"httpGet": {"path": probe.path, "port": svc.inside_port}}
    if probe.type is ProbeKind.TCP:
        return {"tcpSocket": {"port": svc.inside_port}}
    if probe.type is ProbeKind.CMD and probe.command:
        return {"exec": {"command": ["sh", "-c", probe.command]}}
    return None


def _probes(source: Source, svc: ServiceDef, findings: list[Finding]) -> dict[str, Any]:
    """readinessProbe (the probe), startupProbe (its start_timeout), livenessProbe (on_failure
    = "restart")."""
    probe = svc.probe
    if probe is None or svc.oneshot:
        return {}
    handler = _handler(svc, probe)
    if handler is None:
        return {}  # a log probe: not_carried says so
    if probe.type is ProbeKind.CMD and not probe.in_container:
        findings.append(Finding(svc.name, "cmd probe: runs inside the container in Kubernetes, on the host in a3s "
                                "(in_container = true says they agree)", source.line(svc, "health")))
    period = whole_seconds(probe.interval)
    timing = {"periodSeconds": period, "timeoutSeconds": whole_seconds(probe.timeout)}
    out = {
        "readinessProbe": {**handler, **timing, "failureThreshold": probe.retries},
        "startupProbe": {**handler, **timing, "failureThreshold": whole_seconds(probe.start_timeout / period)},
    }
    if probe.on_failure is OnFailure.RESTART:
        out["livenessProbe"] = {**handler, **timing, "failureThreshold": probe.retries}
    return out
