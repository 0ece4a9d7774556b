"""HTTPS on the shared proxy (SPEC §6): real TLS with certificates from a3s's own CA, verified
by clients that trust only that CA."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import socket
import ssl
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import anyio
import pytest
from proxy_support import UPSTREAM
from support import free_port, wait_until
from support_control import Stack, stack_in

pytestmark = pytest.mark.timeout(120)

A3SFILE = """
dev {{
  name       = "shop"
  https      = true
  https_port = {https}
}}
service "web" {{
  cmd  = "exec {python} upstream.py"
  port = "auto"
  env  = {{ NAME = "web" }}
}}
service "envdump" {{
  cmd     = "{python} -c 'import json, os; open(\\"env.json\\", \\"w\\").write(json.dumps(dict(os.environ)))'"
  oneshot = true
}}
"""


@contextmanager
def https_stack(tmp_path: Path) -> Iterator[tuple[Stack, int, int, Path]]:
    """`a3s up -d` of a project with https on; the stack, the http and https ports, the CA folder."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "upstream.py").write_text(UPSTREAM)
    http_port, https_port = free_port(), free_port()
    (folder / "A3sfile.hcl").write_text(A3SFILE.format(python=sys.executable, https=https_port))
    data = tmp_path / "data"
    env = {"A3S_PROXY_PORT": str(http_port), "XDG_DATA_HOME": str(data)}
    with stack_in(folder, env) as st:
        result = st.a3s("up", "-d")
        assert result.code == 0, result.out + result.err
        yield st, http_port, https_port, data / "a3s" / "ca"


def trusting(ca: Path) -> ssl.SSLContext:
    """A client context that trusts a3s's CA and nothing else."""
    return ssl.create_default_context(cafile=str(ca / "ca.pem"))


def https_get(port: int, host: str, path: str, ctx: ssl.SSLContext) -> tuple[int, bytes, dict[str, object]]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname=host) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        cert = sock.getpeercert()
    assert cert is not None
    return response.status, body, dict(cert)


def test_every_route_is_served_over_tls_with_a_certificate_for_exactly_its_host(tmp_path: Path) -> None:
    with https_stack(tmp_path) as (st, _, https_port, ca):
        ctx = trusting(ca)
        host = "web.shop.localhost"
        status, body, cert = https_get(https_port, host, "/headers", ctx)
        assert status == 200
        headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert headers["x-forwarded-proto"] == "https"
        assert headers["host"] == f"{host}:{https_port}"
        assert cert["subjectAltName"] == (("DNS", host),)
        issued = dt.datetime.strptime(str(cert["notBefore"]), "%b %d %H:%M:%S %Y %Z")
        expires = dt.datetime.strptime(str(cert["notAfter"]), "%b %d %H:%M:%S %Y %Z")
        assert expires - issued <= dt.timedelta(days=397, minutes=5)
        # the short host works too, with its own certificate; the index is served over TLS
        status, _, cert = https_get(https_port, "web.localhost", "/", ctx)
        assert status == 200 and cert["subjectAltName"] == (("DNS", "web.localhost"),)
        status, body, _ = https_get(https_port, "a3s.localhost", "/", ctx)
        assert status == 200 and f"https://web.shop.localhost:{https_port}/" in body.decode()
        # what a3s shows uses https while it is on
        assert st.status()["web"]["url"] == f"https://web.shop.localhost:{https_port}"
        # pages too: a stopped service's 502 over TLS
        assert st.a3s("down", "web").code == 0
        status, body, _ = https_get(https_port, host, "/", ctx)
        assert status == 502 and b"web is stopped" in body


def test_a_websocket_over_tls_echoes(tmp_path: Path) -> None:
    with https_stack(tmp_path) as (_, _, https_port, ca):

        async def body() -> None:
            async with aiohttp.ClientSession() as client, client.ws_connect(
                f"https://127.0.0.1:{https_port}/ws", ssl=trusting(ca), server_hostname="web.shop.localhost",
                headers={"Host": f"web.shop.localhost:{https_port}"},
            ) as ws:
                await ws.send_str("over tls")
                assert (await ws.receive(timeout=10)).data == "echo over tls"

        anyio.run(body)


def test_an_unknown_or_malformed_server_name_gets_no_certificate_and_the_proxy_keeps_serving(tmp_path: Path) -> None:
    with https_stack(tmp_path) as (_, _, https_port, ca):
        ctx = trusting(ca)
        # (names Python's client refuses to send, such as "a..b.localhost", are unit-tested)
        # a client that verifies nothing: the handshake itself is refused, no certificate is sent
        loose = ssl.create_default_context()
        loose.check_hostname = False
        loose.verify_mode = ssl.CERT_NONE
        for name in ("example.com", "bad_label.localhost", "web.shop.localhost.evil.com"):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                https_get(https_port, name, "/", loose)
        assert not any(p.name.startswith(("example", "bad")) for p in (ca / "leaves").iterdir())
        # a client that trusts the system store only does not verify a3s's certificates
        with pytest.raises(ssl.SSLCertVerificationError):
            https_get(https_port, "web.shop.localhost", "/", ssl.create_default_context())
        assert https_get(https_port, "web.shop.localhost", "/", ctx)[0] == 200


