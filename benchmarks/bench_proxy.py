"""Proxy throughput and added latency: wrk against nginx directly, through the reference
aiohttp proxy (benchmarks/ref_proxy.py), through portless (when installed) and through a3s's
proxy, in one run.

    python benchmarks/bench_proxy.py [--duration 5] [--rounds 3] [--connections 50] [--threads 2]

Needs `wrk` and `nginx` (Debian: apt-get install -y wrk nginx); prints a message and exits 0
when either is missing. portless (`npm install -g portless`, 0.13+) runs as a plain-HTTP proxy
on a port of this run with its state in this run's folder (`--no-tls`, no hosts file, no trust
store), with `bench.localhost` aliased to nginx. The bars: a3s >= 3x portless req/s, p50 added
<= 1.5 ms, zero failed requests, flat proxy RSS.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BODY = "hello, world\n"  # 13 bytes

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log crit;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
"""

# Registers one project "bench" with one running service "bench" on UPSTREAM_PORT with the
# shared proxy on PROXY_PORT (the real `a3s proxy` process), then holds the registration
# until killed: the proxy's own cost is what we measure, exactly as `a3s up` uses it.
REGISTER = """
import sys, time
from a3s_dev.link import proxy_process
from a3s_dev.link.protocol import PROTOCOL, encode

port, upstream, https_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
while (sock := proxy_process.connect(port)) is None:
    time.sleep(0.02)
sock.sendall(encode({"type": "register", "protocol": PROTOCOL, "project": "bench", "a3sfile": "/bench/A3sfile.hcl",
                     "logs": "/bench/.a3s/logs", "pid": 1, "https_port": https_port,
                     "services": [{"name": "bench", "port": upstream}],
                     "statuses": [{"name": "bench", "state": "running", "port": upstream}]}))
assert b"registered" in sock.recv(65536)
print("registered", flush=True)
time.sleep(1e9)
"""


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    non2xx: int
    rss_before_kb: int | None = None
    rss_after_kb: int | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process for port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port} after {timeout}s")


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise SystemExit(f"cannot read a wrk latency from {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]


def run_wrk(
    name: str, port: int, args: argparse.Namespace, pid: int | None = None, *, threads: int | None = None,
    connections: int | None = None, duration: int | None = None, warm: bool = True,
) -> Result:
    threads = threads or args.threads
    connections = connections or args.connections
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration or args.duration}s", "--latency",
           "-H", "Host: bench.localhost", f"{'https' if name.endswith('(https)') else 'http'}://127.0.0.1:{port}/"]
    if warm:  # pools filled, code paths hot
        subprocess.run([*cmd[:3], "-d2s", *cmd[4:]], capture_output=True, check=True)
    before = rss_kb(pid) if pid else None
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if args.verbose:
        print(out)
    after = rss_kb(pid) if pid else None
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(g) for g in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    return Result(name, rps, p50, p99, requests, errors, non2xx, before, after)


