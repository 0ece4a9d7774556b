"""Services with an `image` (SPEC §14): a container run in the foreground of the runtime's client
(`podman run`, else `docker run`), so that the client is the service's process as far as the
supervisor is concerned: its output is the log, its exit the service's.

What differs from a host process is here: the client's command line (`run_argv`, pure), the
container's environment, a stop that goes through the runtime (the client does not forward
every signal, and a SIGKILLed client leaves its container running), and removal by label of
whatever a killed supervisor left. The runtime is driven through its CLI, never an SDK.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from a3s_dev.config.model import DevConfig, ServiceDef, signal_name
from a3s_dev.core.groups import GroupRecord
from a3s_dev.core.process import ServiceProcess, spawn, spawn_argv
from a3s_dev.core.service_env import project_env, read_env_file, service_env
from a3s_dev.errors import RuntimeFailure

RUNTIMES = ("podman", "docker")
NO_RUNTIME = "no container runtime found (install podman or docker)"
LABEL_PROJECT = "dev.a3s.project"
LABEL_FILE = "dev.a3s.a3sfile"
LABEL_SERVICE = "dev.a3s.service"
CLI_TIMEOUT = 30.0  # seconds for one `rm` / `ps` of the runtime's CLI
# The client's own variables: a container variable of one of these names goes on its command
# line (`-e NAME=value`) instead of through the client's environment, which the client needs.
CLIENT_VARIABLES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LD_PRELOAD", "LD_LIBRARY_PATH",
    "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
    "CONTAINER_HOST", "CONTAINER_CONNECTION", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "REGISTRY_AUTH_FILE",
})


def find_runtime(choice: str | None = None, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The container CLI to use: `dev.container_runtime` when set, else podman, else docker, as
    found on PATH; None when there is none."""
    for name in (choice,) if choice else RUNTIMES:
        if (found := which(name)) is not None:
            return found
    return None


def container_name(project: str, service: str) -> str:
    """`a3s-<project>-<service>`: one container per service and project, whatever the run."""
    return f"a3s-{project}-{service}"


def container_env(service: ServiceDef, config: DevConfig) -> dict[str, str]:
    """What the container's environment holds: the project's (dev env_file, env), then its own
    env_file and env, A3S_SERVICE and PORT (the port inside). Never a3s's own environment, nor
    host paths (the CA's files) it cannot see."""
    env = project_env(config)
    if service.env_file is not None:
        env.update(read_env_file(service.env_file))
    env.update(service.container_variables())
    return env


def labels(config: DevConfig, service: str) -> list[str]:
    return [f"{LABEL_PROJECT}={config.project}", f"{LABEL_FILE}={config.path}", f"{LABEL_SERVICE}={service}"]


def run_argv(runtime: str, service: ServiceDef, config: DevConfig, environment: Mapping[str, str], *,
             command: list[str] | None = None, tty: bool = False, name: str | None = None) -> list[str]:
    """The client's command line for `service`'s container; with `command`, a new container of
    its image that runs that instead (`a3s run`), named `name`, no port published."""
    assert service.image is not None
    argv = [runtime, "run", "--rm", "--init"]
    for label in labels(config, service.name):
        argv += ["--label", label]
    if command is not None and name is not None:
        argv += ["--name", name]
    if command is None:
        argv += ["--name", container_name(config.project, service.name)]
        if _is_podman(runtime):
            argv.append("--replace")  # a container of this name left by an earlier run
        argv += ["--stop-signal", signal_name(service.stop_signal),
                 "--stop-timeout", str(max(1, math.ceil(service.stop_timeout)))]
        if service.port is not None and (port := service.inside_port) is not None:
            argv += ["--publish", f"127.0.0.1:{service.port}:{port}"]
    if service.interactive or tty:
        argv += ["--interactive", "--tty"]
    elif command is not None:
        argv.append("--interactive")
    for volume in service.volumes:
        argv += ["--volume", volume.spec(config.project)]
    for key, value in environment.items():
        # the value through the client's environment, out of sight of `ps`
        argv += ["--env", f"{key}={value}" if key in CLIENT_VARIABLES else key]
    argv.append(service.image)
    if command is not None:
        argv += command
    elif service.cmd:
        argv += shlex.split(service.cmd)
    return argv


