"""Stand-in for one crate of the monorepo: a stdlib HTTP server with /health on $PORT.

Usage: python3 stub.py NAME. It answers / with its name and the URLs of its dependencies
(the A3S_<NAME>_URL variables a3s exports), so `a3s up` here shows the wiring end to end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("A3S_SERVICE", "stub")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            body = b"ok\n"
        else:
            deps = {k: v for k, v in os.environ.items() if k.startswith("A3S_") and k.endswith("_URL")}
            body = json.dumps({"service": NAME, "dependencies": deps}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "0"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{NAME} listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
