"""The quickstart web front: one page whose script calls the API through the a3s proxy."""

from __future__ import annotations

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROXY_PORT = os.environ.get("A3S_PROXY_PORT", "7080")
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>a3s quickstart</title>
<h1>a3s quickstart</h1>
<p>The API says: <b id="msg">…</b></p>
<button id="again">ask again</button>
<script>
  // The browser reaches the API by name through the a3s proxy, not by its port.
  const api = "http://api.localhost:__PORT__/api/hello";
  async function ask() {
    try {
      const r = await fetch(api);
      const d = await r.json();
      document.getElementById("msg").textContent = d.message + " (hit " + d.hits + ")";
    } catch (e) {
      document.getElementById("msg").textContent = "API unreachable: " + e;
    }
  }
  document.getElementById("again").onclick = ask;
  ask();
</script>
""".replace("__PORT__", PROXY_PORT).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code, body, kind = (200, PAGE, "text/html; charset=utf-8")
        if self.path == "/health":
            code, body, kind = 200, b"ok\n", "text/plain"
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        if self.path != "/health":
            print(f"{self.command} {self.path}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "8701"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"web listening on http://127.0.0.1:{port} (open http://web.localhost:{PROXY_PORT})", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
