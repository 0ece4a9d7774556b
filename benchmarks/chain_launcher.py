"""A minimal stdlib launcher, the baseline of the chain benchmark: `chain_launcher.py PORT...`.

Starts `<this python> svc.py` with PORT=<first>, polls that port every 2 ms, starts the next as
soon as it answers, and so on; then waits until SIGINT/SIGTERM and kills every group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def main() -> None:
    procs: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            p.wait()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for port in map(int, sys.argv[1:]):
        env = dict(os.environ, PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "svc.py"], env=env, start_new_session=True))
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.002)
        print(f"{port} ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
