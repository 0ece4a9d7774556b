"""SPEC §5 with real processes: cmd and log probes, start_timeout, on_failure = restart,
commands that cannot run, and the last probe result."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from support import stays, write_http_service
from support_supervisor import make_config, poll, running, service

from a3s_dev.config.model import HealthConfig, OnFailure, ProbeKind, RestartMode
from a3s_dev.core.policy import ExponentialBackoff
from a3s_dev.core.state import ServiceState

S = ServiceState
pytestmark = pytest.mark.timeout(60)


@pytest.mark.anyio
async def test_a_cmd_probe_gates_readiness_on_its_exit_code_and_keeps_its_output_as_the_result(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    probe = HealthConfig(type=ProbeKind.CMD, command=f"test -f {ready} && echo accepting || (echo no file; exit 2)")
    config = make_config(tmp_path, service("db", "exec sleep 60", tmp_path, health=probe))

    async with running(config) as (sup, sink, _):
        await sup.start()
        await poll(lambda: sup.status("db").probe == "test exited 2: no file", message="the failing result")
        await stays(lambda: sup.status("db").state is S.STARTING, 0.3, "db not ready without the file")
        ready.write_text("")
        began = time.monotonic()
        await poll(lambda: sup.status("db").state is S.RUNNING, message="db ready once the command passes")
        assert time.monotonic() - began < 1.0
        assert sup.status("db").probe == "test exited 0: accepting"
        assert not any("no file" in line for _, line in sink.lines), "probe output is not the service's log"


@pytest.mark.anyio
async def test_a_log_probe_is_ready_at_the_first_matching_line_of_the_current_run(tmp_path: Path) -> None:
    cmd = "echo booting; sleep 0.3; echo 'listening on 127.0.0.1:7700'; exec sleep 60"
    config = make_config(tmp_path, service("search", cmd, tmp_path, health=HealthConfig(type=ProbeKind.LOG, pattern=r"listening on .*:\d+")))

    async with running(config) as (sup, sink, rec):
        await sup.start()
        await poll(lambda: sup.status("search").probe == r"waiting for /listening on .*:\d+/", message="waiting")
        await poll(lambda: sup.status("search").state is S.RUNNING, message="ready")
        line_at = next(c.at for c in rec.changes if c.new is S.RUNNING)
        assert any("listening on" in line for _, line in sink.lines)
        assert line_at > 0


@pytest.mark.anyio
async def test_not_ready_within_start_timeout_is_failed_with_the_last_probe_result(tmp_path: Path) -> None:
    probe = HealthConfig(type=ProbeKind.CMD, command="echo still recovering; exit 2", start_timeout=0.6)
    config = make_config(tmp_path, service("db", "exec sleep 60", tmp_path, health=probe, restart=RestartMode.NEVER))

    async with running(config) as (sup, _, _):
        await sup.start()
        await poll(lambda: sup.status("db").state is S.FAILED, message="db failed")
        assert sup.status("db").reason == "not ready after 600ms: echo exited 2: still recovering"
        assert sup.status("db").pid is None  # the process was stopped


@pytest.mark.anyio
async def test_start_timeout_then_the_restart_policy_applies_as_for_a_crash(tmp_path: Path) -> None:
    probe = HealthConfig(type=ProbeKind.CMD, command="exit 1", start_timeout=0.3)
    config = make_config(tmp_path, service("api", "exec sleep 60", tmp_path, health=probe))
    delays: list[float] = []

    async def no_wait(delay: float) -> None:
        delays.append(delay)
        await anyio.lowlevel.checkpoint()

    async with running(config, policy=ExponentialBackoff(), sleep=no_wait) as (sup, _, rec):
        await sup.start()
        await poll(lambda: len(delays) >= 2, message="two restarts")
        reasons = [c.reason for c in rec.changes if c.new is S.BACKOFF]
        assert reasons[0] == "not ready after 300ms: exit exited 1, restarting in 1s"
        assert delays[:2] == [1.0, 2.0] and sup.status("api").restarts >= 1


@pytest.mark.anyio
async def test_on_failure_restart_restarts_a_service_whose_probe_keeps_failing(tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    flag.write_text("")
    probe = HealthConfig(
        type=ProbeKind.CMD, command=f"test -f {flag}", interval=0.05, retries=2, on_failure=OnFailure.RESTART
    )
    config = make_config(tmp_path, service("api", "exec sleep 60", tmp_path, health=probe))

    async def no_wait(delay: float) -> None:
        await anyio.lowlevel.checkpoint()

    async with running(config, sleep=no_wait) as (sup, _, rec):
        await sup.start()
        await poll(lambda: sup.status("api").state is S.RUNNING, message="running")
        first = sup.status("api").pid
        flag.unlink()
        await poll(lambda: sup.status("api").restarts >= 1, message="a restart for failing probes")
        assert any(c.new is S.BACKOFF and (c.reason or "").startswith("unhealthy (2 failed probes") for c in rec.changes)
        flag.write_text("")
        await poll(lambda: sup.status("api").state is S.RUNNING and sup.status("api").pid != first, message="back")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        ("uvicron app:app --reload", "command not found: uvicron (is it installed and on PATH?)"),
        ("exec ./server.sh", "permission denied: ./server.sh (is it executable?)"),
    ],
)
async def test_a_command_that_cannot_run_fails_at_once_and_is_not_retried(tmp_path: Path, cmd: str, reason: str) -> None:
    (tmp_path / "server.sh").write_text("#!/bin/sh\necho hi\n")  # not executable
    config = make_config(tmp_path, service("api", cmd, tmp_path))

    async with running(config) as (sup, sink, rec):
        await sup.start()
        await poll(lambda: sup.status("api").state is S.FAILED, message="failed")
        assert sup.status("api").reason == reason
        await stays(lambda: [c.new for c in rec.changes].count(S.STARTING) == 1, 0.5, "no retry")
        assert any(f"api failed: {reason}" in line for _, line in sink.lines)


@pytest.mark.anyio
async def test_an_http_probe_result_names_the_status_and_sends_its_user_agent(tmp_path: Path) -> None:
    from support import free_port

    from a3s_dev import __version__

    write_http_service(tmp_path)
    port = free_port()
    config = make_config(
        tmp_path,
        service("api", "exec python3 server.py", tmp_path, port=port, health=HealthConfig(type=ProbeKind.HTTP, path="/health")),
    )

    async with running(config) as (sup, _, _):
        await sup.start()
        await poll(lambda: sup.status("api").state is S.RUNNING, message="running")
        assert sup.status("api").probe == "GET /health → 200"
        import urllib.request

        def seen() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/seen-agents", timeout=5) as r:
                return str(r.read().decode())

        assert f"a3s-health/{__version__}" in await anyio.to_thread.run_sync(seen)


@pytest.mark.anyio
async def test_conditions_started_and_completed_gate_on_what_they_say(tmp_path: Path) -> None:
    """`cache = "started"` does not wait for its probe; `migrate = "completed"` waits for exit 0."""
    from a3s_dev.config.model import Condition

    gate = tmp_path / "cache-ready"
    never_ready = HealthConfig(type=ProbeKind.CMD, command=f"test -f {gate}")
    migrate_done = tmp_path / "migrated"
    config = make_config(
        tmp_path,
        service("cache", "exec sleep 60", tmp_path, health=never_ready),
        service("migrate", f"sleep 0.3; touch {migrate_done}", tmp_path, oneshot=True),
        service("api", "exec sleep 60", tmp_path, depends_on=("cache", "migrate")),
    )
    api = config.service("api")
    import dataclasses

    config = dataclasses.replace(
        config,
        services=(
            config.service("cache"),
            config.service("migrate"),
            dataclasses.replace(api, conditions={"cache": Condition.STARTED, "migrate": Condition.COMPLETED}),
        ),
    )

    async with running(config) as (sup, _, _):
        await sup.start()
        await poll(lambda: sup.status("api").state is S.RUNNING, message="api started")
        assert migrate_done.exists(), "api started before the task completed"
        assert sup.status("cache").state is S.STARTING, "cache was started, never ready: that was enough"


V6_ONLY = """
import http.server, os, socket

