"""What the shared proxy's check of a new connection's user costs (issue 21: <= 0.2 ms a new
connection, nothing a keep-alive request): one netlink sock_diag question for the peer's uid;
and what the cap on open connections asks of each new one (the open files limit).

    python benchmarks/bench_peer_uid.py [--calls 20000]

Also times a new loopback connection itself (connect + accept), for scale.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

from a3s_dev.proxy.direct import connection_cap
from a3s_dev.system.limits import open_files_limit
from a3s_dev.system.peers import peer_uid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        lookups = []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            peer_uid(accepted)
            lookups.append(time.perf_counter() - t0)
        caps = []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            connection_cap(open_files_limit())
            caps.append(time.perf_counter() - t0)
        connects = []
        for _ in range(min(args.calls, 2000)):
            t0 = time.perf_counter()
            other = socket.create_connection(server.getsockname())
            side, _ = server.accept()
            connects.append(time.perf_counter() - t0)
            other.close()
            side.close()
        client.close()
        accepted.close()
    us = 1e6
    print(f"peer uid lookup: median {statistics.median(lookups) * us:.1f} µs, "
          f"p99 {sorted(lookups)[int(len(lookups) * 0.99)] * us:.1f} µs (budget 200 µs)")
    print(f"the cap on open connections: median {statistics.median(caps) * us:.2f} µs")
    print(f"a new loopback connection itself: median {statistics.median(connects) * us:.1f} µs")


if __name__ == "__main__":
    main()