def client_env(environment: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The client's environment: a3s's own (the runtime's settings), then the container's
    variables it hands in by name."""
    env = dict(os.environ if base is None else base)
    env.update((k, v) for k, v in environment.items() if k not in CLIENT_VARIABLES)
    return env


def one_off(config: DevConfig, service: str, command: list[str], *, tty: bool) -> tuple[list[str], dict[str, str], str]:
    """`a3s run` of a container service: the client's command line and environment for a new
    container of its image with `command`, and the runtime. RuntimeFailure without one."""
    defn = config.service(service)
    runtime = find_runtime(config.settings.container_runtime)
    if runtime is None:
        raise RuntimeFailure(f"service {service}: {NO_RUNTIME}")
    environment = container_env(defn, config)
    # named, so that a caller that gives up on it (a timeout) can remove it: a client's exit
    # does not end its container
    name = f"{container_name(config.project, service)}-run-{os.getpid()}"
    argv = run_argv(runtime, defn, config, environment, command=command, tty=tty, name=name)
    return argv, client_env(environment), runtime


def exec_argv(runtime: str, project: str, service: str, command: str) -> list[str]:
    """`runtime exec` of `command` (through /bin/sh) inside the service's container."""
    return [runtime, "exec", container_name(project, service), "/bin/sh", "-c", command]


@dataclass(eq=False)
class ContainerProcess(ServiceProcess):
    """The runtime's client running one container in its foreground."""

    runtime: str = ""
    container: str = ""

    async def terminate(self, sig: signal.Signals, timeout: float) -> int:
        """Stop through the runtime (its stop signal and timeout were given at `run`); the client
        then exits. A client still there after that is killed with its group."""
        import anyio

        if self.returncode is None:
            await anyio.to_thread.run_sync(_cli, self.runtime, "stop", "--time", str(max(0, math.ceil(timeout))),
                                           self.container)
            with anyio.move_on_after(2.0):
                await self._exited.wait()
        return await super().terminate(signal.SIGKILL, 0.5)

    async def end_group(self, grace: float = 0.0) -> None:
        """The client's group, then the container if the client left it: a client that exited
        by itself removed its container (`--rm`); one ended by a signal did not."""
        import anyio

        await super().end_group(grace)
        if self.returncode is None or self.returncode < 0:
            await anyio.to_thread.run_sync(self.remove)

    def kill(self) -> None:
        super().kill()
        self.remove()

    def record(self, service: ServiceDef) -> GroupRecord:
        """The client's group, and the runtime through which its container goes by label."""
        return super().record(service)._replace(runtime=self.runtime)

    def remove(self) -> None:
        """Remove the container now, running or not (nothing when it is gone already)."""
        remove(self.runtime, self.container)


def _is_podman(runtime: str) -> bool:
    return os.path.basename(runtime) == "podman"


def _cli(runtime: str, *args: str) -> None:
    """One quiet call of the runtime's CLI, bounded; its failures are the caller's next check."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run([runtime, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=CLI_TIMEOUT, check=False)


def remove(runtime: str, *names: str) -> None:
    """Remove these containers, running or not, at once (a missing one is no error)."""
    if names:
        _cli(runtime, "rm", "--force", *(("--time", "0") if _is_podman(runtime) else ()), *names)


def spawn_container(service: ServiceDef, config: DevConfig, which: Callable[[str], str | None] = shutil.which) -> ContainerProcess:
    """Start the runtime's client for `service`'s container. RuntimeFailure(NO_RUNTIME) when
    no runtime is installed (the service fails; the rest of the stack runs)."""
    runtime = find_runtime(config.settings.container_runtime, which)
    if runtime is None:
        raise RuntimeFailure(NO_RUNTIME)
    environment = container_env(service, config)
    name = container_name(config.project, service.name)
    if not _is_podman(runtime):  # docker has no --replace
        remove(runtime, name)
    proc = spawn_argv(service, run_argv(runtime, service, config, environment), client_env(environment),
                      make=ContainerProcess)
    proc.runtime, proc.container = runtime, name
    return proc


def start(service: ServiceDef, config: DevConfig) -> ServiceProcess:
    """Start one service: its container when it has an image, else `/bin/sh -c cmd`."""
    if service.image is not None:
        return spawn_container(service, config)
    return spawn(service, service_env(service, config))


def remove_left(runtime: str, a3sfile: str) -> list[str]:
    """Remove every container of this A3sfile, running or not (a killed supervisor's); the
    services they ran."""
    found = listed(runtime, a3sfile)
    remove(runtime, *found)
    return list(found.values())


def listed(runtime: str, a3sfile: str) -> dict[str, str]:
    """This A3sfile's containers, running or not: {container name: service}."""
    try:
        listed = subprocess.run(
            [runtime, "ps", "--all", "--filter", f"label={LABEL_FILE}={a3sfile}",
             "--format", f'{{{{.Names}}}}\t{{{{index .Labels "{LABEL_SERVICE}"}}}}'],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(line.partition("\t")[::2] for line in listed.stdout.splitlines() if line.strip())
