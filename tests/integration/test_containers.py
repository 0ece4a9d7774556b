"""Containers as services (SPEC §14) with real podman: probed, proxied, listed with their image,
stopped and removed by `down`, by label after a SIGKILLed supervisor, a leftover replaced,
per-project volumes and bind mounts, a probe inside the container, `a3s run` in a new one, and
a stack that still runs its host services when no runtime is installed.

podman needs `runc`, catatonit (`--init`) and explicit ulimits on this kind of machine: the
session writes its own containers.conf and points CONTAINERS_CONF at it (nothing under /etc).
No registry is reachable: the image is Debian's static busybox, imported.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import free_port, holds, pid_alive, wait_until
from support_control import Stack, stack_in

from a3s_dev.core.containers import LABEL_FILE

IMAGE = "localhost/a3s-test-busybox:tests"
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), None)
PODMAN = shutil.which("podman")

pytestmark = pytest.mark.skipif(
    PODMAN is None or BUSYBOX is None, reason="podman and busybox-static are not installed (.ci/run installs them)"
)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert PODMAN is not None
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture(scope="module")
def containers_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """CONTAINERS_CONF for podman on this machine, and the test image imported once."""
    folder = tmp_path_factory.mktemp("podman")
    conf = folder / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
                    '[engine]\nruntime = "runc"\n')
    env = {"CONTAINERS_CONF": str(conf)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTAINERS_CONF", str(conf))
        # imported afresh each run (0.3 s): the tag is the tests' own
        root = folder / "root"
        (root / "bin").mkdir(parents=True)
        (root / "www").mkdir()
        (root / "tmp").mkdir(mode=0o1777)
        (root / "www" / "index.html").write_text("hello from busybox\n")
        assert BUSYBOX is not None
        shutil.copy(BUSYBOX, root / "bin" / "busybox")
        for applet in ("sh", "httpd", "sleep", "echo", "cat", "test", "touch", "ls", "hostname"):
            (root / "bin" / applet).symlink_to("busybox")
        with tarfile.open(folder / "image.tar", "w") as tar:
            tar.add(root, arcname=".")
        podman("import", "-q", str(folder / "image.tar"), IMAGE)
        yield env


def containers_of(a3sfile: Path) -> list[str]:
    """Every container (running or not) labelled with this A3sfile."""
    out = podman("ps", "--all", "--filter", f"label={LABEL_FILE}={a3sfile}", "--format", "{{.Names}}")
    return out.stdout.split()


def live_conmons(names: list[str]) -> list[str]:
    """conmon processes (not zombies) still serving one of these containers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "conmon" in cmdline.split(" ", 1)[0] and state != "Z" and any(n in cmdline for n in names):
            found.append(cmdline[:120])
    return found


def fetch(port: int, host: str, path: str = "/") -> tuple[int, str]:
    import httpx

    try:
        r = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=5, trust_env=False)
    except httpx.HTTPError:
        return 0, ""
    return r.status_code, r.text


WEB = """
service "web" {
  image = "@IMAGE@"
  cmd = "/bin/httpd -f -p 8080 -h /www"
  port = "auto"
  container_port = 8080
  health {
    path = "/"
    interval = "100ms"
  }
}
"""


def project(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "A3sfile.hcl").write_text(f'dev {{\n  name = "{name}"\n}}\n' + body.replace("@IMAGE@", IMAGE))
    return folder


class Containers:
    """A stack whose teardown also removes any container its A3sfile left (a failed test)."""

    def __init__(self, st: Stack) -> None:
        self.st = st

    def __enter__(self) -> Stack:
        return self.st

    def __exit__(self, *exc: object) -> None:
        left = containers_of(self.st.a3sfile)
        if left:
            podman("rm", "--force", "--time", "0", *left, check=False)


