"""The Supervisor: starts services as their dependencies become ready, probes, restarts, stops.

Every service has one runner task in the supervisor's task group. The runner waits for
the service's dependencies, spawns it, probes it until ready, watches it, and on exit
asks the restart policy what to do. `stop()` ends the process from outside and then
cancels the runner, so a runner never mistakes a requested stop for a crash.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup, TaskStatus

from a3s_dev.config import graph
from a3s_dev.config.diff import ConfigDiff
from a3s_dev.config.model import (
    Condition,
    DevConfig,
    HealthConfig,
    OnFailure,
    ServiceDef,
    format_duration,
)
from a3s_dev.core import state as st
from a3s_dev.core.containers import exec_argv, find_runtime, start
from a3s_dev.core.events import (
    ConfigApplied,
    EventBus,
    HealthChanged,
    LogBatch,
    ProbeChanged,
    StateChanged,
    UsageSampled,
)
from a3s_dev.core.groups import GroupRegistry
from a3s_dev.core.health import HealthProbe, ProbeResources, make_probe
from a3s_dev.core.logs import A3S, LogSink, subscribe_sink
from a3s_dev.core.policy import ExponentialBackoff, RestartPolicy, after_exit
from a3s_dev.core.process import ServiceProcess, check_port_free, signal_named
from a3s_dev.core.service_env import service_env
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.core.usage import SAMPLE_EVERY, Usage
from a3s_dev.errors import RuntimeFailure, one_line, unknown_service
from a3s_dev.system.procfs import clock_ticks, group_listening_ports, group_usage, strays

S = ServiceState
IDLE_LOOK = 5.0  # seconds between two looks for services idle for longer than their idle_stop
WRONG_PORT_EVERY = 1.0  # seconds between two looks at what a service not ready listens on
TAIL_LINES = 200


@dataclass(frozen=True)
class Cadence:
    """How often a starting service is probed (SPEC §5). Pure: elapsed time is passed in.

    While nothing answers (a refused connect costs microseconds) every `fast` s for
    `fast_for` s, then every `slow` s; once the service itself answers (an HTTP status, a
    command that ran) never faster than `answered`, so a sick service is not flooded with
    requests that each leave a line in its log; after `patient` s not ready, once per
    `interval` and never faster than `floor`. With more than `share` services starting at
    once, each is polled `share / n` as often, so polling leaves the CPU to the services.
    """

    fast: float = 0.002
    fast_for: float = 2.0
    slow: float = 0.05
    answered: float = 0.5
    patient: float = 10.0
    floor: float = 0.25
    share: int = 4

    def delay(self, elapsed: float, *, reached: bool, interval: float, starting: int = 1) -> float:
        """Seconds until the next probe of a service not ready `elapsed` s after its spawn."""
        if elapsed >= self.patient:
            return max(interval, self.floor)
        crowd = max(1.0, starting / self.share)
        base = self.fast if elapsed < self.fast_for else self.slow
        return max(base * crowd, self.answered if reached else 0.0)


@dataclass(eq=False)
class _Service:
    defn: ServiceDef
    state: ServiceState = S.STOPPED
    reason: str | None = None
    proc: ServiceProcess | None = None
    started_at: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    health: str | None = None
    probe: str | None = None  # the last probe result, while a process lives
    failure: str | None = None  # why the supervisor ended the process: not ready in time, unhealthy
    health_failures: int = 0
    wanted: bool = False
    stopping: bool = False
    scope: anyio.CancelScope | None = None
    done: anyio.Event | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    used: float = 0.0  # time.monotonic() of its last request through the proxy (idle_stop)
    open_sockets: int = 0  # WebSockets the proxy holds open to it: never idle meanwhile

    @classmethod
    def of(cls, defn: ServiceDef) -> _Service:
        return cls(defn, state=S.IDLE if defn.lazy else S.STOPPED)


class Supervisor:
    """Owns every service of one DevConfig; see docs/architecture.md for the API contract."""

    def __init__(
        self,
        config: DevConfig,
        *,
        sinks: Sequence[LogSink] = (),
        policy: RestartPolicy | None = None,
        bus: EventBus | None = None,
        cadence: Cadence = Cadence(),
        prespawned: dict[str, ServiceProcess] | None = None,
        groups: GroupRegistry | None = None,
        proxy_port: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        port_holder: Callable[[int], str | None] | None = None,
    ) -> None:
        """`sinks` subscribe to the bus's log batches, like every other consumer of the output.
        `groups`: where each live process group is recorded (groups.json; None: nowhere).
        `proxy_port`: where the proxy listens for this stack, so status URLs point through it.
        `sleep` waits out a restart delay (tests pass one that records the delays).
        `port_holder` names who holds a taken port (the run's knows other projects' services)."""
        self.config = config
        self.bus = bus if bus is not None else EventBus()
        for sink in sinks:
            subscribe_sink(self.bus, sink)
        self.policy: RestartPolicy = policy if policy is not None else ExponentialBackoff()
        self.cadence = cadence
        self._svcs = {s.name: _Service.of(s) for s in config.services}
        # The plan, decided once (launch order by topological generation, closures, each
        # service's dependents for stopping them first), computed on first need.
        self._plan: graph.Plan | None = None
        self._plan_lock = anyio.Lock()
        self._tg: TaskGroup | None = None
        self._changed = anyio.Event()
        self._shutdown = anyio.Event()
        self._resources = ProbeResources(env_for=lambda svc: service_env(svc, self.config), inside=self._inside)
        self._groups = groups  # the first wave's groups already in it (run.prespawn)
        self._prespawned = dict(prespawned or {})
        self._a3s_tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.proxy_port = proxy_port
        self._sleep = sleep
        self._port_holder = port_holder
        self._usage = Usage(clock_ticks())
        self._probing = 0  # services in their start-up probe loop
        self._shutdown_cause: str | None = None
        self._standing: dict[str, tuple[str, float]] = {}  # service -> (warning, until when: monotonic)

    # ------------------------------------------------------------------ public API

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the service runners until shutdown(); stop every service when returning or cancelled."""
        try:
            if self._groups is not None:
                self._groups.schedule = _call_soon  # from here on, changes made together are written once
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._sample_usage)
                tg.start_soon(self._stop_the_idle)
                task_status.started()
                try:
                    await self._shutdown.wait()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.stop(cause=self._shutdown_cause)
                        await anyio.to_thread.run_sync(end_strays)
                        await self._resources.aclose()
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            for proc in self._prespawned.values():  # never adopted (shutdown before start)
                proc.kill()
            if self._groups is not None:
                self._groups.flush()

    async def plan(self) -> graph.Plan:
        """The graph's plan, computed once, in a worker thread (networkx is imported there the
        first time: the run asks for it once the first wave is up)."""
        async with self._plan_lock:
            if self._plan is None:
                self._plan = await anyio.to_thread.run_sync(graph.plan, self.config)
        return self._plan

    async def start(self, names: Iterable[str] | None = None, *, deps: bool = True) -> None:
        """Schedule `names` (None: all) and, with `deps`, their dependencies; returns without waiting for health."""
        chosen = self._names(names)
        if self._shutdown.is_set():
            return  # a start racing with `down` must not spawn anything new
        if not deps:
            # Every runner at once, in declaration order: each waits for its own dependencies'
            # conditions, so a service starts the moment they are met, plan or no plan yet.
            for name in self.config.names:
                if name in chosen:
                    self._launch(self._svcs[name])
            return
        plan = await self.plan()
        wanted = set(plan.closure(chosen))
        if self._shutdown.is_set():
            return
        for wave in plan.waves:  # networkx's topological generations
            for name in wave:
                if name in wanted:
                    self._launch(self._svcs[name])

    async def wait_ready(
        self, names: Iterable[str], timeout: float | None = None
    ) -> dict[str, ServiceStatus]:
        """Until each of `names` is running/completed, or something they need failed; statuses at return.

        The plan (what they need) is asked for only once some service has failed: while none
        has, readiness alone decides, so a start-up never waits for the graph."""
        targets = self._names(names)
        with anyio.move_on_after(timeout):
            while not all(self._is_ready(self._svcs[n]) for n in targets):
                changed = self._changed  # taken before the plan's await: no change goes unseen
                failed = {n for n, svc in self._svcs.items() if svc.state is S.FAILED}
                if failed and failed.intersection((await self.plan()).closure(targets)):
                    break
                await changed.wait()  # no failure, or one that does not concern them
        return {n: self.status(n) for n in targets}

    async def wait_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until `done()` holds, looking again at every state change; False after `timeout` s."""
        with anyio.move_on_after(timeout):
            while not done():
                await self._changed.wait()
            return True
        return done()

    async def stop(self, names: Iterable[str] | None = None, *, cause: str | None = None) -> None:
        """Stop `names` (None: everything) and their running dependents, dependents first; each
        stop is logged with its `cause` (`api stopped (a3s down api)`), in stop order."""
        plan = await self.plan()
        if names is None:
            targets = set(self._svcs)
        else:
            targets = set(plan.dependents_closure(self._names(names)))
        for name in targets:
            self._svcs[name].wanted = False
        finished = {n: anyio.Event() for n in targets}

        async def stop_after_dependents(name: str) -> None:
            try:
                for dep in plan.dependents.get(name, ()):
                    if dep in finished:
                        await finished[dep].wait()
                await self._stop_one(self._svcs[name], cause=cause)
            finally:
                finished[name].set()

        async with anyio.create_task_group() as tg:
            for name in targets:
                tg.start_soon(stop_after_dependents, name)

    async def restart(self, name: str, *, cause: str = "a3s restart") -> None:
        """Graceful stop and start of `name` only; its dependents keep running."""
        svc = self._svcs[self._names([name])[0]]
        await self._stop_one(svc, reason="restarting", cause=cause)
        self.policy.reset(name)
        self._launch(svc)

    async def apply(self, config: DevConfig, changes: ConfigDiff) -> None:
        """Run `config` from now on (SPEC §16): stop what was removed, restart what changed and the
        dependents whose environment changed (only those that run: a stopped one takes the new
        definition at its next start), start what was added; the rest is not touched."""
        if changes.removed:
            await self.stop(changes.removed, cause="removed from the A3sfile")
        running = {name for name in (*changes.changed, *changes.dependents) if self._has_runner(self._svcs[name])}
        for name in running:
            await self._stop_one(self._svcs[name], reason="restarting", cause="A3sfile changed")
        self.config = config
        self._plan = None  # decided anew from the new graph, when next needed
        for name in changes.removed:
            del self._svcs[name]
        for name in changes.changed:
            self._svcs[name].defn = config.service(name)
        for name in changes.added:
            self._svcs[name] = _Service.of(config.service(name))
        self.bus.publish(ConfigApplied(time.time()))
        self._wake()
        for name in config.names:  # in declaration order: each waits for its own dependencies
            if name in running:
                self.policy.reset(name)
                self._launch(self._svcs[name])
        if changes.added:
            await self.start(changes.added)

    def wake_up(self, name: str) -> None:
        """A request came through the proxy for `name` while it is idle (SPEC §13): start it,
        and what it needs."""
        svc = self._svcs.get(name)
        if svc is None or svc.state is not S.IDLE or self._tg is None or self._shutdown.is_set():
            return
        svc.used = time.monotonic()
        self.announce(f"{name}: a request came for it; starting it")
        self._tg.start_soon(self.start, [name])

    def traffic(self, name: str, open_sockets: int | None = None) -> None:
        """The proxy forwarded a request to `name` (and holds `open_sockets` WebSockets to it)."""
        svc = self._svcs.get(name)
        if svc is not None:
            svc.used = time.monotonic()
            if open_sockets is not None:
                svc.open_sockets = open_sockets

    async def shutdown(self, cause: str | None = None) -> None:
        """Stop everything in reverse dependency order, logging `cause` with each stop; run() then returns."""
        if not self._shutdown.is_set():
            self._shutdown_cause = cause
        self._shutdown.set()

    def status(self, name: str) -> ServiceStatus:
        svc = self._svcs[name]
        d = svc.defn
        return ServiceStatus(
            name=name,
            state=svc.state,
            pid=svc.proc.pid if svc.proc is not None and svc.proc.returncode is None else None,
            port=d.port,
            health=svc.health,
            probe=svc.probe,
            started_at=svc.started_at,
            restarts=svc.restarts,
            exit_code=svc.exit_code,
            url=self.config.address(d, self.proxy_port),
            reason=svc.reason,
            cpu=usage.cpu if (usage := self._usage.figures.get(name)) is not None else None,
            rss=usage.rss if usage is not None else None,
            cpu_seconds=usage.cpu_seconds if usage is not None else None,
            image=d.image,
        )

    def snapshot(self) -> list[ServiceStatus]:
        return [self.status(n) for n in self.config.names]

    def terminal(self, name: str) -> ServiceProcess:
        """The running process of an interactive service, for `a3s attach`; RuntimeFailure saying
        why there is none."""
        svc = self._svcs[self._names([name])[0]]
        if not svc.defn.interactive:
            raise RuntimeFailure(f"{name} is not interactive: set interactive = true on it to attach")
        if svc.proc is None or svc.proc.returncode is not None or svc.proc.terminal < 0:
            raise RuntimeFailure(f"{name} is not running ({svc.state.value})")
        return svc.proc

    def tail(self, name: str, n: int = 20) -> list[str]:
        lines = self._a3s_tail if name == A3S else self._svcs[name].tail
        return list(lines)[-n:] if n > 0 else []

    def announce(self, text: str) -> None:
        """A message from a3s itself, shown under the name `a3s`."""
        self._emit(A3S, [text], "a3s")

    def standing_warning(self, name: str, text: str, seconds: float) -> None:
        """A warning about `name` that holds for the next `seconds` (a restart loop): said once
        in the stream, and by `status` meanwhile, which a developer looks at when something is
        off after `up -d`."""
        self._standing[name] = (text, time.monotonic() + seconds)

    def standing_warnings(self) -> dict[str, str]:
        """The warnings that hold now, by service."""
        now = time.monotonic()
        return {name: text for name, (text, until) in self._standing.items() if until > now}

    # Extras beyond the architecture's API (used by metrics and the second Ctrl-C).

    def health_failures(self, name: str) -> int:
        """Failed health checks of `name` since the supervisor started."""
        return self._svcs[name].health_failures

    def kill_all(self) -> None:
        """SIGKILL every process group now, without waiting (the second Ctrl-C)."""
        for svc in self._svcs.values():
            # Only live leaders: an exited one's pgid may since belong to someone else
            # (its leftovers were already killed when it exited).
            if svc.proc is not None and svc.proc.returncode is None:
                svc.proc.kill()
        for proc in self._prespawned.values():
            proc.kill()

    # ------------------------------------------------------------------ graph helpers

    def _names(self, names: Iterable[str] | None) -> list[str]:
        if names is None:
            return list(self.config.names)
        result = list(names)
        error = unknown_service(result, self.config.names)
        if error is not None:
            raise error
        return result

    def _satisfies(self, svc: _Service, dep: _Service) -> bool:
        """Whether `dep` has reached what `svc` waits for: its condition, else ready."""
        condition = svc.defn.conditions.get(dep.defn.name)
        if condition is Condition.STARTED:
            return dep.state in (S.STARTING, S.RUNNING, S.UNHEALTHY, S.COMPLETED)
        if condition is Condition.COMPLETED:
            return dep.state is S.COMPLETED
        return self._is_ready(dep)

    def _is_ready(self, svc: _Service) -> bool:
        if svc.defn.oneshot:
            return svc.state is S.COMPLETED
        return svc.state in st.READY_STATES

    # ------------------------------------------------------------------ state & output

    def _set(
        self,
        svc: _Service,
        new: ServiceState,
        reason: str | None = None,
        *,
        exit_code: int | None = None,
    ) -> None:
        old = svc.state
        if old is new and svc.reason == reason:
            return
        st.check_transition(old, new)
        svc.state = new
        svc.reason = reason
        if exit_code is not None:
            svc.exit_code = exit_code
        proc = svc.proc
        pid = proc.pid if proc is not None and proc.returncode is None else None
        self.bus.publish(StateChanged(svc.defn.name, old, new, reason, time.time(), pid, exit_code))
        self._wake()

    def _wake(self) -> None:
        """Wake every task waiting for a change (dependency gates, wait_ready)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def _stop_the_idle(self) -> None:
        """Stop each `idle_stop` service nobody used for that long and nothing running needs;
        it becomes `idle` (the proxy's next request starts it again)."""
        while True:
            limits = [s.defn.idle_stop for s in self._svcs.values() if s.defn.idle_stop]
            await anyio.sleep(min(IDLE_LOOK, *(limit / 4 for limit in limits)) if limits else IDLE_LOOK)
            now = time.monotonic()
            for svc in list(self._svcs.values()):
                limit = svc.defn.idle_stop
                if not limit or svc.state not in (S.RUNNING, S.UNHEALTHY) or svc.open_sockets or svc.proc is None:
                    continue
                if now - max(svc.used, svc.proc.started_mono) < limit or self._needed_by_running(svc):
                    continue
                said = format_duration(limit)
                await self._stop_one(svc, cause=f"idle for {said}")
                if svc.state is S.STOPPED:
                    self._set(svc, S.IDLE, f"no request for {said}")

    def _needed_by_running(self, svc: _Service) -> bool:
        name = svc.defn.name
        return any(name in other.defn.depends_on and self._has_runner(other) for other in self._svcs.values())

    async def _sample_usage(self) -> None:
        """CPU and memory of every running service, one pass over /proc per interval (SPEC §10)."""
        while True:
            groups = {
                name: svc.proc.pgid for name, svc in self._svcs.items()
                if svc.proc is not None and svc.proc.returncode is None
            }
            if groups:
                sample = group_usage(set(groups.values()))
                self._usage.update(time.monotonic(), groups, sample)
                self.bus.publish(UsageSampled(time.time()))
            else:
                self._usage.figures = {}
            reap_strays(only_exited=True)
            await anyio.sleep(SAMPLE_EVERY)

    def _set_probe(self, svc: _Service, detail: str | None) -> None:
        """Keep the last probe result; a new text is published (the proxy, the dashboard and the
        control API's long-poll show it as `status` does)."""
        if svc.probe == detail:
            return
        svc.probe = detail
        self.bus.publish(ProbeChanged(svc.defn.name, detail, time.time()))

    def _set_health(self, svc: _Service, healthy: bool, error: str | None) -> None:
        value = "healthy" if healthy else "unhealthy"
        if svc.health == value:
            return
        svc.health = value
        self.bus.publish(HealthChanged(svc.defn.name, healthy, error, time.time()))

    def _emit(self, name: str, lines: list[str], stream: str = "stdout") -> None:
        """The one way out for output: a LogBatch on the bus (the sinks, the control API's
        stream, the proxy's error page and the dashboard all subscribe), and the tail."""
        at = time.time()
        (self._a3s_tail if name == A3S else self._svcs[name].tail).extend(lines)
        if self.bus.wants_lines():
            self.bus.publish(LogBatch(name, tuple(lines), at, stream))

    # ------------------------------------------------------------------ runners

    @staticmethod
    def _has_runner(svc: _Service) -> bool:
        return svc.done is not None and not svc.done.is_set()

    def _launch(self, svc: _Service) -> None:
        svc.wanted = True
        if svc.done is not None and not svc.done.is_set():
            return  # already has a runner
        if self._tg is None:
            raise RuntimeError("Supervisor.start() called before run() started")
        svc.done = anyio.Event()
        svc.stopping = False
        self._tg.start_soon(self._runner, svc, name=f"a3s:{svc.defn.name}")

    async def _runner(self, svc: _Service) -> None:
        name = svc.defn.name
        assert svc.done is not None
        done = svc.done
        try:
            with anyio.CancelScope() as scope:
                svc.scope = scope
                while True:
                    proc = self._prespawned.pop(name, None)
                    if proc is None:
                        await self._wait_for_dependencies(svc)
                        try:
                            proc = self._spawn(svc)
                        except RuntimeFailure as exc:
                            self._set(svc, S.FAILED, exc.message)
                            self.announce(f"{name} failed: {exc.message}")
                            return
                    code = await self._supervise(svc, proc)
                    if svc.stopping or not svc.wanted:
                        return  # a requested stop (or the second Ctrl-C), not a crash
                    failure, svc.failure = svc.failure, None
                    outcome = after_exit(
                        svc.defn,
                        code,
                        self.policy,
                        failure=failure,
                        # retrying a command that is not there only repeats the error
                        cannot_run=_cannot_run(svc.defn, code, time.monotonic() - proc.started_mono, svc.tail),
                    )
                    self._set(svc, outcome.state, outcome.reason, exit_code=outcome.exit_code)
                    self.announce(outcome.said)
                    if outcome.delay is None:
                        return
                    await self._sleep(outcome.delay)
                    svc.restarts += 1
        except Exception as exc:  # noqa: BLE001 - one broken service must not take the stack down
            message = one_line(exc)
            old = svc.state
            # Forced rather than through _set: the error may have come mid-transition.
            svc.state, svc.reason = S.FAILED, message
            self.bus.publish(StateChanged(name, old, S.FAILED, message, time.time()))
            self._wake()
            self.announce(f"{name} failed: {message}")
        finally:
            svc.scope = None
            done.set()
            self._wake()  # waiters that look at whether a runner is over

    async def _wait_for_dependencies(self, svc: _Service) -> None:
        while True:
            # Only dependencies that were asked to run gate us (`up --no-deps` starts alone).
            deps = [self._svcs[d] for d in svc.defn.depends_on if d in self._svcs]
            waiting = [d for d in deps if not self._satisfies(svc, d) and d.wanted]
            if not waiting:
                return
            failed = [d.defn.name for d in waiting if d.state is S.FAILED]
            # A dependency that exited 0 and will not be restarted (restart = "never") is
            # as final as a failed one: say so rather than "waiting" forever.
            exited = [
                d.defn.name
                for d in waiting
                if d.state is S.STOPPED and d.done is not None and d.done.is_set()
            ]
            if failed:
                reason = st.dependency_failed(failed[0])
            elif exited:
                reason = st.dependency_exited(exited[0])
            else:
                reason = st.waiting_for([d.defn.name for d in waiting])
            if (failed or exited) and svc.reason != reason:
                self.announce(f"{svc.defn.name} stays pending: {reason}")  # once per cause, not per wake-up
            self._set(svc, S.PENDING, reason)
            await self._changed.wait()

    def _inside(self, defn: ServiceDef, command: str) -> list[str]:
        """The command line that runs `command` in `defn`'s container (an `in_container` probe)."""
        runtime = find_runtime(self.config.settings.container_runtime) or "podman"
        return exec_argv(runtime, self.config.project, defn.name, command)

    def _spawn(self, svc: _Service) -> ServiceProcess:
        if self._port_holder is not None:
            check_port_free(svc.defn, self._port_holder)
        else:
            check_port_free(svc.defn)
        return start(svc.defn, self.config)

    async def _supervise(self, svc: _Service, proc: ServiceProcess) -> int:
        """From spawn to exit: relay output, probe, record the group. Returns the exit code."""
        name = svc.defn.name
        svc.proc = proc
        svc.started_at = proc.started
        svc.exit_code = None
        svc.health = None
        svc.probe = None
        try:
            probe = None if svc.defn.oneshot else make_probe(svc.defn, self._resources)
        except Exception:
            # the process is spawned already: it must not outlive the error (no one would end it)
            proc.kill()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(proc.popen.wait)
            raise
        feed = getattr(probe, "feed", None)  # a log probe reads the output of this run

        def on_lines(lines: list[str]) -> None:
            self._emit(name, lines)
            if feed is not None:
                feed(lines)

        proc.attach(on_lines)
        if self._groups is not None:
            self._groups.add(name, proc.record(svc.defn))
        self._set(svc, S.STARTING, None)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._probe_loop, svc, proc, probe)
                code = await proc.wait()
                tg.cancel_scope.cancel()
            # Leftovers of a crashed service would hold its port and its pipe.
            with anyio.CancelScope(shield=True):
                await proc.end_group(0.0)
                await proc.drain()
        except BaseException:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    await proc.terminate(signal_named(svc.defn.stop_signal), svc.defn.stop_timeout)
                await proc.drain(0.2)
            raise
        finally:
            svc.health = svc.probe = None  # they describe a live process only
            if self._groups is not None:
                self._groups.remove(name)
        return code

    async def _probe_loop(self, svc: _Service, proc: ServiceProcess, probe: HealthProbe | None) -> None:
        name = svc.defn.name
        cfg = svc.defn.probe
        if probe is not None:
            assert cfg is not None
            if not await self._probe_until_ready(svc, proc, probe, cfg):
                svc.failure = f"not ready after {format_duration(cfg.start_timeout)}: {svc.probe or 'no answer'}"
                await self._end(svc, proc)
                return
        ready_in = time.monotonic() - proc.started_mono
        self._set(svc, S.RUNNING, None)
        if probe is None:
            if not svc.defn.oneshot:
                self.policy.healthy(name)  # running is all we can know: its uptime resets the backoff
                self.announce(f"{name} started (no health check)")
            return
        assert cfg is not None
        self._set_health(svc, True, None)
        self.policy.healthy(name)
        self.announce(f"{name} is healthy ({ready_in:.2f}s)")
        failures = 0
        while True:
            await anyio.sleep(cfg.interval)
            result = await probe.check()
            self._set_probe(svc, result.detail)
            if result.ok:
                failures = 0
                if svc.state is S.UNHEALTHY:
                    self._set_health(svc, True, None)
                    self._set(svc, S.RUNNING, None)
                    self.policy.healthy(name)
                    self.announce(f"{name} is healthy again")
                continue
            failures += 1
            svc.health_failures += 1
            if failures >= cfg.retries and svc.state in (S.RUNNING, S.UNHEALTHY):
                if cfg.on_failure is OnFailure.RESTART:
                    svc.failure = f"unhealthy ({failures} failed probes: {result.detail})"
                    await self._end(svc, proc)
                    return
                if svc.state is S.RUNNING:
                    self._set_health(svc, False, result.detail)
                    self._set(svc, S.UNHEALTHY, result.detail)
                    self.announce(f"{name} is unhealthy: {result.detail}")

    async def _probe_until_ready(
        self, svc: _Service, proc: ServiceProcess, probe: HealthProbe, cfg: HealthConfig
    ) -> bool:
        """Probe at the start-up cadence until ready (True) or `start_timeout` passed (False)."""
        c = self.cadence
        self._probing += 1
        looked = 0.0  # when the group's listening ports were last read
        misport: str | None = None  # it listens elsewhere than its port, said
        try:
            while True:
                result = await probe.check()
                elapsed = time.monotonic() - proc.started_mono
                refused = not result.ok and not result.reached
                if refused and elapsed - looked >= WRONG_PORT_EVERY:
                    looked = elapsed
                    misport = await self._wrong_port(svc, proc)
                self._set_probe(svc, misport if refused and misport else result.detail)
                if result.ok:
                    return True
                if elapsed >= cfg.start_timeout:
                    return False
                delay = c.delay(elapsed, reached=result.reached, interval=cfg.interval, starting=self._probing)
                await anyio.sleep(min(delay, max(0.0, cfg.start_timeout - elapsed)))
        finally:
            self._probing -= 1

    async def _wrong_port(self, svc: _Service, proc: ServiceProcess) -> str | None:
        """What the service listens on instead of its port, said (SPEC §13); None if nothing."""
        d = svc.defn
        if d.port is None or d.image is not None or proc.returncode is not None:
            return None  # a container's ports are not its client's
        listening = await anyio.to_thread.run_sync(group_listening_ports, proc.pgid)
        return st.wrong_port(d.name, d.port, listening, d.cmd)

    async def _end(self, svc: _Service, proc: ServiceProcess) -> None:
        """End a process the supervisor gave up on (its runner then applies the restart policy)."""
        if proc.returncode is None:
            await proc.terminate(signal_named(svc.defn.stop_signal), svc.defn.stop_timeout)

    async def _stop_one(self, svc: _Service, reason: str | None = None, *, cause: str | None = None) -> None:
        name = svc.defn.name
        svc.wanted = False
        runner_done = svc.done
        proc = svc.proc
        if runner_done is None or runner_done.is_set():
            # No process left; a restart still passes through `stopped`.
            if svc.state is not S.STOPPED and (
                reason is not None or svc.state not in (S.COMPLETED, S.FAILED)
            ):
                was = svc.state
                self._set(svc, S.STOPPED, reason)
                if cause and was in (S.PENDING, S.BACKOFF):
                    self.announce(f"{name} stopped ({cause})")
            return
        svc.stopping = True
        if proc is not None and proc.returncode is None:
            self._set(svc, S.STOPPING, reason)
            code = await proc.terminate(signal_named(svc.defn.stop_signal), svc.defn.stop_timeout)
            svc.exit_code = code
            if proc.killed:
                timeout = st.format_delay(svc.defn.stop_timeout)
                self.announce(
                    f"{name} did not stop within {timeout} of {svc.defn.stop_signal}: killed"
                )
        if svc.scope is not None:
            svc.scope.cancel()
        await runner_done.wait()
        self._set(svc, S.STOPPED, reason, exit_code=svc.exit_code)
        if cause:
            self.announce(f"{name} stopped ({cause})")


