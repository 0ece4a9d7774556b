"""The control API's pure shapes: readiness, status rows, metrics."""

from __future__ import annotations

from typing import Any

from a3s_dev.control import api
from a3s_dev.core.state import ServiceState, ServiceStatus, status_row

S = ServiceState


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
    r = api.readiness([_svc("a", "running"), _svc("b", "completed")], ["a", "b"])
    assert r.done and r.failed is None


def test_readiness_names_first_failed_and_why() -> None:
    r = api.readiness(
        [_svc("a", "starting"), _svc("b", "failed", exit_code=2), _svc("c", "backoff")],
        ["a", "b", "c"],
    )
    assert not r.done and r.failed == "b" and r.reason == "exit code 2"


def test_readiness_lists_what_it_still_waits_for() -> None:
    r = api.readiness(
        [_svc("a", "pending"), _svc("b", "running", health="unhealthy")], ["a", "b"]
    )
    assert not r.done and r.failed is None and r.waiting == (("a", "pending"), ("b", "running"))


def test_readiness_sees_a_service_that_was_spawned_after_the_request_and_stopped_again() -> None:
    exited = _svc("a", "stopped", exit_code=0, started_at=105.0)
    r = api.readiness([exited], ["a"], since=100.0)
    assert r.failed == "a" and r.reason == "exit code 0"
    # Stopped since before the request: it has not been started yet, so keep waiting.
    old = _svc("a", "stopped", exit_code=-15, started_at=50.0)
    assert api.readiness([old], ["a"], since=100.0) == api.Readiness(
        False, waiting=(("a", "stopped"),)
    )


def test_a_status_row_has_uptime_only_while_live() -> None:
    now = 1000.0
    live = status_row(ServiceStatus("a", S.RUNNING, pid=5, started_at=990.0), now)
    assert live["uptime_s"] == 10.0 and live["pid"] == 5
    done = status_row(
        ServiceStatus("a", S.COMPLETED, pid=5, started_at=990.0, exit_code=0), now
    )
    assert done["uptime_s"] is None and done["pid"] is None and done["exit_code"] == 0


def test_the_proxy_counts_its_two_paths_in_its_own_metrics() -> None:
    from a3s_dev.proxy.direct import ProxyCounts
    from a3s_dev.proxy.pages import render_proxy_metrics

    assert "a3s_proxy" not in api.render_metrics([ServiceStatus("api", S.RUNNING)], {})
    text = render_proxy_metrics(ProxyCounts(direct=7, handed_over=2), 3)
    assert "a3s_proxy_projects 3\n" in text
    assert "a3s_proxy_direct_requests_total 7\n" in text
    assert "a3s_proxy_handed_over_connections_total 2\n" in text


def test_metrics_escape_label_values() -> None:
    text = api.render_metrics([ServiceStatus('we"ird', S.RUNNING)], {})
    assert 'service="we\\"ird"' in text


def test_a_clean_exit_under_always_is_no_failure_and_a_service_ready_once_stays_ready() -> None:
    """SPEC §16: `up -d` said `always failed: exit code 0, restarting in 1s` and exited 1."""
    clean = _svc("always", "backoff", exit_code=0)
    first = api.readiness([clean, _svc("slow", "starting")], ["always", "slow"])
    assert first.failures == () and first.waiting[0] == ("always", "backoff")
    ready_then_exited = api.readiness([_svc("always", "running"), _svc("slow", "starting")], ["always", "slow"])
    later = api.readiness([clean, _svc("slow", "running")], ["always", "slow"], was_ready=ready_then_exited.ready)
    assert later.done and later.ready == {"always", "slow"}


def test_a_crash_while_starting_is_a_failure_and_every_failure_is_named() -> None:
    r = api.readiness(
        [_svc("a", "backoff", exit_code=1, reason="exit code 1, restarting in 1s"), _svc("b", "failed", exit_code=2),
         _svc("c", "running")],
        ["a", "b", "c"],
    )
    assert not r.done and r.failures == (("a", "exit code 1, restarting in 1s"), ("b", "exit code 2"))
    assert r.failed == "a" and r.ready == {"c"}


def test_a_count_is_ascii_digits_and_not_too_many_of_them() -> None:
    assert [api.parse_count(t) for t in ("0", "42", "999999999")] == [0, 42, 999_999_999]
    assert [api.parse_count(t) for t in ("²", "٣", "-1", "1.5", "", "9" * 10)] == [None] * 6
