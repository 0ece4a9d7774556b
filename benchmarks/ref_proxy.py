"""The reference: a minimal aiohttp Host-header proxy (catch-all route, one shared
ClientSession, streamed response). bench_proxy.py measures a3s's proxy against it.

Usage: python ref_proxy.py LISTEN_PORT UPSTREAM_PORT
"""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web

HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-authorization"}


async def make_app(upstream_port: int) -> web.Application:
    app = web.Application()
    routes = {}  # host -> upstream base URL, like any Host-header proxy

    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def handler(request: web.Request) -> web.StreamResponse:
        host = request.host.split(":")[0].lower()
        base = routes.setdefault(host, f"http://127.0.0.1:{upstream_port}")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with request.app["session"].request(
            request.method, base + request.path_qs, headers=headers,
            data=request.content if request.body_exists else None, allow_redirects=False,
        ) as up:
            resp = web.StreamResponse(
                status=up.status, headers={k: v for k, v in up.headers.items() if k.lower() not in HOP}
            )
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


if __name__ == "__main__":
    listen, upstream = int(sys.argv[1]), int(sys.argv[2])
    web.run_app(make_app(upstream), host="127.0.0.1", port=listen, print=None, access_log=None)
