"""What changed between the A3sfile a supervisor runs and the one on disk now (SPEC §16). Pure.

`diff(running, edited)` says which services were added, removed or changed, and which
unchanged ones must restart anyway because their environment changed (a dependency's port,
hence its `A3S_<DEP>_URL`). Automatic ports already chosen are kept (`keep_ports`), so an
unchanged `port = "auto"` service is not restarted onto another port.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from a3s_dev.config.model import DevConfig, ServiceDef, with_ports

# A ServiceDef's fields that say nothing about how the service runs.
_IGNORED = frozenset({"line"})


@dataclass(frozen=True)
class ConfigDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # name -> attributes
    dependents: tuple[str, ...] = ()  # unchanged, but a dependency's address changed
    settings: tuple[str, ...] = ()  # dev block attributes that changed (a new supervisor applies them)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.dependents or self.settings)

    def lines(self) -> list[str]:
        """One line per decision, as `a3s up` says them."""
        out = [f"{name}: removed from the A3sfile, stopping it" for name in self.removed]
        out += [f"{name}: changed ({', '.join(fields)}), restarting it" for name, fields in self.changed.items()]
        out += [f"{name}: a dependency's address changed, restarting it" for name in self.dependents]
        out += [f"{name}: new in the A3sfile, starting it" for name in self.added]
        if self.settings:
            out.append(
                f"dev block changed ({', '.join(self.settings)}): not applied to a running stack; "
                "`a3s down` then `a3s up` applies it"
            )
        return out


def keep_ports(running: DevConfig, edited: DevConfig) -> DevConfig:
    """`edited` with the automatic ports `running` chose for services that are still automatic."""
    chosen = {
        s.name: running.service(s.name).port
        for s in edited.services
        if s.auto_port and s.port is None and s.name in running.names and running.service(s.name).auto_port
    }
    return with_ports(edited, {name: port for name, port in chosen.items() if port is not None})


def changed_fields(old: ServiceDef, new: ServiceDef) -> tuple[str, ...]:
    """The attributes of a service that differ, in declaration order (`line` does not count)."""
    return tuple(
        f.name
        for f in dataclasses.fields(ServiceDef)
        if f.name not in _IGNORED and getattr(old, f.name) != getattr(new, f.name)
    )


def diff(running: DevConfig, edited: DevConfig) -> ConfigDiff:
    """What applying `edited` (its automatic ports kept: `keep_ports`) to `running` does."""
    old_names, new_names = set(running.names), set(edited.names)
    changed = {
        name: fields
        for name in edited.names
        if name in old_names and (fields := changed_fields(running.service(name), edited.service(name)))
    }
    moved = {name for name, fields in changed.items() if "port" in fields} | (old_names - new_names)
    dependents = tuple(
        s.name for s in edited.services
        if s.name in old_names and s.name not in changed and moved.intersection(s.depends_on)
    )
    settings = tuple(
        f.name
        for f in dataclasses.fields(running.settings)
        if getattr(running.settings, f.name) != getattr(edited.settings, f.name)
    )
    return ConfigDiff(
        added=tuple(n for n in edited.names if n not in old_names),
        removed=tuple(n for n in running.names if n not in new_names),
        changed=changed,
        dependents=dependents,
        settings=settings,
    )
