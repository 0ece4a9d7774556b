"""run.serve.Run.serve: the supervisor and its attachments in one task group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from support import free_port, write_http_service
from support_supervisor import make_config, service

from a3s_dev.config.model import DevConfig
from a3s_dev.core.state import ServiceState
from a3s_dev.errors import A3sError, first_user_error
from a3s_dev.run.options import UpOptions
from a3s_dev.run.serve import Attachment, Run
from a3s_dev.run.workspace import paths_for

S = ServiceState


def serving(config: DevConfig, *extra: Attachment) -> Run:
    """A run of `config` with no proxy and no watcher, `extra` attached once the services are up;
    its `serve` alone (no lock, no first wave: the supervisor spawns everything)."""
    return Run(config, UpOptions(proxy=False, watch=False), paths_for(config.path), extra=extra)


@pytest.mark.anyio
async def test_attachments_start_once_services_are_ready_and_end_with_the_supervisor(
    tmp_path: Path,
) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path, service("api", "exec python3 server.py", tmp_path, port=free_port())
    )
    seen: list[str] = []

    async def attachment(supervisor: Any, *, task_status: Any) -> None:
        seen.append(f"started with api {supervisor.status('api').state.value}")
        task_status.started()
        try:
            await supervisor.shutdown()  # like `a3s down` through the control API
            await anyio.sleep_forever()
        finally:
            seen.append("cancelled")

    with anyio.fail_after(30):
        await serving(config, attachment).serve()
    assert seen == ["started with api running", "cancelled"]


def test_an_attachment_error_stops_the_services_and_surfaces_as_one_a3s_error(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, service("worker", "sleep 30", tmp_path))

    async def broken(supervisor: Any, *, task_status: Any) -> None:
        raise A3sError("proxy: port 1234 is already in use")

    run = serving(config, broken)

    async def body() -> None:
        with anyio.fail_after(30):
            await run.serve()

    with pytest.raises(BaseException) as info:
        anyio.run(body)
    error = first_user_error(info.value)
    assert error is not None and error.message == "proxy: port 1234 is already in use"
    assert run.supervisor is not None and run.supervisor.status("worker").state is S.STOPPED
