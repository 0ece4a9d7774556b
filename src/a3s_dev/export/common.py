"""What both exports share: the selection, the findings, durations and the YAML text."""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a3s_dev.config.model import Condition, DevConfig, ProbeKind, ServiceDef

EnvReader = Callable[[Path], Mapping[str, str]]  # an env_file's variables (core.service_env.read_env_file)


@dataclass(frozen=True)
class Finding:
    """One thing that did not carry over (or was an error), with where the A3sfile says it."""

    service: str | None
    message: str
    line: int | None = None
    error: bool = False

    def format(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        who = f"{self.service}: " if self.service else ""
        return f"{where}: {'error' if self.error else 'not exported'}: {who}{self.message}"


@dataclass
class Export:
    """The documents of one export, by file name (in write order), and its findings."""

    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.error for f in self.findings)


@dataclass(frozen=True)
class Source:
    """The A3sfile to export: its config and where each attribute and block was written."""

    config: DevConfig
    positions: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def line(self, svc: ServiceDef, key: str | None = None) -> int | None:
        return self.positions.get((svc.name, key), svc.line) if key else svc.line

    def dependency_line(self, svc: ServiceDef, dep: str) -> int | None:
        """Where `svc`'s depends_on names `dep` (the attribute's line when not known)."""
        return self.positions.get((svc.name, f"depends_on:{dep}"), self.line(svc, "depends_on"))


def select(source: Source, names: Sequence[str], profiles: Sequence[str] = ()) -> tuple[list[ServiceDef], list[Finding]]:
    """The services to export: the named ones (each must have an image), else every one with an
    image, of the chosen profiles as `up --profile` chooses (a host process is reported, not
    exported)."""
    config = source.config
    findings: list[Finding] = []
    if profiles and not names:
        wanted = set(profiles)
        names = [s.name for s in config.services if s.image is not None and s.chosen_by(wanted)]
        if not names:
            return [], [Finding(None, f"no service with an image in profile {', '.join(profiles)}", error=True)]
    if names:
        chosen = [config.service(n) for n in names]
        for svc in chosen:
            if svc.image is None:
                findings.append(Finding(svc.name, "has no image, only a cmd: nothing to export it as "
                                        "(give it an image, or leave it out)", source.line(svc, "cmd"), error=True))
        return [s for s in config.services if s in chosen], findings
    for svc in config.services:
        if svc.image is None:
            findings.append(Finding(svc.name, "a host process (cmd, no image): left out", source.line(svc, "cmd")))
    return [s for s in config.services if s.image is not None], findings


def not_carried(source: Source, svc: ServiceDef, *, log_probe: bool = True) -> list[Finding]:
    """What neither runtime has: file watching, log probes, `interactive`."""
    out = []
    if svc.watch is not None:
        out.append(Finding(svc.name, "watch: restarts on file change stay with a3s (rebuild and redeploy instead)",
                           source.line(svc, "watch")))
    if log_probe and svc.health is not None and svc.health.type is ProbeKind.LOG:
        out.append(Finding(svc.name, f'log probe (pattern "{svc.health.pattern}"): no health check reads the log',
                           source.line(svc, "health")))
    if svc.interactive:
        out.append(Finding(svc.name, "interactive: no terminal to attach to (kubectl attach / docker attach do that)",
                           source.line(svc, "interactive")))
    if svc.lazy:
        out.append(Finding(svc.name, "lazy: started with the rest (nothing starts it on its first request there)",
                           source.line(svc, "lazy")))
    if svc.idle_stop:
        out.append(Finding(svc.name, "idle_stop: nothing stops it when unused there (scale it to zero by hand)",
                           source.line(svc, "idle_stop")))
    return out


def condition_of(config: DevConfig, svc: ServiceDef, dep: str) -> Condition:
    """What `svc` waits for of `dep`: the map's condition, else ready (completed for a task)."""
    given = svc.conditions.get(dep)
    if given is not None:
        return given
    return Condition.COMPLETED if config.service(dep).oneshot else Condition.HEALTHY


def arguments(svc: ServiceDef) -> list[str]:
    """The container's command as arguments (split like a shell line, as `a3s up` runs it)."""
    return shlex.split(svc.cmd) if svc.cmd else []


def relative(path: Path, base: Path) -> str:
    """`path` as written relative to `base`: `./init`, `../shared/.env`."""
    rel = os.path.relpath(path, base)
    return rel if rel.startswith("..") else f"./{rel}"


def duration(seconds: float) -> str:
    """A Compose duration: `2s`, `1m30s`, `250ms`."""
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs}s" if minutes and secs else f"{minutes}m" if minutes else f"{secs}s"


def whole_seconds(seconds: float, least: int = 1) -> int:
    return max(least, math.ceil(seconds))


def to_yaml(documents: list[dict[str, Any]]) -> str:
    """One YAML stream, keys in the order they were built: same documents, same bytes."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # a repeated dict is written out, never &id001
            return True

    return "---\n".join(yaml.dump(d, Dumper=Dumper, sort_keys=False, default_flow_style=False,
                                  allow_unicode=True, width=1 << 16) for d in documents)
