"""The proxy in front of the real Supervisor: restarts, holds and error pages with real processes."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import pytest
from support import free_port, write_http_service
from support_supervisor import make_config, poll, running, service
from yarl import URL

from a3s_dev.config.model import DevConfig
from a3s_dev.core.state import ServiceState
from a3s_dev.core.supervisor import Supervisor
from a3s_dev.proxy.server import serve_proxy

S = ServiceState


@asynccontextmanager
async def stack(config: DevConfig) -> AsyncIterator[tuple[Supervisor, int]]:
    """A running Supervisor with every service started and ready, and the proxy on an OS port."""
    async with running(config) as (sup, _, _):
        await sup.start()
        statuses = await sup.wait_ready(config.names, timeout=20)
        assert all(s.state is S.RUNNING for s in statuses.values()), statuses
        async with anyio.create_task_group() as tg:
            port = await tg.start(lambda task_status: serve_proxy(sup, 0, task_status=task_status))
            try:
                yield sup, port
            finally:
                tg.cancel_scope.cancel()


async def get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    async with aiohttp.ClientSession() as client:
        # encoded=True: the path goes out as written (the log-escaping test sends raw "<")
        url = URL(f"http://127.0.0.1:{port}{path}", encoded=True)
        async with client.get(url, headers={"Host": host}) as r:
            return r.status, await r.text()


def api(tmp_path: Path, **env: str) -> DevConfig:
    write_http_service(tmp_path)
    cmd = f"exec {sys.executable} server.py"
    return make_config(tmp_path, service("api", cmd, tmp_path, port=free_port(), env=env))


def pid_of(text: str) -> int:
    return int(text.split(" pid ")[1].split()[0])


@pytest.mark.anyio
async def test_proxy_follows_a_restart_without_restarting_itself(tmp_path: Path) -> None:
    async with stack(api(tmp_path)) as (sup, port):
        status, text = await get(port, "api.localhost")
        assert status == 200 and text.startswith("hello from api")
        first = pid_of(text)
        await sup.restart("api")
        await sup.wait_ready(["api"], timeout=20)
        status, text = await get(port, "api.localhost")
        assert status == 200, text
        assert pid_of(text) != first and pid_of(text) == sup.status("api").pid


@pytest.mark.anyio
async def test_request_sent_during_a_restart_is_held_and_answered_by_the_new_process(tmp_path: Path) -> None:
    # the new process takes 1 s before it listens: without the hold this is a 502
    config = api(tmp_path, DELAY="1.0")

    async with stack(config) as (sup, port):
        _, text = await get(port, "api.localhost")
        first = pid_of(text)
        result: list[tuple[int, str]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(sup.restart, "api")
            await poll(lambda: sup.status("api").state is not S.RUNNING, message="restart begun")
            began = time.monotonic()
            result.append(await get(port, "api.localhost"))
            held = time.monotonic() - began
        status, text = result[0]
        assert status == 200, text
        assert pid_of(text) != first, "answered by the old process"
        assert held >= 0.5, f"answered after {held:.2f}s: not held until the new process was ready"


@pytest.mark.anyio
async def test_stopped_service_page_names_state_and_shows_its_last_log_lines(tmp_path: Path) -> None:
    async with stack(api(tmp_path)) as (sup, port):
        await get(port, "api.localhost", "/<script>")  # the service logs this path
        await poll(lambda: any("<script>" in line for line in sup.tail("api")), message="request logged")
        await sup.stop(["api"])
        began = time.monotonic()
        status, text = await get(port, "api.localhost")
        assert time.monotonic() - began < 2, "a stopped service is not held"
        assert status == 502
        assert "api is stopped" in text
        assert "api listening on" in text  # its log tail
        assert "/&lt;script&gt;" in text and "<script>" not in text


@pytest.mark.anyio
async def test_crashed_service_in_backoff_is_held_until_it_is_back(tmp_path: Path) -> None:
    # crashes on its first run (no marker yet), then serves: the request waits through the backoff
    marker = tmp_path / "ran-once"
    write_http_service(tmp_path)
    cmd = f"if [ -e {marker} ]; then exec {sys.executable} server.py; else touch {marker}; sleep 0.3; exit 3; fi"
    config = make_config(tmp_path, service("api", cmd, tmp_path, port=free_port()))

    async with running(config) as (sup, _, _):
        await sup.start()
        async with anyio.create_task_group() as tg:
            port = await tg.start(lambda task_status: serve_proxy(sup, 0, task_status=task_status))
            await poll(lambda: sup.status("api").state is S.BACKOFF, message="api in backoff")
            status, text = await get(port, "api.localhost")
            assert status == 200 and text.startswith("hello from api"), text
            assert sup.status("api").restarts == 1
            tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["localhost", "a3s.localhost"])
async def test_index_page_shows_live_states(tmp_path: Path, host: str) -> None:
    async with stack(api(tmp_path)) as (sup, port):
        status, text = await get(port, host)
        assert status == 200 and 'data-service="api"' in text
        assert '<span class="state state-running">running</span>' in text
        assert f'href="http://api.{sup.config.project}.localhost:{port}/"' in text
