"""The control API on a real Unix socket, against a fake supervisor; and its pure helpers."""

from __future__ import annotations

import asyncio
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import wait_until

from a3s_dev import control, runtime
from a3s_dev.config import DevConfig, ServiceDef
from a3s_dev.errors import UsageError
from a3s_dev.events import EventBus, HealthChanged, LogLine, StateChanged
from a3s_dev.state import ServiceState, ServiceStatus

S = ServiceState


class FakeSupervisor:
    """Implements the Supervisor API with instant state changes; records what it was asked."""

    def __init__(self, config: DevConfig) -> None:
        self.config = config
        self.bus = EventBus()
        self.calls: list[tuple[str, Any]] = []
        self.states = {n: ServiceStatus(n, S.STOPPED) for n in config.names}
        self.restart_outcome = S.RUNNING
        self.pid = 1000
        self.shutdown_requested: asyncio.Event | None = None

    def _set(self, name: str, state: ServiceState, **kw: Any) -> None:
        old = self.states[name]
        self.states[name] = replace(old, state=state, **kw)
        self.bus.publish(StateChanged(name, old.state, state, kw.get("reason"), time.time()))

    async def start(self, names: Iterable[str] | None = None, *, deps: bool = True) -> None:
        names = list(names) if names is not None else None
        self.calls.append(("start", (names, deps)))
        for n in names or self.config.names:
            self.pid += 1
            self._set(n, S.RUNNING, pid=self.pid, started_at=time.time())

    async def stop(self, names: Iterable[str] | None = None) -> None:
        names = list(names) if names is not None else None
        self.calls.append(("stop", names))
        for n in names or self.config.names:
            self._set(n, S.STOPPED, pid=None)

    async def restart(self, name: str) -> None:
        self.calls.append(("restart", name))
        self._set(name, S.STARTING)

        async def later() -> None:
            await asyncio.sleep(0.05)
            self.pid += 1
            self._set(
                name,
                self.restart_outcome,
                pid=self.pid,
                reason="exit code 3" if self.restart_outcome == S.FAILED else None,
            )

        asyncio.get_running_loop().create_task(later())

    async def shutdown(self) -> None:
        self.calls.append(("shutdown", None))
        assert self.shutdown_requested is not None
        self.shutdown_requested.set()

    def status(self, name: str) -> ServiceStatus:
        return self.states[name]

    def snapshot(self) -> list[ServiceStatus]:
        return [self.states[n] for n in self.config.names]

    def tail(self, name: str, n: int = 20) -> list[str]:
        return [f"{name} line {i}" for i in range(n)]


@dataclass
class Served:
    sup: FakeSupervisor
    client: control.ControlClient
    paths: runtime.RuntimePaths
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    def publish(self, event: Any) -> None:
        self.loop.call_soon_threadsafe(self.sup.bus.publish, event)


