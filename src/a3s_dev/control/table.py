"""The status table's cells, as every view of it shows them: `a3s status`, `a3s ui`. Pure and
stdlib only (`a3s status` imports it on its fast path)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COLUMNS = ("NAME", "STATE", "PID", "PORT", "HEALTH", "CPU", "MEM", "UPTIME", "RESTARTS", "URL")
STATE_STYLE = {
    "running": "green",
    "completed": "green",
    "starting": "yellow",
    "pending": "yellow",
    "stopping": "yellow",
    "backoff": "red",
    "unhealthy": "red",
    "failed": "bold red",
    "stopped": "dim",
    "idle": "cyan",
    "orphaned": "bold magenta",
}


def format_uptime(seconds: float | None) -> str:
    """`45s`, `3m04s`, `2h05m`, `3d04h`; empty when not running."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_bytes(value: int | None) -> str:
    """`48M`, `1.2G`, `640K`; empty when not measured."""
    if value is None:
        return ""
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= size:
            amount = value / size
            return f"{amount:.1f}{unit}" if amount < 10 and unit == "G" else f"{amount:.0f}{unit}"
    return f"{value}B"


def health_cell(row: Mapping[str, Any]) -> str | None:
    """What the HEALTH column says: the last probe result while it explains why a service is not
    ready or not healthy; the reason of a service that is pending, failed or backing off (waiting
    for db, exit code 3); else the health."""
    state = row.get("state")
    if state in ("starting", "unhealthy") and row.get("probe"):
        return str(row["probe"])
    if state in ("pending", "failed", "backoff") and row.get("reason"):
        return str(row["reason"])
    health = row.get("health")
    return None if health is None else str(health)


def table_cells(row: Mapping[str, Any]) -> list[str]:
    """One row's cells, in COLUMNS order."""

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    return [
        str(row["name"]),
        str(row["state"]),
        text(row.get("pid")),
        text(row.get("port")),
        text(health_cell(row)),
        f"{row['cpu']:.1f}%" if row.get("cpu") is not None else "",
        format_bytes(row.get("rss")),
        format_uptime(row.get("uptime_s")),
        str(row.get("restarts", 0)),
        text(row.get("url")),
    ]