_NOT_FOUND = re.compile(r"(?:^|: )(?:line )?(?:\d+: )?([^:\s]+): (?:command )?not found")


def _cannot_run(defn: ServiceDef, code: int, lived: float, tail: Iterable[str]) -> str | None:
    """`command not found: uvicron (is it installed and on PATH?)` or `permission denied: ./x`
    for a service whose shell said so (exit 127 or 126) within its first second; else None."""
    if code not in (126, 127) or lived >= 1.0:
        return None
    words = [w for w in defn.cmd.split() if w != "exec"]
    program = words[0] if words else defn.cmd
    if code == 127:
        # The shell names what it did not find (`/bin/sh: 1: uvicron: not found`); else the first word.
        found = (_NOT_FOUND.search(line) for line in reversed(list(tail)[-5:]))
        missing = next((m.group(1) for m in found if m), program)
        return f"command not found: {missing} (is it installed and on PATH?)"
    return f"permission denied: {program} (is it executable?)"


STRAY_GRACE = 1.0  # seconds a service's reparented descendant gets between SIGTERM and SIGKILL


def reap_strays(*, only_exited: bool) -> None:
    """Collect the exit of each stray (a service's descendant reparented to this supervisor,
    its subreaper) that exited; with `only_exited` False, SIGKILL the live ones first."""
    found = strays(os.getpid())
    for pid, zombie in found:
        if not zombie and not only_exited:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    for pid, zombie in found:
        if zombie or not only_exited:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0 if not only_exited else os.WNOHANG)


def end_strays() -> None:
    """At shutdown, once every service stopped: what their daemons left running (double forks,
    `setsid`), reparented here, is ended too: SIGTERM, STRAY_GRACE, then SIGKILL."""
    live = [pid for pid, zombie in strays(os.getpid()) if not zombie]
    for pid in live:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STRAY_GRACE
    while time.monotonic() < deadline and any(not zombie for _, zombie in strays(os.getpid())):
        time.sleep(0.02)
    reap_strays(only_exited=False)


def _call_soon(callback: Callable[[], None]) -> None:
    """Run `callback` on the next turn of the running event loop (coalesces groups.json writes)."""
    import asyncio

    asyncio.get_running_loop().call_soon(callback)