def test_a_host_name_longer_than_a_common_name_may_be_is_served_from_its_san(tmp_path: Path) -> None:
    # X.509 caps a common name at 64 characters; a worktree's branch in the name passes that
    host = "feature-login-with-a-rather-long-branch-name-1234.web.shop.localhost"
    assert len(host) > 64
    with https_stack(tmp_path) as (_, _, https_port, ca):
        status, _, cert = https_get(https_port, host, "/", trusting(ca))
        assert status < 500
        assert cert["subjectAltName"] == (("DNS", host),)
        assert cert["subject"] == ()


def test_the_ca_key_is_private_and_services_are_pointed_at_the_ca(tmp_path: Path) -> None:
    with https_stack(tmp_path) as (st, _, _, ca):
        assert stat.S_IMODE(os.stat(ca).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(ca / "ca-key.pem").st_mode) == 0o600
        assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in (ca / "leaves").iterdir())
        wait_until(lambda: (st.folder / "env.json").exists(), timeout=20, message="envdump ran")
        env = json.loads((st.folder / "env.json").read_text())
        assert env["NODE_EXTRA_CA_CERTS"] == str(ca / "ca.pem")
        assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == str(ca / "bundle.pem")
        bundle = (ca / "bundle.pem").read_text()
        assert (ca / "ca.pem").read_text() in bundle
        if Path("/etc/ssl/certs/ca-certificates.crt").exists():  # the system's CAs are kept, not replaced
            assert bundle.count("BEGIN CERTIFICATE") > 10
        # a service verifying through SSL_CERT_FILE reaches another through the proxy
        ctx = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
        https_port = int(st.status()["web"]["url"].rsplit(":", 1)[1])
        assert https_get(https_port, "web.shop.localhost", "/", ctx)[0] == 200
        log = (st.folder / ".a3s" / "logs" / "a3s.log").read_text()
        assert log.count("run `a3s trust` once") == 1


def test_an_address_as_server_name_gets_the_localhost_certificate(tmp_path: Path) -> None:
    """wrk, and some other clients, send the address they dial as SNI."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to send an address as SNI")
    with https_stack(tmp_path) as (_, _, https_port, ca):
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{https_port}", "-servername", "127.0.0.1",
             "-CAfile", str(ca / "ca.pem"), "-brief"],
            input="", capture_output=True, text=True, timeout=30, check=False,
        )
        out = result.stdout + result.stderr
        assert "CN=localhost" in out or "CN = localhost" in out, out
        assert "Verification: OK" in out, out


def test_an_https_port_someone_holds_is_said_and_http_keeps_serving(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        folder = tmp_path / "shop"
        folder.mkdir()
        (folder / "upstream.py").write_text(UPSTREAM)
        (folder / "A3sfile.hcl").write_text(A3SFILE.format(python=sys.executable, https=port))
        http_port = free_port()
        with stack_in(folder, {"A3S_PROXY_PORT": str(http_port), "XDG_DATA_HOME": str(tmp_path / "data")}) as st:
            assert st.a3s("up", "-d").code == 0
            log = st.folder / ".a3s" / "logs" / "a3s.log"
            wait_until(lambda: "https: port" in log.read_text(), timeout=10, message="the https error said")
            said = next(line for line in log.read_text().splitlines() if "https: port" in line)
            assert f"https: port {port} is already in use by pid {os.getpid()} (" in said
            assert said.endswith("; stop it, or set dev.https_port")
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
            conn.request("GET", "/", headers={"Host": "web.shop.localhost"})
            assert conn.getresponse().status == 200
            conn.close()


def test_the_tls_port_is_let_go_when_the_project_that_asked_for_it_leaves(tmp_path: Path) -> None:
    """Issue 21: the TLS listener stayed bound after the only project that asked for it left."""
    from support import port_open

    with https_stack(tmp_path) as (st, http_port, https_port, _):
        other = tmp_path / "blog"
        other.mkdir()
        (other / "upstream.py").write_text(UPSTREAM)
        (other / "A3sfile.hcl").write_text(f'service "web" {{\n  cmd = "exec {sys.executable} upstream.py"\n'
                                           f'  port = "auto"\n  env = {{ NAME = "web" }}\n}}\n')
        with stack_in(other, {"A3S_PROXY_PORT": str(http_port), "XDG_DATA_HOME": str(tmp_path / "data")}) as blog:
            assert blog.a3s("up", "-d").code == 0
            assert port_open(https_port)
            assert st.a3s("down").code == 0
            wait_until(lambda: not port_open(https_port), timeout=10, message="the TLS port let go")
            assert port_open(http_port)  # the proxy serves on for the project still there
