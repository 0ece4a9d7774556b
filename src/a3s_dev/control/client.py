"""The one client of the control API: HTTP/1.0 over the supervisor's Unix socket, stdlib only.

`a3s status` against a running supervisor must answer in a few tens of milliseconds, and
`http.client` alone costs ~30 ms to import, so requests are written by hand: one request per
connection, `Connection: close`, the answer read to the end of the stream (a streamed answer,
such as the log stream, is then simply read line by line). The routes are in docs/api.md.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from a3s_dev.errors import A3sError, UsageError

API_VERSION = "v1"
MAX_HEAD = 64 * 1024


class NotRunning(A3sError):
    """No supervisor answers on the control socket."""


class ControlError(A3sError):
    """The supervisor answered with an error, or did not answer in time."""


class _Answer:
    """A response being read: its status, and its body as a file (read to the end, or by line)."""

    def __init__(self, sock: socket.socket, status: int, rest: bytes) -> None:
        self.sock = sock
        self.status = status
        self._rest = rest
        self._file = sock.makefile("rb")

    def read(self) -> bytes:
        return self._rest + self._file.read()

    def lines(self) -> Iterator[bytes]:
        """The body line by line; ends when the supervisor closes the stream."""
        pending = self._rest
        self._rest = b""
        while True:
            if b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                yield line + b"\n"
                continue
            try:
                more = self._file.readline()
            except OSError:
                more = b""
            if not more:
                if pending:
                    yield pending
                return
            pending += more

    def close(self) -> None:
        self._file.close()
        self.sock.close()


class ControlClient:
    """Talks to a running supervisor over its control socket."""

    def __init__(self, socket_path: Path | str, timeout: float = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    # ------------------------------------------------------------------ transport

    def _open(self, method: str, path: str, body: dict[str, Any] | None, timeout: float | None) -> _Answer:
        """Send one request and read the response head; NotRunning when nobody listens."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if timeout is None else timeout)
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.0\r\nHost: a3s\r\nAccept: application/json\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        try:
            try:
                sock.connect(str(self.socket_path))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise NotRunning(f"no supervisor is running ({exc.strerror})") from None
            sock.sendall(head.encode() + b"\r\n" + payload)
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk or len(received) > MAX_HEAD:
                    raise NotRunning("the supervisor went away")
                received += chunk
        except TimeoutError:
            sock.close()
            raise ControlError(f"the supervisor did not answer {method} {path.split('?')[0]} in time") from None
        except (ConnectionResetError, BrokenPipeError):
            sock.close()
            raise NotRunning("the supervisor went away") from None
        except BaseException:
            sock.close()
            raise
        head_bytes, _, rest = received.partition(b"\r\n\r\n")
        status_line = head_bytes.split(b"\r\n", 1)[0].split()
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        return _Answer(sock, status, rest)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One request; the decoded JSON answer. NotRunning when nobody listens, UsageError on 404,
        ControlError on any other error status or a timeout."""
        answer = self._open(method, path, body, timeout)
        try:
            raw = answer.read()
        except TimeoutError:
            raise ControlError(f"the supervisor did not answer {method} {path.split('?')[0]} in time") from None
        except OSError:
            raise NotRunning("the supervisor went away") from None
        finally:
            answer.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode("utf-8", "replace")
        if answer.status >= 400 or answer.status == 0:
            message = data.get("error") if isinstance(data, dict) else str(data)
            raise _error(answer.status, message)
        return data

    def get_json(self, path: str, timeout: float | None = None) -> Any | None:
        """GET `path`; the JSON answer, or None for anything else (nobody there, an error, no JSON)."""
        try:
            return self.request("GET", path, timeout=timeout)
        except A3sError:
            return None

    # ------------------------------------------------------------------ the routes

    def healthz(self, timeout: float = 2.0) -> bool:
        return bool(self.get_json("/healthz", timeout=timeout) == {"status": "ok"})

    def status(self, after: int | None = None, wait: float = 10.0, timeout: float | None = None) -> dict[str, Any]:
        """The supervisor's status; with `after` (a `seq` it answered before), once something
        changed since then or after `wait` seconds."""
        if after is None:
            return dict(self.request("GET", f"/{API_VERSION}/status", timeout=timeout))
        from urllib.parse import urlencode

        query = urlencode({"after": after, "wait": wait})
        return dict(self.request("GET", f"/{API_VERSION}/status?{query}", timeout=wait + 10))

    def start(
        self, services: Sequence[str] | None, *, deps: bool = True, wait: bool = False, timeout: float = 300
    ) -> dict[str, Any]:
        body = {"services": list(services or []), "deps": deps, "wait": wait, "timeout": timeout}
        return dict(self.request("POST", f"/{API_VERSION}/start", body, timeout=(timeout + 10) if wait else None))

    def stop(self, services: Sequence[str] | None) -> dict[str, Any]:
        return dict(self.request("POST", f"/{API_VERSION}/stop", {"services": list(services or [])}, timeout=600))

    def restart(self, services: Sequence[str], *, timeout: float = 60) -> dict[str, Any]:
        body = {"services": list(services), "wait": True, "timeout": timeout}
        return dict(self.request("POST", f"/{API_VERSION}/restart", body, timeout=timeout + 600))

    def down(self) -> dict[str, Any]:
        return dict(self.request("POST", f"/{API_VERSION}/down", {}))

    def tail(self, service: str, n: int = 20) -> list[str]:
        """The last `n` lines of `service` the supervisor keeps (its last words when it failed)."""
        from urllib.parse import urlencode

        query = urlencode({"service": service, "n": n})
        return list(self.request("GET", f"/{API_VERSION}/tail?{query}")["lines"])

    def metrics(self) -> str:
        answer = self._open("GET", "/metrics", None, None)
        try:
            return answer.read().decode()
        finally:
            answer.close()

    def logs(self, services: Sequence[str] = (), *, n: int | None = None, follow: bool = False) -> Iterator[dict[str, Any]]:
        """The log stream: first `{"since": t}`, then lines `{"service","text","at","stream"}`.

        Ends when the supervisor stops (or after the history, without `follow`).
        """
        from urllib.parse import urlencode

        query: list[tuple[str, str]] = [("service", s) for s in services]
        if n is not None:
            query.append(("n", str(n)))
        if follow:
            query.append(("follow", "1"))
        answer = self._open("GET", f"/{API_VERSION}/logs?{urlencode(query)}", None, None)
        try:
            if answer.status >= 400:
                try:
                    data = json.loads(answer.read() or b"{}")
                except ValueError:
                    data = {}
                raise _error(answer.status, data.get("error") if isinstance(data, dict) else None)
            answer.sock.settimeout(None)  # no read timeout while following: lines may be minutes apart
            for raw in answer.lines():
                if raw.strip():
                    yield json.loads(raw)
        finally:
            answer.close()


def _error(status: int, message: str | None) -> A3sError:
    text = message or f"HTTP {status}"
    return UsageError(text) if status == 404 else ControlError(text)
