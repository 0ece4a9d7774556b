"""The quickstart API: /health, and /api/hello counting its visitors. Stdlib only."""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GREETING = Path(__file__).with_name("data") / "greeting.txt"
hits = 0


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        global hits
        if self.path == "/health":
            return self.reply(200, {"status": "ok"})
        if self.path.startswith("/api/hello"):
            hits += 1
            greeting = GREETING.read_text().strip() if GREETING.exists() else "hello"
            return self.reply(200, {"message": greeting, "hits": hits})
        self.reply(404, {"error": f"no route {self.path}"})

    def reply(self, code: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        # The web page calls us from http://web.localhost:7080, another origin.
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        if self.path != "/health":  # probes every 2 s would drown the log
            print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else '?'}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "8700"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"api listening on http://127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        print("api stopped", flush=True)


if __name__ == "__main__":
    main()
