"""Containers as services (SPEC §14), side by side with the runtime alone, in the same run:

    python benchmarks/bench_containers.py [--runs 5]

- podman alone: `podman run --rm --init` of busybox httpd in the foreground (as a3s runs it),
  from the command to the first HTTP answer on its published port; then `podman stop` until
  the client exited.
- a3s: the same container as a service; the supervisor's own figure from spawn to ready (`web
  is healthy (0.16s)` in a3s.log: the same span as above plus the probe's cadence), and `a3s
  down` from the command to its exit, container removed (target: <= its stop time + 100 ms).
  Beside it, the same busybox httpd as a host process under a3s: what a3s itself adds to any
  service (its event loop and probe client starting while the first wave runs).

The image is Debian's static busybox imported locally (no registry here); podman is given a
containers.conf of this run's own (runc, explicit ulimits), as the tests do.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

A3S = str(Path(sys.executable).with_name("a3s"))
IMAGE = "localhost/a3s-bench-busybox:1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def image(folder: Path, podman: str) -> None:
    root = folder / "root"
    (root / "bin").mkdir(parents=True)
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text("hello\n")
    busybox = next(p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p))
    shutil.copy(busybox, root / "bin" / "busybox")
    for applet in ("sh", "httpd"):
        (root / "bin" / applet).symlink_to("busybox")
    with tarfile.open(folder / "image.tar", "w") as tar:
        tar.add(root, arcname=".")
    subprocess.run([podman, "import", "-q", str(folder / "image.tar"), IMAGE], check=True, stdout=subprocess.DEVNULL)


def alone(podman: str, runs: int) -> tuple[list[float], list[float]]:
    ready, stop = [], []
    for i in range(runs):
        port, name = free_port(), f"a3s-bench-alone-{i}"
        t0 = time.perf_counter()
        client = subprocess.Popen([podman, "run", "--rm", "--init", "--name", name, "--stop-timeout", "5", "--publish",
                                   f"127.0.0.1:{port}:8080", IMAGE, "/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not answers(port):
            time.sleep(0.001)
        ready.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([podman, "stop", "--time", "5", name], stdout=subprocess.DEVNULL, check=True)
        client.wait(30)
        stop.append(time.perf_counter() - t0)
    return ready, stop


A3SFILE = """\
dev {{
  name = "bench-containers"
  proxy_port = 0
}}
service "web" {{
  image = "{image}"
  cmd = "/bin/httpd -f -p 8080 -h /www"
  port = {port}
  container_port = 8080
  stop_timeout = "5s"
  health {{
    path = "/"
  }}
}}
"""


HOST = """\
dev {{
  name = "bench-containers"
  proxy_port = 0
}}
service "web" {{
  cmd = "exec {busybox} httpd -f -p $PORT -h {www}"
  port = {port}
  health {{
    path = "/"
  }}
}}
"""


def with_a3s(folder: Path, runs: int, template: str) -> tuple[list[float], list[float]]:
    ready, down = [], []
    www = folder.parent / "root" / "www"
    busybox = www.parent / "bin" / "busybox"
    for _ in range(runs):
        (folder / "A3sfile.hcl").write_text(template.format(image=IMAGE, port=free_port(), busybox=busybox, www=www))
        subprocess.run([A3S, "up", "-d"], cwd=folder, check=True, stdout=subprocess.DEVNULL)
        log = (folder / ".a3s" / "logs" / "a3s.log").read_text()
        ready.append(float(re.findall(r"web is healthy \((\d+\.\d+)s\)", log)[-1]))
        t0 = time.perf_counter()
        subprocess.run([A3S, "down"], cwd=folder, check=True, stdout=subprocess.DEVNULL)
        down.append(time.perf_counter() - t0)
    return ready, down


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:6.0f} ms  (min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    podman = shutil.which("podman")
    if podman is None:
        sys.exit("podman is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        conf = folder / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n')
        os.environ.setdefault("CONTAINERS_CONF", str(conf))
        image(folder, podman)
        raw_ready, raw_stop = alone(podman, args.runs)
        (folder / "stack").mkdir()
        a3s_ready, a3s_down = with_a3s(folder / "stack", args.runs, A3SFILE)
        host_ready, host_down = with_a3s(folder / "stack", args.runs, HOST)
    print(f"busybox httpd in a container, {args.runs} runs each")
    print(f"  podman run -> first answer      {ms(raw_ready)}")
    print(f"  a3s: spawn -> ready (its log)   {ms(a3s_ready)}   "
          f"(+{(statistics.median(a3s_ready) - statistics.median(raw_ready)) * 1000:.0f} ms)")
    print(f"  a3s, the same httpd on the host {ms(host_ready)}   (a3s's own share of the figure above)")
    print(f"  podman stop -> client exited    {ms(raw_stop)}")
    print(f"  a3s down (command to exit)      {ms(a3s_down)}   "
          f"(+{(statistics.median(a3s_down) - statistics.median(raw_stop)) * 1000:.0f} ms)")
    print(f"  a3s down, the host httpd        {ms(host_down)}")


if __name__ == "__main__":
    main()