def _config(tmp_path: Path) -> DevConfig:
    a3sfile = tmp_path / "A3sfile.hcl"
    a3sfile.write_text("")
    return DevConfig(
        path=a3sfile,
        services=(
            ServiceDef("db", "true", tmp_path, port=5432),
            ServiceDef("api", "true", tmp_path, port=8080, depends_on=("db",)),
            ServiceDef("web", "true", tmp_path),
        ),
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    config = _config(tmp_path)
    sup = FakeSupervisor(config)
    paths = runtime.paths_for(config.path)
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["loop"] = asyncio.get_running_loop()
        sup.shutdown_requested = asyncio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(control.serve_control, sup, paths.state_dir)
            started.set()
            await sup.shutdown_requested.wait()
            tg.cancel_scope.cancel()

    thread = threading.Thread(target=anyio.run, args=(main,), daemon=True)
    thread.start()
    assert started.wait(20), "control server did not start"
    s = Served(sup, control.ControlClient(paths.socket), paths, box["loop"], thread)
    try:
        yield s
    finally:
        if thread.is_alive():
            s.loop.call_soon_threadsafe(sup.shutdown_requested.set)
        thread.join(20)


def test_healthz_answers_ok_on_a_private_socket(served: Served) -> None:
    assert served.client.request("GET", "/healthz") == {"status": "ok"}
    assert stat.S_IMODE(served.paths.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(served.paths.state_dir.stat().st_mode) == 0o700


def test_status_lists_services_in_declaration_order_with_spec_keys(served: Served) -> None:
    data = served.client.status()
    assert [s["name"] for s in data["services"]] == ["db", "api", "web"]
    assert set(control.SPEC_KEYS) <= set(data["services"][0])
    assert data["services"][0]["state"] == "stopped"
    assert data["services"][0]["pid"] is None and data["services"][0]["uptime_s"] is None


def test_start_passes_names_and_deps_and_reports_what_to_wait_for(served: Served) -> None:
    result = served.client.start(["api"], deps=True)
    assert served.sup.calls[-1] == ("start", (["db", "api"], False))  # the closure, computed here
    assert result["waiting_for"] == ["db", "api"]
    assert served.client.start(["api"], deps=False)["waiting_for"] == ["api"]
    assert served.client.start(None)["waiting_for"] == ["db", "api", "web"]
    running = {s["name"]: s for s in served.client.status()["services"]}
    assert running["api"]["state"] == "running" and running["api"]["pid"]
    assert running["api"]["uptime_s"] is not None


def test_start_does_not_rerun_a_completed_oneshot(served: Served) -> None:
    served.sup.states["db"] = ServiceStatus("db", S.COMPLETED, exit_code=0)
    result = served.client.start(["api"], deps=True)
    assert served.sup.calls[-1] == ("start", (["api"], False))
    assert result["waiting_for"] == ["db", "api"]
    served.sup.states["api"] = ServiceStatus("api", S.COMPLETED, exit_code=0)
    calls = len(served.sup.calls)
    served.client.start(["api"], deps=True)
    assert len(served.sup.calls) == calls  # nothing left to start


def test_start_with_wait_returns_ok_when_ready(served: Served) -> None:
    result = served.client.start(["web"], wait=True, timeout=5)
    assert result["ok"] is True and result["failed"] is None


def test_unknown_service_is_a_usage_error_with_suggestion(served: Served) -> None:
    with pytest.raises(UsageError, match="unknown service 'apu' \\(did you mean 'api'\\?\\)"):
        served.client.start(["apu"])
    assert not [c for c in served.sup.calls if c[0] == "start"]


def test_stop_passes_names(served: Served) -> None:
    served.client.start(None)
    data = served.client.stop(["db"])
    assert served.sup.calls[-1] == ("stop", ["db"])
    assert {s["name"]: s["state"] for s in data["services"]}["db"] == "stopped"


def test_restart_waits_until_running_again(served: Served) -> None:
    served.client.start(None)
    before = {s["name"]: s["pid"] for s in served.client.status()["services"]}
    result = served.client.restart(["api"], timeout=5)
    assert result["ok"] is True
    after = {s["name"]: s["pid"] for s in result["services"]}
    assert after["api"] != before["api"] and after["db"] == before["db"]


def test_restart_that_fails_reports_reason_and_tail(served: Served) -> None:
    served.sup.restart_outcome = S.FAILED
    result = served.client.restart(["api"], timeout=5)
    assert result["ok"] is False
    assert result["failed"] == "api" and result["reason"] == "exit code 3"
    assert len(result["tail"]) == 20


def test_restart_that_never_gets_ready_times_out(served: Served) -> None:
    served.sup.restart_outcome = S.STARTING
    result = served.client.restart(["api"], timeout=0.3)
    assert result["ok"] is False and "not ready after 0.3s" in result["reason"]


def test_status_long_poll_answers_at_the_next_change(served: Served) -> None:
    seq = served.client.status()["seq"]
    began = time.monotonic()
    assert served.client.status(after=seq, wait=0.2)["seq"] == seq  # nothing changed: after `wait`
    assert time.monotonic() - began >= 0.15
    box: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: box.update(served.client.status(after=seq, wait=30)))
    waiter.start()
    time.sleep(0.1)
    began = time.monotonic()
    served.publish(StateChanged("api", S.STOPPED, S.STARTING, None, time.time()))
    waiter.join(10)
    assert time.monotonic() - began < 5 and box["seq"] == seq + 1


def test_tail_comes_from_the_supervisor(served: Served) -> None:
    assert served.client.tail("api", 3) == ["api line 0", "api line 1", "api line 2"]
    with pytest.raises(UsageError, match="did you mean 'api'"):
        served.client.tail("apo")


def test_metrics_are_prometheus_text_labelled_by_service(served: Served) -> None:
    served.client.start(["db"], deps=False)
    served.publish(HealthChanged("db", False, "refused", time.time()))
    served.publish(HealthChanged("db", False, "refused", time.time()))
    wait_until(lambda: 'a3s_health_check_failures_total{service="db"} 2' in served.client.metrics())
    text = served.client.metrics()
    assert "# TYPE a3s_service_up gauge" in text
    assert 'a3s_service_up{service="db"} 1' in text
    assert 'a3s_service_up{service="api"} 0' in text
    assert 'a3s_service_restarts_total{service="web"} 0' in text
    assert "# TYPE a3s_health_check_failures_total counter" in text


def test_log_stream_gives_history_then_follows(served: Served) -> None:
    for i in range(5):
        served.publish(LogLine("api", f"old {i}", time.time()))
    served.publish(LogLine("db", "db line", time.time()))
    wait_until(lambda: len(list(served.client.logs(["api"]))) == 6, message="history of 5 lines")
    history = list(served.client.logs(["api"], n=2))
    assert "since" in history[0]
    assert [h["text"] for h in history[1:]] == ["old 3", "old 4"]

    got: list[dict[str, Any]] = []
    stream = served.client.logs(["api"], n=0, follow=True)
    got.append(next(stream))  # the {"since"} header: we are subscribed now

    def reader() -> None:
        for item in stream:
            got.append(item)  # noqa: PERF402 - the test reads `got` as items come

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    served.publish(LogLine("db", "not for us", time.time()))
    served.publish(LogLine("api", "fresh", time.time()))
    wait_until(lambda: len(got) >= 2, timeout=5, message="followed line")
    assert got[1]["text"] == "fresh" and got[1]["service"] == "api"
    # The stream ends when the supervisor goes away.
    served.client.down()
    t.join(10)
    assert not t.is_alive()


def test_down_shuts_down_and_removes_the_socket(served: Served) -> None:
    assert served.client.down()["status"] == "stopping"
    served.thread.join(10)
    assert ("shutdown", None) in served.sup.calls
    assert not served.paths.socket.exists()
    with pytest.raises(control.NotRunning):
        served.client.status()


def test_client_without_server_is_not_running(tmp_path: Path) -> None:
    client = control.ControlClient(tmp_path / "nope.sock")
    with pytest.raises(control.NotRunning):
        client.status()
    assert client.healthz() is False


# ---------------------------------------------------------------------------- pure


def _svc(name: str, state: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "health": kw.get("health"),
        "reason": kw.get("reason"),
        "exit_code": kw.get("exit_code"),
        "started_at": kw.get("started_at"),
    }


def test_readiness_counts_running_and_completed_as_ready() -> None:
    r = control.readiness([_svc("a", "running"), _svc("b", "completed")], ["a", "b"])
    assert r.done and r.failed is None


def test_readiness_names_first_failed_and_why() -> None:
    r = control.readiness(
        [_svc("a", "starting"), _svc("b", "failed", exit_code=2), _svc("c", "backoff")],
        ["a", "b", "c"],
    )
    assert not r.done and r.failed == "b" and r.reason == "exit code 2"


def test_readiness_lists_what_it_still_waits_for() -> None:
    r = control.readiness(
        [_svc("a", "pending"), _svc("b", "running", health="unhealthy")], ["a", "b"]
    )
    assert not r.done and r.failed is None and r.waiting == (("a", "pending"), ("b", "running"))


def test_readiness_sees_a_service_that_was_spawned_after_the_request_and_stopped_again() -> None:
    exited = _svc("a", "stopped", exit_code=0, started_at=105.0)
    r = control.readiness([exited], ["a"], since=100.0)
    assert r.failed == "a" and r.reason == "exit code 0"
    # Stopped since before the request: it has not been started yet, so keep waiting.
    old = _svc("a", "stopped", exit_code=-15, started_at=50.0)
    assert control.readiness([old], ["a"], since=100.0) == control.Readiness(
        False, waiting=(("a", "stopped"),)
    )


def test_status_dict_has_uptime_only_while_live() -> None:
    now = 1000.0
    live = control.status_dict(ServiceStatus("a", S.RUNNING, pid=5, started_at=990.0), now)
    assert live["uptime_s"] == 10.0 and live["pid"] == 5
    done = control.status_dict(
        ServiceStatus("a", S.COMPLETED, pid=5, started_at=990.0, exit_code=0), now
    )
    assert done["uptime_s"] is None and done["pid"] is None and done["exit_code"] == 0


def test_metrics_count_the_proxys_two_paths_while_it_runs() -> None:
    from a3s_dev.proxy import ProxyCounts

    assert "a3s_proxy" not in control.render_metrics([ServiceStatus("api", S.RUNNING)], {})
    text = control.render_metrics([ServiceStatus("api", S.RUNNING)], {}, ProxyCounts(direct=7, handed_over=2))
    assert "a3s_proxy_direct_requests_total 7\n" in text
    assert "a3s_proxy_handed_over_connections_total 2\n" in text


def test_metrics_escape_label_values() -> None:
    text = control.render_metrics([ServiceStatus('we"ird', S.RUNNING)], {})
    assert 'service="we\\"ird"' in text
