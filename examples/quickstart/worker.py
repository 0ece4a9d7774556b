"""The quickstart worker: polls the API at $A3S_API_URL (exported by a3s) every few seconds."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request

API = os.environ.get("A3S_API_URL", "http://127.0.0.1:8700")
EVERY = float(os.environ.get("POLL_SECONDS", "3"))


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"worker polling {API}/api/hello every {EVERY:g}s", flush=True)
    while True:
        try:
            with urllib.request.urlopen(f"{API}/api/hello", timeout=2) as resp:
                data = json.load(resp)
            print(f"job done: {data['message']} (hit {data['hits']})", flush=True)
        except OSError as exc:
            print(f"api unreachable: {exc}", flush=True)
        time.sleep(EVERY)


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, SystemExit):
        pass
