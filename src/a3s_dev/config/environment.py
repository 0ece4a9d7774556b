"""The environment's say over an A3sfile: named mutators, each one variable, applied in order
after the dev block is read. Pure: the environment is an argument.

    A3S_HTTPS       1/0 (true/false, yes/no, on/off) turns the proxy's TLS port on or off
    A3S_PROXY_PORT  the proxy's port; 0 turns the proxy off
    A3S_PROJECT     the project's name when `dev.name` does not give one

Each takes the settings and the environment and returns the settings and the errors (one line
each, naming the variable). `port = "auto"` is chosen when a supervisor starts, not here: it
asks the OS for a free port (`run.prepare.choose_ports`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from a3s_dev.config.model import GlobalSettings, dns_label

Mutator = Callable[[GlobalSettings, Mapping[str, str]], tuple[GlobalSettings, list[str]]]

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def parse_proxy_port(raw: str) -> int | None:
    """A3S_PROXY_PORT's value as a port (0-65535, 0: no proxy); None when it is not one. The
    one reader of the variable: `a3s up` and `a3s proxy` alike."""
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 5 and int(raw) <= 65535 else None


def https_override(settings: GlobalSettings, environ: Mapping[str, str]) -> tuple[GlobalSettings, list[str]]:
    flag = environ.get("A3S_HTTPS", "").strip().lower()
    if flag in TRUE:
        return dataclasses.replace(settings, https=True), []
    if flag in FALSE:
        return dataclasses.replace(settings, https=False), []
    if flag:
        return settings, [f'A3S_HTTPS="{environ["A3S_HTTPS"]}" is not 1 or 0']
    return settings, []


def proxy_port_override(settings: GlobalSettings, environ: Mapping[str, str]) -> tuple[GlobalSettings, list[str]]:
    raw = environ.get("A3S_PROXY_PORT")
    if raw is None or not raw.strip():
        return settings, []
    port = parse_proxy_port(raw)
    if port is None:
        return settings, [f'A3S_PROXY_PORT="{raw}" is not a port number (0-65535; 0 turns the proxy off)']
    return dataclasses.replace(settings, proxy_port=port), []


def project_override(settings: GlobalSettings, environ: Mapping[str, str]) -> tuple[GlobalSettings, list[str]]:
    """A3S_PROJECT, when `dev.name` does not name the project: the same rule as `dev.name`
    (a DNS label, not the dashboard's), never silently rewritten."""
    raw = environ.get("A3S_PROJECT", "").strip()
    if settings.name is not None or not raw:
        return settings, []  # dev.name wins
    if raw != dns_label(raw) or raw in ("a3s", "localhost"):
        fix = dns_label(raw) if dns_label(raw) not in ("", "a3s", "localhost") else "shop"
        said = f'A3S_PROJECT="{raw}" cannot name a project (lower-case letters, digits and "-"; not a3s or localhost)'
        return settings, [f"{said}, e.g. A3S_PROJECT={fix}"]
    return dataclasses.replace(settings, name=raw), []


ENV_OVERRIDES: tuple[Mutator, ...] = (https_override, proxy_port_override, project_override)


def apply_environment(
    settings: GlobalSettings, environ: Mapping[str, str], mutators: tuple[Mutator, ...] = ENV_OVERRIDES
) -> tuple[GlobalSettings, list[str]]:
    """`settings` with every mutator applied in order; every error of every one."""
    errors: list[str] = []
    for mutate in mutators:
        settings, found = mutate(settings, environ)
        errors += found
    return settings, errors
