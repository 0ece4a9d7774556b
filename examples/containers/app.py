"""The web app, a host process: each visit is written to Postgres and counted in Redis (both in
containers, reached on their published loopback ports); /health checks both."""

import http.server
import os
from urllib.parse import urlsplit

import psycopg
import redis

PG = urlsplit(os.environ["A3S_POSTGRES_URL"])
CACHE = redis.Redis(host="127.0.0.1", port=urlsplit(os.environ["A3S_REDIS_URL"]).port)


def db() -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=PG.port, user="postgres", password="dev", dbname="app",
                           autocommit=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        try:
            if self.path == "/health":
                with db() as conn:
                    conn.execute("SELECT 1")
                CACHE.ping()
                return self.answer(200, "ok\n")
            with db() as conn:
                conn.execute("INSERT INTO visits DEFAULT VALUES")
                visits = conn.execute("SELECT count(*) FROM visits").fetchone()[0]
            hits = CACHE.incr("hits")
            return self.answer(200, f"visits in postgres: {visits}\nhits in redis: {hits}\n")
        except (psycopg.Error, redis.RedisError) as exc:
            return self.answer(500, f"{type(exc).__name__}: {exc}\n")

    def answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


print(f"web listening on http://127.0.0.1:{os.environ['PORT']}", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