class V6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello over ::1"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    do_POST = do_GET
    def log_message(self, *args):
        pass

print("listening on ::1 only", flush=True)
V6(("::1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.mark.anyio
async def test_a_service_listening_on_ipv6_loopback_only_is_seen_ready_taken_and_proxied(tmp_path: Path) -> None:
    """SPEC §5: Vite binds `localhost`, ::1 first on macOS; it used to wait forever."""
    import urllib.request

    from support import free_port

    from a3s_dev.proxy.server import serve_proxy
    from a3s_dev.system.ports import port_in_use

    (tmp_path / "v6.py").write_text(V6_ONLY)
    port = free_port()
    config = make_config(
        tmp_path,
        service("vite", "exec python3 v6.py", tmp_path, port=port, health=HealthConfig(type=ProbeKind.HTTP, path="/")),
    )

    async with running(config) as (sup, _, _):
        await sup.start()
        await poll(lambda: sup.status("vite").state is S.RUNNING, message="ready on ::1")
        assert sup.status("vite").probe == "GET / → 200"
        assert port_in_use(port), "the port-in-use check sees a ::1 listener"
        async with anyio.create_task_group() as tg:
            proxy_port = await tg.start(lambda task_status: serve_proxy(sup, 0, task_status=task_status))

            def ask(method: str) -> str:
                data = b"x" if method == "POST" else None
                req = urllib.request.Request(
                    f"http://127.0.0.1:{proxy_port}/", data=data, method=method, headers={"Host": "vite.localhost"}
                )
                with urllib.request.urlopen(req, timeout=10) as r:
                    return str(r.read().decode())

            assert await anyio.to_thread.run_sync(ask, "GET") == "hello over ::1"  # the direct path
            assert await anyio.to_thread.run_sync(ask, "POST") == "hello over ::1"  # aiohttp's path
            tg.cancel_scope.cancel()
