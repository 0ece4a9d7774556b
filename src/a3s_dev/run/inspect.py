"""What a project is doing, read from outside its supervisor: every service's status row, from
the supervisor's control API when one answers, else from the A3sfile and the groups a killed
supervisor left (`stopped` or `orphaned`). `a3s status` and the agents' `status` tool read it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

from a3s_dev.control.client import ControlClient, NotRunning
from a3s_dev.errors import unknown_service
from a3s_dev.run import workspace


def rows_without_supervisor(a3sfile: Path) -> list[dict[str, Any]]:
    """Every service of the A3sfile when no supervisor runs: `stopped`, or `orphaned` (with its
    pid) when the groups a killed supervisor recorded still have live processes. Parses the file."""
    from a3s_dev.config.load import load
    from a3s_dev.core.groups import recorded_orphans, recorded_runtimes
    from a3s_dev.core.state import ServiceState, ServiceStatus, status_row
    from a3s_dev.system import procfs

    groups = workspace.paths_for(a3sfile).groups
    orphans = {o.service: o for o in recorded_orphans(groups)}
    containers: set[str] = set()
    for runtime in recorded_runtimes(groups):  # a killed client's container runs on
        from a3s_dev.core.containers import listed

        containers.update(listed(runtime, str(a3sfile)).values())
    rows = []
    config = load(a3sfile)
    now = time.time()
    for s in config.services:
        row = status_row(ServiceStatus(s.name, ServiceState.STOPPED, port=s.port, url=s.url, image=s.image), now, config.project)
        orphan = orphans.get(s.name)
        if orphan is not None:  # not a state of a supervisor's: what this command found
            members = procfs.live_members(orphan.pgid)
            pid = orphan.pgid if orphan.pgid in members else (members[0] if members else orphan.pgid)
            row.update(state="orphaned", pid=pid)
        elif s.name in containers:
            row.update(state="orphaned")
        rows.append(row)
    return rows


def status_rows(a3sfile: Path, *, timeout: float = 1.5) -> list[dict[str, Any]]:
    """The status of every service: from the supervisor when one answers, else `stopped` or
    `orphaned`. A supervisor that takes the connection but does not answer within `timeout`
    (stopped with SIGSTOP, hung) is an A3sError saying so."""
    return status_answer(a3sfile, timeout=timeout).rows


class StatusAnswer(NamedTuple):
    rows: list[dict[str, Any]]
    applied: str | None  # the digest of the A3sfile the running supervisor applied (None: none runs)
    warnings: dict[str, str]  # what holds now about a service (a restart loop), by service


def status_answer(a3sfile: Path, *, timeout: float = 1.5) -> StatusAnswer:
    """`status_rows`, the digest of the A3sfile the running supervisor applied, and its
    standing warnings."""
    from a3s_dev.control.client import ControlError

    paths = workspace.paths_for(a3sfile)
    client = ControlClient(paths.socket)
    for attempt in (1, 2):
        try:
            answer = client.status(timeout=timeout)
            warnings = answer.get("warnings") or {}
            return StatusAnswer(list(answer["services"]), answer.get("applied"), dict(warnings))
        except ControlError:
            pid = workspace.read_pid(paths)
            who = f"the supervisor (pid {pid})" if pid else "the supervisor"
            raise ControlError(
                f"{who} is not answering (stopped or hung?); `kill -CONT {pid or '<pid>'}` resumes a stopped one, "
                "`a3s down` ends it"
            ) from None
        except NotRunning:
            # A supervisor holding the lock attaches its control API once its first services
            # settle (at most a few seconds): wait for it rather than call its services stopped.
            if attempt == 2 or not workspace.wait_for_supervisor(paths, client.healthz, 5.0):
                break
    return StatusAnswer(rows_without_supervisor(a3sfile), None, {})


def service_place(a3sfile: Path, client: ControlClient, service: str) -> dict[str, Any]:
    """{"dir", "env", "depends_on", "image"} of `service`: from the running supervisor (its automatic
    ports), else computed here by the same function (`service_env`)."""
    from urllib.parse import urlencode

    try:
        return dict(client.request("GET", f"/v1/env?{urlencode({'service': service})}"))
    except NotRunning:
        pass
    from a3s_dev.config.load import load
    from a3s_dev.core.service_env import service_env
    from a3s_dev.run.prepare import choose_ports

    config = load(a3sfile)
    error = unknown_service([service], config.names)
    if error is not None:
        raise error
    config = choose_ports(config)
    defn = config.service(service)
    return {"dir": str(defn.dir), "depends_on": list(defn.depends_on), "env": service_env(defn, config),
            "image": defn.image}
