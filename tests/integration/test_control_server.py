"""The control API on a real Unix socket, against a fake supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import holds, wait_until

from a3s_dev.config.model import DevConfig, ServiceDef
from a3s_dev.control.client import ControlClient, ControlError, NotRunning
from a3s_dev.control.server import serve_control
from a3s_dev.core.events import EventBus, LogBatch, StateChanged
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.errors import UsageError
from a3s_dev.run import workspace

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
        self.failures: dict[str, int] = {}
        self.changed = asyncio.Event()

    def _set(self, name: str, state: ServiceState, **kw: Any) -> None:
        old = self.states[name]
        self.states[name] = replace(old, state=state, **kw)
        self.bus.publish(StateChanged(name, old.state, state, kw.get("reason"), time.time()))
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_until(self, done: Any, timeout: float | None = None) -> bool:
        with anyio.move_on_after(timeout):
            while not done():
                await self.changed.wait()
            return True
        return bool(done())

    def standing_warnings(self) -> dict[str, str]:
        return {}

    def health_failures(self, name: str) -> int:
        return self.failures.get(name, 0)

    async def plan(self) -> Any:
        from a3s_dev.config.graph import plan

        return plan(self.config)

    async def start(self, names: Iterable[str] | None = None, *, deps: bool = True) -> None:
        names = list(names) if names is not None else None
        self.calls.append(("start", (names, deps)))
        for n in names or self.config.names:
            self.pid += 1
            self._set(n, S.RUNNING, pid=self.pid, started_at=time.time())

    async def stop(self, names: Iterable[str] | None = None, *, cause: str | None = None) -> None:
        names = list(names) if names is not None else None
        self.calls.append(("stop", names))
        for n in names or self.config.names:
            self._set(n, S.STOPPED, pid=None)

    async def restart(self, name: str, *, cause: str = "a3s restart") -> None:
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

    async def shutdown(self, cause: str | None = None) -> None:
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
    client: ControlClient
    paths: workspace.RuntimePaths
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
    paths = workspace.paths_for(config.path)
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["loop"] = asyncio.get_running_loop()
        sup.shutdown_requested = asyncio.Event()
        async with anyio.create_task_group() as tg:
            bind = functools.partial(workspace.bind_control_socket, paths)
            await tg.start(lambda task_status: serve_control(sup, bind=bind, path=paths.socket, task_status=task_status))
            started.set()
            await sup.shutdown_requested.wait()
            tg.cancel_scope.cancel()

    thread = threading.Thread(target=anyio.run, args=(main,), daemon=True)
    thread.start()
    assert started.wait(20), "control server did not start"
    s = Served(sup, ControlClient(paths.socket), paths, box["loop"], thread)
    try:
        yield s
    finally:
        with contextlib.suppress(RuntimeError):  # the loop closed: the test ended it (`down`)
            s.loop.call_soon_threadsafe(sup.shutdown_requested.set)
        thread.join(20)


def test_healthz_answers_ok_on_a_private_socket(served: Served) -> None:
    assert served.client.request("GET", "/healthz") == {"status": "ok"}
    assert stat.S_IMODE(served.paths.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(served.paths.state_dir.stat().st_mode) == 0o700


def test_status_lists_services_in_declaration_order_with_spec_keys(served: Served) -> None:
    data = served.client.status()
    assert [s["name"] for s in data["services"]] == ["db", "api", "web"]
    spec_keys = {"name", "state", "pid", "port", "health", "uptime_s", "restarts", "exit_code", "url"}
    assert spec_keys <= set(data["services"][0])
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
    # Whether the change lands while the request waits or just before it arrives, the
    # answer is the changed state, long before its 30 s wait.
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
    served.sup.failures["db"] = 2  # the supervisor counts every failed check
    text = served.client.metrics()
    assert 'a3s_health_check_failures_total{service="db"} 2' in text
    assert "# TYPE a3s_service_up gauge" in text
    assert 'a3s_service_up{service="db"} 1' in text
    assert 'a3s_service_up{service="api"} 0' in text
    assert 'a3s_service_restarts_total{service="web"} 0' in text
    assert "# TYPE a3s_health_check_failures_total counter" in text


def test_a_follower_that_does_not_read_loses_lines_and_is_told_how_many(served: Served) -> None:
    """Issue 21: 200 followers that did not read grew the supervisor from 46 to 125 MB. Each one
    now holds FOLLOWER_BACKLOG lines at most; every other line is counted and said."""
    from a3s_dev.control.server import FOLLOWER_BACKLOG

    stream = served.client.logs(n=0, follow=True)
    next(stream)  # subscribed
    sent = 50 * FOLLOWER_BACKLOG
    for batch in range(50):
        served.publish(LogBatch("api", tuple(f"line {batch} {i} " + "x" * 80 for i in range(FOLLOWER_BACKLOG)),
                                time.time()))
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), served.loop).result(10)  # all handed out: unread
    got: list[dict[str, Any]] = []

    def reader() -> None:
        for item in stream:
            got.append(item)  # noqa: PERF402 - read as the items come

    def notes() -> list[dict[str, Any]]:
        return [g for g in got if g["service"] == "a3s"]

    def accounted() -> int:  # lines delivered plus lines said to be lost
        return sum(g["service"] == "api" for g in got) + sum(int(n["text"].split()[0]) for n in notes())

    threading.Thread(target=reader, daemon=True).start()
    wait_until(lambda: accounted() == sent, timeout=10, message="every line delivered or counted")
    holds(lambda: accounted() == sent, 0.3, message="nothing more")
    assert "log lines dropped here: this client read too slowly" in notes()[0]["text"]
    lines = [g for g in got if g["service"] == "api"]
    assert len(lines) < sent / 2


def test_log_streams_at_once_are_bounded(served: Served) -> None:
    """Issue 21: each follower holds memory (its backlog, its socket's buffers); 200 of them
    that never read grew the supervisor by 60 MB even with the backlog bounded."""
    from a3s_dev.control.server import MAX_FOLLOWERS

    streams = [served.client.logs(n=0, follow=True) for _ in range(MAX_FOLLOWERS)]
    for stream in streams:
        next(stream)  # subscribed
    with pytest.raises(ControlError, match=f"{MAX_FOLLOWERS} log streams are open already"):
        next(served.client.logs(n=0, follow=True))
    assert len(list(served.client.logs(n=0))) == 1  # the history alone is no stream: still served
    streams.pop().close()
    served.publish(LogBatch("api", ("a line",), time.time()))  # a stream whose client left ends at its next line

    def one_more() -> bool:
        try:
            next(served.client.logs(n=0, follow=True))
        except ControlError:
            return False
        return True

    wait_until(one_more, timeout=5, message="a stream again once one closed")
    for stream in streams:
        stream.close()


def test_a_follower_that_leaves_leaves_no_traceback(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 21: every `a3s logs -f` ended with Ctrl-C left `Cannot write to closing transport`
    and its traceback in supervisor.log."""
    stream = served.client.logs(n=0, follow=True)
    next(stream)  # subscribed
    stream.close()  # the client goes, its socket closed
    for i in range(20):
        served.publish(LogBatch("api", tuple(f"after {i}.{j}" for j in range(100)), time.time()))
    # the server writes these to the closed socket within milliseconds; nothing may be logged
    holds(lambda: not [r for r in caplog.records if r.exc_info], 1.0, message="no traceback logged")


def test_log_stream_gives_history_then_follows(served: Served) -> None:
    for i in range(5):
        served.publish(LogBatch("api", (f"old {i}",), time.time()))
    served.publish(LogBatch("db", ("db line",), time.time()))
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
    served.publish(LogBatch("db", ("not for us",), time.time()))
    served.publish(LogBatch("api", ("fresh",), time.time()))
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
    with pytest.raises(NotRunning):
        served.client.status()


def test_client_without_server_is_not_running(tmp_path: Path) -> None:
    client = ControlClient(tmp_path / "nope.sock")
    with pytest.raises(NotRunning):
        client.status()
    assert client.healthz() is False




def test_up_again_never_reruns_a_failed_task_unless_it_is_named(served: Served) -> None:
    """SPEC §8: a migration that is not idempotent must not run twice behind the user's back."""
    served.sup.states["db"] = ServiceStatus("db", S.FAILED, exit_code=1)
    served.sup.config = replace(
        served.sup.config,
        services=tuple(replace(s, oneshot=True) if s.name == "db" else s for s in served.sup.config.services),
    )
    served.client.start(None)
    assert served.sup.calls[-1] == ("start", (["api", "web"], False))
    served.client.start(["db"], deps=False)
    assert served.sup.calls[-1] == ("start", (["db"], False))


def test_plan_names_what_a_start_waits_for_and_starts_nothing(served: Served) -> None:
    answer = served.client.request("GET", "/v1/plan?service=api&deps=1")
    assert answer["waiting_for"] == ["db", "api"]
    assert served.client.request("GET", "/v1/plan")["waiting_for"] == ["db", "api", "web"]
    assert not served.sup.calls


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("GET", "/v1/logs?n=abc", None, 'n must be a whole number of 0 or more, got "abc"'),
        ("GET", "/v1/logs?n=-1", None, "n must be a whole number"),
        ("GET", "/v1/logs?n=%C2%B2", None, "n must be a whole number of 0 or more"),  # ² was a 500
        ("GET", "/v1/tail?service=api&n=" + "9" * 5000, None, "n must be a whole number"),  # so was this
        ("GET", "/v1/status?after=%C2%B2", None, "after must be a whole number"),
        ("GET", "/v1/logs?follow=maybe", None, "follow must be true or false"),
        ("GET", "/v1/tail?service=api&n=x", None, "n must be a whole number"),
        ("GET", "/v1/status?after=x", None, "after must be a whole number"),
        ("GET", "/v1/status?after=1&wait=forever", None, "wait must be a number"),
        ("POST", "/v1/restart", {"services": ["api"], "timeout": "x"}, 'timeout must be a number, got "x"'),
        ("POST", "/v1/restart", {"services": ["api"], "timeout": -1}, "timeout must be 0 or more"),
        ("POST", "/v1/restart", {"services": ["api"], "wait": "yes please"}, "wait must be true or false"),
        ("POST", "/v1/start", {"services": "api"}, "services must be a list of names"),
        ("POST", "/v1/start", {"deps": 3}, "deps must be true or false"),
        ("POST", "/v1/start", {"timeout": True}, "timeout must be a number"),
        ("POST", "/v1/restart", {}, "restart needs at least one service"),
    ],
)
def test_a_bad_parameter_is_a_400_with_a_message_and_nothing_is_done(
    served: Served, method: str, path: str, body: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ControlError, match=message):
        served.client.request(method, path, body)
    assert not served.sup.calls, "something was done before the parameters were checked"


def test_a_body_that_is_not_a_json_object_is_a_400(served: Served) -> None:
    with pytest.raises(ControlError, match="body must be a JSON object"):
        served.client.request("POST", "/v1/start", [1, 2])  # type: ignore[arg-type]
    assert not served.sup.calls
