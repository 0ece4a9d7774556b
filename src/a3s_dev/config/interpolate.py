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
# The attributes that take `${...}` (SPEC §13), as a ServiceDef names them; health ones apart.
INTERPOLATED = ("cmd", "env", "env_file", "dir", "health.command", "health.path")


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


def service_references(text: str) -> list[tuple[str, str]]:
    """The (service, attribute) of each `${services.NAME.ATTR}` in `text`; a reference that is
    not of that shape is a Problem."""
    found = []
    for match in REFERENCE.finditer(text):
        inner = match.group(1).strip()
        if not inner.startswith("services."):
            continue
        parts = inner.split(".")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise Problem(f"${{{inner}}} is not ${{services.NAME.port}} or ${{services.NAME.url}}")
        found.append((parts[1], parts[2]))
    return found


def texts(svc: ServiceDef) -> list[tuple[str, str]]:
    """(attribute, text) of each interpolated text of a service that can hold `${services.*}`."""
    out = [("cmd", svc.cmd)]
    out += [("env", value) for value in svc.env.values()]
    if svc.health is not None:
        if svc.health.command:
            out.append(("health", svc.health.command))
        out.append(("health", svc.health.path))
    return out


def address(config: DevConfig, target: ServiceDef, attribute: str) -> str:
    """`${services.NAME.port}` and `.url` of `target` (its port chosen): the proxy URL, else
    `http://127.0.0.1:PORT`; `127.0.0.1:PORT` for a service that does not speak HTTP."""
    if target.port is None:
        return ""
    if attribute == "port":
        return str(target.port)
    if not target.proxy:
        return f"127.0.0.1:{target.port}"
    proxy_port = config.settings.proxy_port
    scheme = "https" if config.settings.https else "http"
    port = config.settings.https_port if config.settings.https else proxy_port
    through = target.proxy_url(port, config.project, scheme) if proxy_port else None
    return through or f"http://127.0.0.1:{target.port}"


def resolve(config: DevConfig) -> DevConfig:
    """Every `${services.NAME.port|url}` filled in (call once the automatic ports are chosen);
    validation has checked that each names a service with a port."""
    by_name = {s.name: s for s in config.services}

    def fill(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            inner = match.group(1).strip()
            parts = inner.split(".")
            if len(parts) == 3 and parts[0] == "services" and parts[1] in by_name and parts[2] in SERVICE_ATTRIBUTES:
                return address(config, by_name[parts[1]], parts[2])
            return match.group(0)

        return REFERENCE.sub(one, text) if "${services." in text else text

    return dataclasses.replace(config, services=tuple(_map(s, fill) for s in config.services))


def _map(svc: ServiceDef, fill: Callable[[str], str]) -> ServiceDef:
    health: HealthConfig | None = svc.health
    if health is not None:
        health = dataclasses.replace(health, command=fill(health.command) if health.command else health.command,
                                     path=fill(health.path))
    return dataclasses.replace(svc, cmd=fill(svc.cmd), env={k: fill(v) for k, v in svc.env.items()}, health=health)
