"""`a3s attach SVC`: this terminal connected to an interactive service (SPEC §10).

Keys go to the service as they are typed (the terminal in raw mode), its output comes back as
it is written, the window size follows this terminal (SIGWINCH), and `Ctrl-]` detaches; the
service keeps running, its output goes on to the merged stream and the log files. The session
is a WebSocket on the supervisor's control socket (docs/api.md, `GET /v1/attach`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

DETACH = b"\x1d"  # Ctrl-]


async def session(socket_path: Path, service: str, *, stdin: int = 0, stdout: int = 1) -> str:
    """Relay this terminal and the service until `Ctrl-]`, the service's exit or the supervisor's;
    what ended it, in words."""
    import aiohttp

    from a3s_dev.errors import A3sError

    loop = asyncio.get_running_loop()
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as client:
        try:
            ws = await client.ws_connect(f"http://a3s/v1/attach?service={service}", max_msg_size=1 << 20)
        except (aiohttp.ClientError, OSError) as exc:
            raise A3sError(f"cannot attach to {service}: {exc}") from None
        typed: asyncio.Queue[bytes] = asyncio.Queue()
        loop.add_reader(stdin, lambda: typed.put_nowait(os.read(stdin, 4096)))

        async def send_size() -> None:
            columns, rows = shutil.get_terminal_size((80, 24))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps({"resize": [rows, columns]}))

        def on_resize() -> None:
            loop.create_task(send_size())

        loop.add_signal_handler(signal.SIGWINCH, on_resize)
        try:
            await send_size()

            async def keys() -> str:
                while True:
                    data = await typed.get()
                    if not data:
                        return "the terminal closed"
                    if DETACH in data:
                        before = data.split(DETACH, 1)[0]
                        if before:
                            await ws.send_bytes(before)
                        return "detached"
                    await ws.send_bytes(data)

            async def output() -> str:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        os.write(stdout, message.data)
                return f"{service} exited" if ws.close_code == 1000 else "the supervisor went away"

            tasks = [asyncio.ensure_future(keys()), asyncio.ensure_future(output())]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            said = next(iter(done)).result()
            await ws.close()
            return said
        finally:
            loop.remove_reader(stdin)
            loop.remove_signal_handler(signal.SIGWINCH)


def attach(socket_path: Path, service: str) -> int:
    """Run a session on this terminal (raw mode while it lasts); the exit code. The supervisor is
    asked first whether `service` can be attached to, so a refusal is one line, never a
    half-raw terminal."""
    import termios
    import tty
    from urllib.parse import urlencode

    from a3s_dev.control.client import ControlClient

    ControlClient(socket_path).request("GET", f"/v1/attach?{urlencode({'service': service, 'check': 1})}")

    is_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if is_tty else None
    print(f"a3s: attached to {service}; Ctrl-] detaches", file=sys.stderr, flush=True)
    try:
        if is_tty:
            tty.setraw(0)
        said = asyncio.run(session(socket_path, service))
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    print(f"\r\na3s: {said}", file=sys.stderr, flush=True)
    return 0
