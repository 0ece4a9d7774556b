"""The shared proxy's reaction times: how soon a state change a supervisor pushes is acted on,
how soon a request held while a service (re)starts is answered once it is ready, and what a
new HTTPS connection costs (TLS handshake + first response).

    python benchmarks/bench_shared_proxy.py [--runs 20] [--tls-runs 100]

The real `a3s proxy` process, a project registered over its Unix socket as a supervisor does
(with https on), a stdlib HTTP upstream. Reference, in the same run: the same request sent
straight to the upstream, and through the proxy over plain HTTP. The bars (issue 14): a state
change reaches the proxy within 5 ms; a held request is answered within 50 ms of the service
being ready again. Keep-alive HTTPS throughput is in bench_proxy.py ("a3s proxy (https)").
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from a3s_dev.link.protocol import PROTOCOL, encode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as uvicorn and Node do; else every keep-alive answer waits 40 ms

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def get(port: int, host: str, tls: ssl.SSLContext | None = None) -> int:
    """One request on a new connection (over TLS with `tls`, SNI `host`); the status."""
    if tls is not None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        with tls.wrap_socket(raw, server_hostname=host) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            return response.status
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def status(sock: socket.socket, state: str, port: int) -> None:
    sock.sendall(encode({"type": "status", "status": {"name": "svc", "state": state, "port": port}}))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tls-runs", type=int, default=100)
    args = parser.parse_args()

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    up_port = upstream.server_address[1]
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proxy_port, tls_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="a3s-bench-") as tmp:
        os.environ["XDG_RUNTIME_DIR"] = os.environ["XDG_DATA_HOME"] = tmp
        from a3s_dev.link import proxy_process

        proc = subprocess.Popen([sys.executable, "-m", "a3s_dev", "proxy", "--port", str(proxy_port)],
                                start_new_session=True, stdout=subprocess.DEVNULL)
        try:
            while (sock := proxy_process.connect(proxy_port)) is None:
                time.sleep(0.02)
            sock.sendall(encode({"type": "register", "protocol": PROTOCOL, "project": "bench",
                                 "a3sfile": "/bench/A3sfile.hcl", "logs": "/bench/.a3s/logs", "pid": 1,
                                 "https_port": tls_port, "services": [{"name": "svc", "port": up_port}],
                                 "statuses": [{"name": "svc", "state": "stopped", "port": up_port}]}))
            assert b"registered" in sock.recv(65536)
            host = "svc.bench.localhost"

            direct = []
            for _ in range(args.runs):
                t = time.perf_counter()
                get(up_port, host)
                direct.append(time.perf_counter() - t)

            # 1. a pushed state change: stopped -> running, polled through the proxy until it forwards
            reach = []
            for _ in range(args.runs):
                status(sock, "stopped", up_port)
                while get(proxy_port, host) != 502:
                    pass
                t = time.perf_counter()
                status(sock, "running", up_port)
                while get(proxy_port, host) != 200:
                    pass
                reach.append(time.perf_counter() - t)

            # 2. a request held while the service starts, answered once it is ready
            held = []
            for _ in range(args.runs):
                status(sock, "starting", up_port)
                time.sleep(0.05)
                answered: list[float] = []

                def held_get(out: list[float] = answered) -> None:
                    get(proxy_port, host)
                    out.append(time.perf_counter())

                waiter = threading.Thread(target=held_get)
                waiter.start()
                time.sleep(0.2)  # the request is held by now
                t = time.perf_counter()
                status(sock, "running", up_port)
                waiter.join(30)
                held.append(answered[0] - t)

            # 3. a new HTTPS connection each time: handshake + first response, beside plain HTTP
            status(sock, "running", up_port)
            tls = ssl.create_default_context(cafile=os.path.join(tmp, "a3s", "ca", "ca.pem"))
            get(tls_port, host, tls)  # the leaf is issued on the first handshake for the name
            plain, handshake = [], []
            for _ in range(args.tls_runs):
                t = time.perf_counter()
                get(proxy_port, host)
                plain.append(time.perf_counter() - t)
                t = time.perf_counter()
                assert get(tls_port, host, tls) == 200
                handshake.append(time.perf_counter() - t)
            sock.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
    upstream.shutdown()

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:6.2f} ms   max {max(values) * 1000:6.2f} ms"

    print(f"{args.runs} runs, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"request straight to the upstream (reference)       {ms(direct)}")
    print(f"state change pushed -> proxy forwards (bar 5 ms)   {ms(reach)}")
    print(f"ready -> held request answered (bar 50 ms)         {ms(held)}")
    print(f"new connection, plain HTTP through the proxy      {ms(plain)}  ({args.tls_runs} runs)")
    print(f"new connection, TLS handshake + first response     {ms(handshake)}  ({args.tls_runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
