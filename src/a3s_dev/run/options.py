"""What `a3s up` was asked: one record, built by the stdlib argv reader and by typer alike."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UpOptions:
    """`a3s up [SVC...] [--no-deps] [--no-proxy] [--no-watch] [-d] [--timeout D]`."""

    services: tuple[str, ...] = ()
    deps: bool = True
    proxy: bool = True
    watch: bool = True
    detach: bool = False
    timeout: float | None = None  # `--timeout`: how long `up -d` waits for readiness
    profiles: tuple[str, ...] = ()  # `--profile` (repeatable); else A3S_PROFILES
