"""HTTP and TCP probes against real servers, through the supervisor."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support import free_port, stays, write_http_service
from support_supervisor import http, make_config, poll, running, service

from a3s_dev.core.health import HttpProbe, ProbeResources
from a3s_dev.core.state import ServiceState

S = ServiceState
SERVER = "exec python3 server.py"


@pytest.mark.anyio
async def test_http_probe_gates_readiness_on_a_2xx_answer(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path,
        service("good", SERVER, tmp_path, port=free_port(), health=http("/health")),
        service(
            "bad",
            SERVER,
            tmp_path,
            port=free_port(),
            env={"HEALTH_STATUS": "500"},
            health=http("/health"),
        ),
    )

    async with running(config) as (sup, sink, _):
        await sup.start()
        statuses = await sup.wait_ready(["good"], timeout=20)
        assert statuses["good"].state is S.RUNNING and statuses["good"].health == "healthy"
        await poll(
            lambda: any(n == "bad" and "listening" in line for n, line in sink.lines),
            message="bad up",
        )
        # It answers, but with 500: not ready.
        await stays(lambda: sup.status("bad").state is S.STARTING, 0.3, "bad still starting")


REDIRECT = textwrap.dedent(
    """
    import http.server, os
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302); self.send_header("Location", "http://127.0.0.1:1/nowhere")
            self.send_header("Content-Length", "0"); self.end_headers()
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
    """
)


@pytest.mark.anyio
async def test_http_probe_counts_a_redirect_as_healthy_without_following_it(tmp_path: Path) -> None:
    (tmp_path / "redirect.py").write_text(REDIRECT)
    port = free_port()
    config = make_config(
        tmp_path, service("r", "exec python3 redirect.py", tmp_path, port=port, health=http("/"))
    )

    async with running(config) as (sup, _, _):
        await sup.start()
        statuses = await sup.wait_ready(["r"], timeout=20)
        assert statuses["r"].state is S.RUNNING


@pytest.mark.anyio
async def test_http_probe_explains_failures(tmp_path: Path) -> None:
    port = free_port()

    resources = ProbeResources()
    try:
        result = await HttpProbe(
            f"http://127.0.0.1:{port}/health", 0.5, resources, port, "/health"
        ).check()
        assert (result.ok, result.detail, result.reached) == (False, "connection refused", False)
    finally:
        await resources.aclose()
