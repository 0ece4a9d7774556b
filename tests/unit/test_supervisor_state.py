"""The pure state machine, the restart policy and the wording of reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from a3s_dev.config.model import RestartMode, ServiceDef
from a3s_dev.core import state as st
from a3s_dev.core.policy import ExponentialBackoff, wants_restart
from a3s_dev.core.state import ServiceState

S = ServiceState

# Every allowed move, written out once more by hand: the table must match it exactly.
ALLOWED = {
    (S.PENDING, S.STARTING),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.STOPPING),
    (S.PENDING, S.STOPPED),
    (S.STARTING, S.RUNNING),
    (S.STARTING, S.COMPLETED),
    (S.STARTING, S.BACKOFF),
    (S.STARTING, S.FAILED),
    (S.STARTING, S.STOPPING),
    (S.STARTING, S.STOPPED),
    (S.RUNNING, S.UNHEALTHY),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.BACKOFF),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.STOPPING),
    (S.RUNNING, S.STOPPED),
    (S.UNHEALTHY, S.RUNNING),
    (S.UNHEALTHY, S.BACKOFF),
    (S.UNHEALTHY, S.FAILED),
    (S.UNHEALTHY, S.STOPPING),
    (S.UNHEALTHY, S.STOPPED),
    (S.BACKOFF, S.PENDING),
    (S.BACKOFF, S.STARTING),
    (S.BACKOFF, S.FAILED),
    (S.BACKOFF, S.STOPPING),
    (S.BACKOFF, S.STOPPED),
    (S.STOPPING, S.STOPPED),
    (S.STOPPED, S.PENDING),
    (S.STOPPED, S.STARTING),
    (S.STOPPED, S.STOPPING),
    (S.STOPPED, S.FAILED),
    (S.COMPLETED, S.PENDING),
    (S.COMPLETED, S.STARTING),
    (S.COMPLETED, S.STOPPING),
    (S.COMPLETED, S.STOPPED),
    (S.FAILED, S.PENDING),
    (S.FAILED, S.STARTING),
    (S.FAILED, S.STOPPING),
    (S.FAILED, S.STOPPED),
    (S.STOPPED, S.IDLE),  # idle_stop (SPEC §13)
    (S.IDLE, S.PENDING),  # a request, `up SVC` or a dependent starts it
    (S.IDLE, S.STARTING),
    (S.IDLE, S.STOPPING),
    (S.IDLE, S.STOPPED),  # `a3s down`
    (S.IDLE, S.FAILED),  # it could not even be spawned
}


@pytest.mark.parametrize("old", list(S))
@pytest.mark.parametrize("new", list(S))
def test_transition_table_allows_exactly_the_listed_moves(
    old: ServiceState, new: ServiceState
) -> None:
    expected = old is new or (old, new) in ALLOWED
    assert st.can_transition(old, new) is expected
    if expected:
        st.check_transition(old, new)
    else:
        with pytest.raises(st.InvalidTransition, match=f"{old.value} -> {new.value}"):
            st.check_transition(old, new)


def test_every_state_has_a_row_and_values_match_the_contract() -> None:
    assert set(st.TRANSITIONS) == set(S)
    assert [s.value for s in S] == [
        "pending",
        "starting",
        "running",
        "unhealthy",
        "backoff",
        "stopping",
        "stopped",
        "completed",
        "failed",
        "idle",
    ]
    assert st.READY_STATES == {S.RUNNING, S.COMPLETED}


def test_reasons_are_worded_for_humans() -> None:
    assert st.waiting_for(["db", "cache"]) == "waiting for db, cache"
    assert st.dependency_failed("db") == "dependency db failed"
    assert st.dependency_exited("db") == "dependency db exited and is not restarted"
    assert st.exited(3) == "exit code 3"
    assert st.exited(-9) == "killed by SIGKILL"
    assert st.exited(-200) == "killed by signal 200"
    assert st.restarting_in(1, 2.0) == "exit code 1, restarting in 2s"
    assert [st.format_delay(d) for d in (0.25, 1.0, 1.5, 30.0)] == ["250ms", "1s", "1.5s", "30s"]


def _svc(restart: RestartMode = RestartMode.ON_FAILURE, oneshot: bool = False) -> ServiceDef:
    return ServiceDef("api", "true", Path("."), restart=restart, oneshot=oneshot)


@pytest.mark.parametrize(
    ("restart", "oneshot", "code", "expected"),
    [
        (RestartMode.ON_FAILURE, False, 1, True),
        (RestartMode.ON_FAILURE, False, 0, False),
        (RestartMode.ON_FAILURE, False, -9, True),
        (RestartMode.ALWAYS, False, 0, True),
        (RestartMode.ALWAYS, False, 2, True),
        (RestartMode.NEVER, False, 1, False),
        (RestartMode.NEVER, True, 1, False),
        (RestartMode.ON_FAILURE, True, 1, True),
        (RestartMode.ON_FAILURE, True, 0, False),
        (RestartMode.ALWAYS, True, 0, False),  # always counts as on-failure for a task
        (RestartMode.ALWAYS, True, 3, True),
    ],
)
def test_restart_mode_decides_which_exits_restart(
    restart: RestartMode, oneshot: bool, code: int, expected: bool
) -> None:
    assert wants_restart(_svc(restart, oneshot), code) is expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_to_the_thirty_second_cap() -> None:
    policy = ExponentialBackoff(clock=FakeClock())
    svc = _svc()
    assert [policy.decide(svc, 1) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_resets_after_sixty_seconds_of_healthy_uptime() -> None:
    clock = FakeClock()
    policy = ExponentialBackoff(clock=clock)
    svc = _svc()
    assert [policy.decide(svc, 1) for _ in range(3)] == [1, 2, 4]
    policy.healthy("api")
    clock.now += 59
    assert policy.decide(svc, 1) == 8  # 59 s was not long enough
    policy.healthy("api")
    clock.now += 60
    assert policy.decide(svc, 1) == 1


def test_backoff_declines_what_the_mode_does_not_restart_and_reset_forgets() -> None:
    policy = ExponentialBackoff(clock=FakeClock())
    assert policy.decide(_svc(RestartMode.NEVER), 1) is None
    assert policy.decide(_svc(), 0) is None
    svc = _svc()
    policy.decide(svc, 1)
    policy.decide(svc, 1)
    policy.reset("api")
    assert policy.decide(svc, 1) == 1


# ---------------------------------------------------------------------------- the start-up cadence (SPEC §5)


def test_the_startup_cadence_is_fast_while_nothing_answers_then_slows() -> None:
    from a3s_dev.core.supervisor import Cadence

    c = Cadence()
    assert c.delay(0.5, reached=False, interval=2.0) == 0.002  # a refused connect costs nothing
    assert c.delay(3.0, reached=False, interval=2.0) == 0.05
    assert c.delay(0.5, reached=True, interval=2.0) == 0.5  # the service answered: spare its log
    assert c.delay(10.0, reached=True, interval=2.0) == 2.0  # after 10 s, once per interval
    assert c.delay(60.0, reached=False, interval=0.1) == 0.25  # and never more than 4 a second
    assert c.delay(0.5, reached=False, interval=2.0, starting=40) == 0.02  # 40 starting: 10x slower


def test_a_service_that_answers_500_is_probed_at_most_twice_a_second_in_its_first_10s() -> None:
    """SPEC §16: 9-10 probes a second, each a 100-line traceback in the app's log, was noise."""
    from a3s_dev.core.supervisor import Cadence

    c, t, probes = Cadence(), 0.0, 0
    while t < 10.0:
        probes += 1
        t += c.delay(t, reached=True, interval=2.0)
    assert probes <= 20


def test_a_sick_service_gets_at_most_one_probe_per_interval_after_10s() -> None:
    from a3s_dev.core.supervisor import Cadence

    c, t, probes = Cadence(), 0.0, 0
    while t < 60.0:
        probes += t >= 10.0
        t += c.delay(t, reached=True, interval=2.0)
    assert probes <= 25  # (60 - 10) / 2 + 1