@contextmanager
def up(folder: Path, env: dict[str, str]) -> Iterator[Stack]:
    proxy = free_port()
    with stack_in(folder, {**env, "A3S_PROXY_PORT": str(proxy)}) as st, Containers(st):
        result = st.a3s("up", "-d")
        assert result.code == 0, result.out + result.err
        yield st


def test_a_container_is_probed_proxied_listed_with_its_image_and_down_leaves_nothing(
    tmp_path: Path, containers_conf: dict[str, str]
) -> None:
    folder = project(tmp_path / "shop", "shop", WEB + 'service "api" {\n  cmd = "python3 -m http.server $PORT"\n'
                     '  port = "auto"\n  depends_on = ["web"]\n}\n')
    with up(folder, containers_conf) as st:
        rows = st.status()
        web = rows["web"]
        assert web["state"] == "running" and web["image"] == IMAGE and web["probe"] == "GET / \u2192 200"
        assert rows["api"]["image"] is None and rows["api"]["state"] == "running"
        # published on loopback only, at the service's port
        ports = podman("port", "a3s-shop-web").stdout
        assert f"127.0.0.1:{web['port']}" in ports and "0.0.0.0" not in ports
        assert fetch(int(st.env["A3S_PROXY_PORT"]), "web.shop.localhost") == (200, "hello from busybox\n")
        names = containers_of(st.a3sfile)
        assert names == ["a3s-shop-web"]
        labels = json.loads(podman("inspect", "a3s-shop-web").stdout)[0]["Config"]["Labels"]
        assert labels["dev.a3s.project"] == "shop" and labels["dev.a3s.service"] == "web"
        began = time.monotonic()
        assert st.a3s("down").code == 0
        took = time.monotonic() - began
        assert containers_of(st.a3sfile) == []
        wait_until(lambda: not live_conmons(names), timeout=5, message="no conmon of the stack's containers")
        assert not pid_alive(int(web["pid"]))
        assert took < 5 + 2, f"down of a container service took {took:.1f}s"


def test_after_a_sigkilled_supervisor_status_says_orphaned_and_down_removes_the_container_by_label(
    tmp_path: Path, containers_conf: dict[str, str]
) -> None:
    folder = project(tmp_path / "shop", "shop", WEB)
    with up(folder, containers_conf) as st:
        pid = st.supervisor_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), message="the supervisor gone")
        # the client died with it (its parent-death signal); its container did not
        holds(lambda: containers_of(st.a3sfile) == ["a3s-shop-web"], 0.5, message="the container outlives its client")
        assert st.status()["web"]["state"] == "orphaned"
        result = st.a3s("down")
        assert result.code == 0 and "web" in result.out, result.out + result.err
        assert containers_of(st.a3sfile) == []
        assert st.status()["web"]["state"] == "stopped"


def test_the_next_up_after_a_sigkill_removes_the_old_container_and_a_leftover_of_the_name_is_replaced(
    tmp_path: Path, containers_conf: dict[str, str]
) -> None:
    folder = project(tmp_path / "shop", "shop", WEB)
    # a container of the same name that no a3s run labelled (a hand-made one, an older a3s)
    podman("run", "-d", "--rm", "--stop-timeout", "1", "--name", "a3s-shop-web", IMAGE, "sleep", "1000")
    try:
        with up(folder, containers_conf) as st:
            first = podman("inspect", "--format", "{{.Id}}", "a3s-shop-web").stdout.strip()
            assert st.status()["web"]["state"] == "running"
            pid = st.supervisor_pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), message="the supervisor gone")
            result = st.a3s("up", "-d")
            assert result.code == 0, result.out + result.err
            assert "web" in result.out  # said what it ended
            assert podman("inspect", "--format", "{{.Id}}", "a3s-shop-web").stdout.strip() != first
            assert containers_of(st.a3sfile) == ["a3s-shop-web"]
            assert st.status()["web"]["state"] == "running"
    finally:
        podman("rm", "--force", "--time", "0", "a3s-shop-web", check=False)