def start_portless(tmp: str, upstream: int) -> tuple[subprocess.Popen[bytes], int] | None:
    """portless as a plain-HTTP proxy on a free port, everything it keeps in `tmp`, with
    `bench.localhost` aliased to `upstream`; None when portless is not installed."""
    exe = shutil.which("portless")
    if exe is None:
        print("(portless not found: npm install -g portless, for the comparison)")
        return None
    port = free_port()
    env = {**os.environ, "HOME": tmp, "PORTLESS_STATE_DIR": f"{tmp}/portless", "PORTLESS_SYNC_HOSTS": "0"}
    proc = subprocess.Popen([exe, "proxy", "start", "--no-tls", "-p", str(port), "--foreground"],
                            start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    subprocess.run([exe, "alias", "bench", str(upstream)], env=env, check=True, capture_output=True)
    return proc, port


def median_round(rounds: list[Result]) -> Result:
    """The round with the median req/s; errors summed over all rounds, RSS from first to last."""
    mid = sorted(rounds, key=lambda r: r.rps)[len(rounds) // 2]
    return Result(
        mid.name, mid.rps, mid.p50_ms, mid.p99_ms, sum(r.requests for r in rounds),
        sum(r.errors for r in rounds), sum(r.non2xx for r in rounds), rounds[0].rss_before_kb, rounds[-1].rss_after_kb,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target (median reported)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="print wrk output")
    parser.add_argument("--single", type=int, default=5, help="seconds of the 1-connection run (0: skip)")
    parser.add_argument("--only", choices=["nginx", "reference", "portless", "a3s", "a3s-https"], action="append")
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "nginx") if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())]
    if missing:
        print(f"bench_proxy: skipped, {' and '.join(missing)} not installed (apt-get install -y wrk nginx)")
        return 0
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="a3s-bench-") as tmp:
            nginx_port = free_port()
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port, body=BODY.replace("\n", "\\n")))
            procs.append(subprocess.Popen([nginx, "-c", str(conf), "-p", tmp], start_new_session=True))
            wait_port(nginx_port, procs[-1])

            ref_port, ours_port, tls_port = free_port(), free_port(), free_port()
            # the reference logs a traceback for every client that hangs up mid-response (wrk
            # does at the end of each run): silenced, it is noise here
            ref = subprocess.Popen([sys.executable, str(HERE / "ref_proxy.py"), str(ref_port), str(nginx_port)],
                                   start_new_session=True, stderr=subprocess.DEVNULL)
            procs.append(ref)
            # the shared proxy, in its own process, in a runtime folder of this run's own
            env = {**os.environ, "XDG_RUNTIME_DIR": tmp, "XDG_DATA_HOME": tmp}
            ours = subprocess.Popen([sys.executable, "-m", "a3s_dev", "proxy", "--port", str(ours_port)],
                                    start_new_session=True, env=env, stdout=subprocess.DEVNULL)
            procs.append(ours)
            registrar = subprocess.Popen([sys.executable, "-c", REGISTER, str(ours_port), str(nginx_port), str(tls_port)],
                                         start_new_session=True, env=env, stdout=subprocess.PIPE)
            procs.append(registrar)
            wait_port(ref_port, ref)
            wait_port(ours_port, ours)
            assert registrar.stdout is not None and registrar.stdout.readline().strip() == b"registered"
            portless = start_portless(tmp, nginx_port)
            if portless is not None:
                procs.append(portless[0])

            only = set(args.only or ["nginx", "reference", "portless", "a3s", "a3s-https"])
            ours_label = "a3s proxy"
            plan = [("nginx", "nginx direct", nginx_port, None), ("reference", "reference aiohttp proxy", ref_port, ref.pid),
                    ("a3s", ours_label, ours_port, ours.pid), ("a3s-https", "a3s proxy (https)", tls_port, ours.pid)]
            if portless is not None:
                plan.insert(2, ("portless", "portless", portless[1], portless[0].pid))
            # Rounds alternate the targets, so that load from elsewhere on the machine hits them
            # alike; each target's median round is reported.
            rounds: dict[str, list[Result]] = {}
            for i in range(args.rounds):
                for key, label, target_port, pid in plan:
                    if key in only:
                        r = run_wrk(label, target_port, args, pid, warm=i == 0)
                        rounds.setdefault(label, []).append(r)
                        print(f"round {i + 1}: {label:<26}{r.rps:>8.0f} req/s  p50 {r.p50_ms:.2f} ms", flush=True)
            results = [median_round(rs) for rs in rounds.values()]
            # one connection, one request at a time: the latency a proxy adds without queueing
            # (at 50 connections p50 is mostly time spent waiting behind the other 49)
            single: list[Result] = []
            targets = {"nginx": ("nginx direct", nginx_port), "reference": ("reference aiohttp proxy", ref_port),
                       "a3s": ("a3s proxy", ours_port)}
            if portless is not None:
                targets["portless"] = ("portless", portless[1])
            for key, (label, target_port) in targets.items():
                if key in only and args.single:
                    single.append(run_wrk(label, target_port, args, threads=1, connections=1, duration=args.single))
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    direct = next((r for r in results if r.name == "nginx direct"), None)
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s x {args.rounds} rounds (median), 13-byte nginx response, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"{'target':<26}{'req/s':>10}{'p50':>9}{'+p50':>9}{'p99':>9}{'errors':>8}{'non2xx':>8}{'RSS MB before/after':>22}")
    for r in results:
        added = f"{r.p50_ms - direct.p50_ms:+.2f}" if direct else "-"
        rss = f"{r.rss_before_kb / 1024:.1f}/{r.rss_after_kb / 1024:.1f}" if r.rss_before_kb and r.rss_after_kb else "-"
        print(f"{r.name:<26}{r.rps:>10.0f}{r.p50_ms:>8.2f}m{added:>8}m{r.p99_ms:>8.2f}m{r.errors:>8}{r.non2xx:>8}{rss:>22}")
    ref_r = next((r for r in results if r.name.startswith("reference")), None)
    ours_r = next((r for r in results if r.name.startswith("a3s")), None)
    if ref_r and ours_r:
        print(f"a3s / reference: {ours_r.rps / ref_r.rps:.2f}x")
    portless_r = next((r for r in results if r.name == "portless"), None)
    if portless_r and ours_r:
        print(f"a3s / portless: {ours_r.rps / portless_r.rps:.2f}x (target >= 3x)")
    if single:
        one = next((r for r in single if r.name == "nginx direct"), None)
        print(f"wrk -t1 -c1 -d{args.single}s (no queueing):")
        for r in single:
            added = f"{r.p50_ms - one.p50_ms:+.3f}" if one else "-"
            print(f"{r.name:<26}{r.rps:>10.0f}{r.p50_ms:>8.3f}m{added:>8}m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
