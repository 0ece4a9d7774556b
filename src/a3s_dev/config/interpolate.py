"""`${...}` in an A3sfile (SPEC §13): `${project}`, `${env.NAME}` / `${env.NAME:-default}`,
`${services.NAME.port}` and `${services.NAME.url}`. Any other `${...}` is the shell's.

Two times: validation expands `${project}` and `${env.*}` (both known then) and checks every
`${services.*}`; once the automatic ports are chosen, `resolve` fills those in. Pure.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

from a3s_dev.config.model import DevConfig, HealthConfig, ServiceDef

REFERENCE = re.compile(r"\$\{([^{}]*)\}")
SERVICE_ATTRIBUTES = ("port", "url")


class Problem(ValueError):
    """A reference that cannot be expanded: the message, and the fix."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def expand(text: str, project: str, environ: Mapping[str, str], *, services: bool = True) -> str:
    """`${project}` and `${env.*}` replaced; `${services.*}` kept for `resolve` (a Problem
    when `services` is False: a path cannot wait for a port); the rest kept for the shell."""

    def one(match: re.Match[str]) -> str:
        inner = match.group(1).strip()
        if inner == "project":
            return project
        if inner.startswith("env."):
            name, sep, default = inner[4:].partition(":-")
            if not name:
                raise Problem(f"${{{inner}}} names no variable", "write ${env.NAME}")
            if name in environ:
                return environ[name]
            if sep:
                return default
            raise Problem(f"${{{inner}}}: {name} is not set in a3s's environment",
                          f"set it, or give a default: ${{env.{name}:-value}}")
        if inner.startswith("services."):
            if not services:
                raise Problem(f"${{{inner}}} cannot be used here", "only ${project} and ${env.NAME} are")
            return match.group(0)
        return match.group(0)  # the shell's: ${PORT}, ${HOME:-/root}

    return REFERENCE.sub(one, text)


def service_reference(inner: str) -> tuple[str, str] | None:
    """(service, attribute) of the inside of `${services.NAME.ATTR}`; None for a reference
    that is not to a service; a Problem when it is, but not of that shape."""
    if not inner.startswith("services."):
        return None
    parts = inner.split(".")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise Problem(f"${{{inner}}} is not ${{services.NAME.port}} or ${{services.NAME.url}}")
    return parts[1], parts[2]


def service_references(text: str) -> list[tuple[str, str]]:
    """The (service, attribute) of each `${services.NAME.ATTR}` in `text` (a Problem for one
    that is not of that shape)."""
    found = (service_reference(match.group(1).strip()) for match in REFERENCE.finditer(text))
    return [ref for ref in found if ref is not None]


def texts(svc: ServiceDef) -> list[tuple[str, str]]:
    """(attribute, text) of each interpolated text of a service that can hold `${services.*}`."""
    out: list[tuple[str, str]] = []

    def note(attribute: str, text: str) -> str:
        out.append((attribute, text))
        return text

    _map(svc, note)
    return out


def resolve(config: DevConfig) -> DevConfig:
    """Every `${services.NAME.port|url}` filled in (call once the automatic ports are chosen);
    validation has checked that each names a service with a port."""
    by_name = {s.name: s for s in config.services}

    def fill(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            try:
                ref = service_reference(match.group(1).strip())
            except Problem:  # validation said so already
                return match.group(0)
            if ref is None or ref[0] not in by_name or ref[1] not in SERVICE_ATTRIBUTES:
                return match.group(0)
            target = by_name[ref[0]]
            if ref[1] == "port":
                return str(target.port or "")
            # the proxy URL, else http://127.0.0.1:PORT (127.0.0.1:PORT when not HTTP)
            return config.address(target, config.settings.proxy_port) or ""

        return REFERENCE.sub(one, text) if "${services." in text else text

    return dataclasses.replace(config, services=tuple(_map(s, lambda _, text: fill(text)) for s in config.services))


def _map(svc: ServiceDef, fill: Callable[[str, str], str]) -> ServiceDef:
    """`svc` with `fill(attribute, text)` for each text that can hold `${services.*}`: the one
    list of them, for `texts` and `resolve`, in the order they are written."""
    cmd = fill("cmd", svc.cmd)
    env = {k: fill("env", v) for k, v in svc.env.items()}
    health: HealthConfig | None = svc.health
    if health is not None:
        command = fill("health", health.command) if health.command else health.command
        health = dataclasses.replace(health, command=command, path=fill("health", health.path))
    return dataclasses.replace(svc, cmd=cmd, env=env, health=health)