VOLUMES = """
service "files" {
  image = "@IMAGE@"
  cmd = "sh -c 'echo $A3S_SERVICE-$GREETING > /data/mark; httpd -f -p 8080 -h /site'"
  env = { GREETING = "hi" }
  port = "auto"
  container_port = 8080
  volumes = ["data:/data", "./site:/site:ro"]
  health {
    path = "/page.html"
    interval = "100ms"
  }
}
"""


def test_a_named_volume_is_per_project_and_a_bind_mount_is_relative_to_the_a3sfile(
    tmp_path: Path, containers_conf: dict[str, str]
) -> None:
    seen = {}
    for name in ("one", "two"):
        folder = project(tmp_path / name, name, VOLUMES)
        (folder / "site").mkdir()
        (folder / "site" / "page.html").write_text(f"page of {name}\n")
        with up(folder, containers_conf) as st:
            proxy = int(st.env["A3S_PROXY_PORT"])
            assert fetch(proxy, f"files.{name}.localhost", "/page.html") == (200, f"page of {name}\n")
            seen[name] = podman("volume", "inspect", f"{name}-data").returncode
            mark = podman("run", "--rm", "-v", f"{name}-data:/data", IMAGE, "cat", "/data/mark").stdout
            assert mark == "files-hi\n"
            assert st.a3s("down").code == 0
    try:
        assert seen == {"one": 0, "two": 0}  # each project its own volume, kept after down
    finally:
        podman("volume", "rm", "--force", "one-data", "two-data", check=False)


def test_an_in_container_probe_runs_inside_and_a3s_run_uses_a_new_container(
    tmp_path: Path, containers_conf: dict[str, str]
) -> None:
    marker = f"/tmp/a3s-inside-{os.getpid()}"  # exists inside the container only
    body = """
service "worker" {
  image = "@IMAGE@"
  cmd = "sh -c 'sleep 0.5; touch MARKER; exec sleep 1000'"
  env = { ROLE = "worker" }
  health {
    command = "test -e MARKER"
    in_container = true
    interval = "100ms"
  }
}
""".replace("MARKER", marker)
    folder = project(tmp_path / "shop", "shop", body)
    with up(folder, containers_conf) as st:
        row = st.status()["worker"]
        assert row["state"] == "running" and row["health"] == "healthy", row
        assert not os.path.exists(marker)
        ran = st.a3s("run", "worker", "--", "sh", "-c", "echo $ROLE; hostname")
        assert ran.code == 0, ran.err
        role, host = ran.out.split()
        assert role == "worker"
        inside = podman("exec", "a3s-shop-worker", "hostname").stdout.strip()
        assert host != inside, "a new container, not the service's"
        assert st.a3s("run", "worker", "--", "exit 7").code == 7
        assert containers_of(st.a3sfile) == ["a3s-shop-worker"], "the one-off containers are removed"


def test_without_a_container_runtime_the_service_fails_saying_so_and_host_services_run(
    tmp_path: Path, containers_conf: dict[str, str]
) -> None:
    tools = tmp_path / "bin"  # a PATH with python3 and sh, and neither podman nor docker
    tools.mkdir()
    for tool in ("python3", "sh"):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    folder = project(tmp_path / "shop", "shop", WEB + 'service "api" {\n  cmd = "python3 -m http.server $PORT"\n'
                     '  port = "auto"\n}\n')
    proxy = free_port()
    env = {**containers_conf, "A3S_PROXY_PORT": str(proxy), "PATH": str(tools)}
    with stack_in(folder, env) as st, Containers(st):
        st.env["PATH"] = str(tools)
        result = subprocess.run([sys.executable, "-m", "a3s_dev", "up", "-d"], cwd=folder, env=st.env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode != 0
        assert "no container runtime found (install podman or docker)" in result.stdout + result.stderr
        rows = st.status()
        assert rows["web"]["state"] == "failed"
        assert rows["web"]["reason"] == "no container runtime found (install podman or docker)"
        assert rows["api"]["state"] == "running"
