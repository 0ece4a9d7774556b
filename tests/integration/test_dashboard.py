"""The dashboard (SPEC §7): its JSON API and event stream over plain HTTP, and the page itself
in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import free_port, holds, wait_until
from support_control import SERVICE, Stack, proxied_stack, stack_in

from a3s_dev.link import proxy_process

pytestmark = pytest.mark.timeout(120)

A3SFILE = """
dev {{
  name = "shop"
  stop_timeout = "3s"
}}
service "api" {{
  cmd  = "exec {python} server.py"
  port = "auto"
}}
service "web" {{
  cmd        = "exec {python} server.py"
  port       = "auto"
  depends_on = ["api"]
}}
"""
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the HTTP tests still run; the browser ones skip
    expect = sync_playwright = None  # type: ignore[assignment]
SCREENSHOTS = Path(os.environ.get("A3S_TEST_ARTIFACTS", "/tmp/a3s-test-artifacts"))


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def dashboard_stack(tmp_path: Path) -> Iterator[tuple[Stack, int]]:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "server.py").write_text(SERVICE)
    (folder / "A3sfile.hcl").write_text(A3SFILE.format(python=sys.executable))
    with proxied_stack(folder) as (st, proxy):
        yield st, proxy


def request(port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
            host: str = "a3s.localhost") -> tuple[int, bytes]:
    """One request (redirects are not followed); the status and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers={"Host": f"{host}:{port}", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def token_of(page: bytes) -> str:
    marker = b'name="a3s-token" content="'
    start = page.index(marker) + len(marker)
    return page[start : page.index(b'"', start)].decode()


# ---------------------------------------------------------------------------- over plain HTTP


def test_the_page_as_served_holds_every_service_and_the_graph(tmp_path: Path) -> None:
    with dashboard_stack(tmp_path) as (st, proxy):
        status, page = request(proxy, "/")
        assert status == 200
        text = page.decode()
        rows = st.status()
        for name in ("api", "web"):
            assert f'data-service="{name}"' in text
            assert f'<td class="pid">{rows[name]["pid"]}</td>' in text
            assert f'<td class="port">{rows[name]["port"]}</td>' in text
        assert text.count('<span class="state state-running">running</span>') == 2
        assert '<svg class="deps"' in text and text.count("<line ") == 1  # api -> web
        assert status == 200 and request(proxy, "/", host="localhost")[0] == 200
        for asset in ("/_a3s/dashboard.js", "/_a3s/dashboard.css"):
            assert request(proxy, asset)[0] == 200
        # the project's own host sends the browser to the dashboard
        conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=30)
        conn.request("GET", "/", headers={"Host": f"shop.localhost:{proxy}"})
        answer = conn.getresponse()
        assert answer.status == 302 and answer.getheader("Location") == f"http://a3s.localhost:{proxy}/#shop"
        conn.close()


def test_api_services_are_the_status_json_objects_plus_project(tmp_path: Path) -> None:
    with dashboard_stack(tmp_path) as (st, proxy):
        status, body = request(proxy, "/api/services")
        assert status == 200
        rows = json.loads(body)
        mine = {r["name"]: r for r in json.loads(st.a3s("status", "--json").out)}
        for row in rows:
            expected = mine[row["name"]]
            for key in ("name", "state", "pid", "port", "health", "restarts", "exit_code", "url", "probe", "project"):
                assert row[key] == expected[key], key
        assert {r["project"] for r in rows} == {"shop"}


def test_the_event_stream_names_project_service_and_state_within_a_second(tmp_path: Path) -> None:
    with dashboard_stack(tmp_path) as (st, proxy):
        sock = socket.create_connection(("127.0.0.1", proxy), timeout=10)
        sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: a3s.localhost:{proxy}\r\n\r\n".encode())
        received = b""
        while b"event: projects" not in received:
            received += sock.recv(65536)
        assert b"text/event-stream" in received
        before = time.monotonic()
        stopper = threading.Thread(target=lambda: st.a3s("down", "web"))
        stopper.start()
        seen: list[dict[str, object]] = []
        while not any(e["service"] == "web" and e["state"] == "stopped" for e in seen):
            chunk = sock.recv(65536)
            assert chunk, "the stream ended"
            received += chunk
            for data in re.findall(rb"event: state\ndata: (.*)\n", received):
                event = json.loads(data)
                if event not in seen:
                    seen.append(event)
        stopper.join()
        sock.close()
        stopped = next(e for e in seen if e["state"] == "stopped")
        assert stopped["project"] == "shop" and stopped["status"]["name"] == "web"  # type: ignore[index]
        assert time.monotonic() - before < 5.0  # `a3s down` itself included; the event follows at once


def test_logs_come_with_their_history(tmp_path: Path) -> None:
    with dashboard_stack(tmp_path) as (_, proxy):
        mine = {"X-A3S-Token": token_of(request(proxy, "/")[1])}
        request(proxy, "/hello-history", host="api.shop.localhost")
        wait_until(lambda: b"api got /hello-history" in request(proxy, "/api/shop/api/logs?n=50", headers=mine)[1],
                   timeout=10, message="the line in the history")
        lines = json.loads(request(proxy, "/api/shop/api/logs?n=50&since=1m", headers=mine)[1])
        assert all(set(line) == {"service", "at", "text"} for line in lines)
        merged = json.loads(request(proxy, "/api/shop/logs?n=500", headers=mine)[1])
        assert {line["service"] for line in merged} >= {"api", "web"}
        # issue 21: history reads files; a page of another site must not be able to fire them
        for headers in ({}, {"X-A3S-Token": "guessed"}):
            status, body = request(proxy, "/api/shop/api/logs?n=50", headers=headers)
            assert status == 403 and b"must carry the dashboard's token" in body
        assert request(proxy, "/api/shop/api/logs?n=lots", headers=mine)[0] == 400
        assert request(proxy, "/api/shop/nope/logs")[0] == 404
        assert request(proxy, "/api/nope/api/logs")[0] == 404


def test_actions_without_the_token_or_from_another_origin_are_refused_and_do_nothing(tmp_path: Path) -> None:
    with dashboard_stack(tmp_path) as (st, proxy):
        token = token_of(request(proxy, "/")[1])
        pid = st.status()["api"]["pid"]
        own = f"http://a3s.localhost:{proxy}"
        attempts = [
            {},  # curl-like: no Origin, no token
            {"Origin": own},  # the right origin, no token
            {"Origin": own, "X-A3S-Token": "guess"},
            {"Origin": "http://evil.example", "X-A3S-Token": token},  # another site that got the token
            {"Origin": f"http://web.shop.localhost:{proxy}", "X-A3S-Token": token},  # a service's page
            {"Origin": "null", "X-A3S-Token": token},
        ]
        for headers in attempts:
            for path in ("/api/shop/api/restart", "/api/shop/api/stop", "/api/shop/stop"):
                status, body = request(proxy, path, method="POST", headers=headers)
                assert status == 403, (headers, body)
        assert st.status()["api"]["pid"] == pid and st.status()["api"]["state"] == "running"
        # the dashboard's own page, with its token, may
        status, body = request(proxy, "/api/shop/api/restart", method="POST", headers={"Origin": own, "X-A3S-Token": token})
        assert status == 200, body
        wait_until(lambda: st.status()["api"]["pid"] not in (None, pid), timeout=20, message="api restarted")


# ---------------------------------------------------------------------------- in a real browser


@pytest.fixture
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def test_the_dashboard_in_a_browser_stays_live_acts_and_shows_logs(tmp_path: Path, browser: object) -> None:
    with dashboard_stack(tmp_path) as (st, proxy):
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"http://a3s.localhost:{proxy}/")
        row = {name: page.locator(f'tr.service[data-service="{name}"]') for name in ("api", "web")}
        for locator in row.values():
            assert locator.locator("td.state").inner_text() == "running"
        page.wait_for_selector("#live.on", timeout=10_000)
        page.evaluate("window.__notReloaded = true")

        # another terminal stops web: its row turns stopped without a reload
        assert st.a3s("down", "web").code == 0
        expect(row["web"].locator("td.state")).to_have_text("stopped", timeout=10_000)
        assert page.evaluate("window.__notReloaded") is True
        assert page.locator('g.node[data-service="web"]').get_attribute("class") == "node state-stopped"

        # the start button starts it again, the restart button restarts api (a new pid)
        row["web"].locator('button[data-act="start"]').click()
        expect(row["web"].locator("td.state")).to_have_text("running", timeout=20_000)
        old_pid = row["api"].locator("td.pid").inner_text()
        row["api"].locator('button[data-act="restart"]').click()
        expect(row["api"].locator("td.pid")).not_to_have_text(old_pid, timeout=20_000)
        expect(row["api"].locator("td.pid")).to_have_text(re.compile(r"^\d+$"), timeout=20_000)
        wait_until(lambda: str(st.status()["api"]["pid"]) == row["api"].locator("td.pid").inner_text(),
                   timeout=10, message="the page shows api's new pid")

        # the log view: a line printed after the page loaded shows up, live
        row["api"].locator("button.logs").click()
        page.wait_for_selector("#logs:not([hidden])")
        page.wait_for_timeout(300)  # the live stream attaches
        request(proxy, "/printed-after-load", host="api.shop.localhost")
        expect(page.locator("#log .line", has_text="api got /printed-after-load")).to_have_count(1, timeout=10_000)
        # the filter hides the others; copying takes the text only
        page.fill("#log-filter", "printed-after")
        visible = page.locator("#log .line:not(.hide)")
        assert visible.count() >= 1 and all("printed-after" in t for t in visible.all_inner_texts())

        # the project's merged log names each line's service, outside what a selection copies
        page.fill("#log-filter", "")
        page.locator('section.project[data-project="shop"] button.logs-all').click()
        expect(page.locator("#log .line .who", has_text="api").first).to_be_visible(timeout=10_000)
        copied = page.evaluate(
            "(() => { const r = document.createRange(); r.selectNodeContents(document.getElementById('log'));"
            " const s = getSelection(); s.removeAllRanges(); s.addRange(r); return s.toString(); })()"
        )
        assert "api got /printed-after-load" in copied
        assert "api api got" not in copied and not any(line.startswith("web web") for line in copied.splitlines())

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"dashboard screenshot: {shot}")  # kept as a CI artifact

        # a page from another origin cannot act, even knowing the URL
        pid_before = st.status()["api"]["pid"]
        evil = browser.new_page()  # type: ignore[attr-defined]
        evil.goto(f"http://127.0.0.1:{proxy}/_a3s/dashboard.css")  # any other origin than a3s.localhost's
        status = evil.evaluate(
            f"fetch('http://a3s.localhost:{proxy}/api/shop/api/restart', {{method: 'POST', mode: 'no-cors'}})"
            ".then(r => r.status).catch(() => -1)"
        )
        assert status in (0, -1)  # opaque or refused: and nothing happened
        holds(lambda: st.status()["api"]["pid"] == pid_before, 1.5, message="api was not restarted")
        assert errors == [], errors


def test_everything_the_page_shows_is_escaped(tmp_path: Path, browser: object) -> None:
    """A service whose output is markup: shown as text in the log view, never run."""
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "noisy.py").write_text(
        'import time\nprint("<img src=x onerror=alert(1)> \\x1b[31mred\\x1b[0m", flush=True)\ntime.sleep(600)\n'
    )
    (folder / "A3sfile.hcl").write_text(f'dev {{ name = "esc" }}\nservice "noisy" {{ cmd = "exec {sys.executable} noisy.py" }}\n')
    proxy = free_port()
    with stack_in(folder, {"A3S_PROXY_PORT": str(proxy)}) as st:
        assert st.a3s("up", "-d").code == 0
        page = browser.new_page()  # type: ignore[attr-defined]
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"http://a3s.localhost:{proxy}/")
        page.locator('tr.service[data-service="noisy"] button.logs').click()
        expect(page.locator("#log .line", has_text="<img src=x")).to_have_count(1, timeout=10_000)
        assert page.locator("#log img").count() == 0 and dialogs == []
        red = page.locator("#log .line span", has_text="red").first
        assert red.evaluate("e => getComputedStyle(e).color") == "rgb(204, 0, 0)"  # the ANSI color, rendered


def test_after_the_proxy_is_replaced_the_open_page_reconnects_and_can_still_act(tmp_path: Path, browser: object) -> None:
    from a3s_dev.link import proxy_process

    with dashboard_stack(tmp_path) as (_, proxy):
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"http://a3s.localhost:{proxy}/")
        page.wait_for_selector("#live.on", timeout=10_000)
        old_token = page.evaluate("document.querySelector('meta[name=\"a3s-token\"]').content")
        old = proxy_process.running_pid(proxy)
        assert old is not None
        os.kill(old, 9)
        # the supervisor brings a new proxy up; the page's event stream reconnects to it
        wait_until(lambda: (pid := proxy_process.running_pid(proxy)) is not None and pid != old, timeout=15,
                   message="a new proxy")
        page.wait_for_selector("#live.on", timeout=15_000)
        api = page.locator('tr.service[data-service="api"]')
        old_pid = api.locator("td.pid").inner_text()
        api.locator('button[data-act="restart"]').click()
        expect(api.locator("td.pid")).not_to_have_text(old_pid, timeout=20_000)
        expect(api.locator("td.pid")).to_have_text(re.compile(r"^\d+$"), timeout=20_000)
        assert old_token not in request(proxy, "/")[1].decode()  # the new proxy made a new token


def test_the_page_tells_the_truth_buttons_times_empty_lines_and_a_confirmed_project_stop(
    tmp_path: Path, browser: object
) -> None:
    """SPEC §16: buttons follow the state; stopping a project asks first; the log view shows
    each line's time, colors names as the terminal does, and copies empty lines too."""
    folder = tmp_path / "truth"
    folder.mkdir()
    (folder / "lines.py").write_text(
        'import time\nprint("first\\n\\n\\nlast", flush=True)\ntime.sleep(600)\n'
    )
    (folder / "A3sfile.hcl").write_text(
        f'dev {{ name = "truth" }}\n'
        f'service "task" {{\n  cmd = "echo done"\n  oneshot = true\n}}\n'
        f'service "lines" {{ cmd = "exec {sys.executable} lines.py" }}\n'
    )
    proxy = free_port()
    with stack_in(folder, {"A3S_PROXY_PORT": str(proxy)}) as st:
        assert st.a3s("up", "-d").code == 0
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"http://a3s.localhost:{proxy}/")
        page.wait_for_selector("#live.on", timeout=10_000)
        task, lines = (page.locator(f'tr.service[data-service="{n}"]') for n in ("task", "lines"))
        expect(task.locator("td.state")).to_have_text("completed", timeout=10_000)
        assert task.locator("button[data-act]").all_inner_texts() == ["start"]  # no stop on a finished task
        assert lines.locator("button[data-act]").all_inner_texts() == ["restart", "stop"]  # no start

        # stopping the project asks first: dismissed, nothing happens
        asked: list[str] = []
        page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        page.locator("button.stop-project").click()
        holds(lambda: st.status()["lines"]["state"] == "running", 1.0, message="nothing stopped")
        assert asked == ["Stop every service of truth?"]
        # the buttons follow a live change of state
        assert st.a3s("down", "lines").code == 0
        expect(lines.locator("td.state")).to_have_text("stopped", timeout=10_000)
        assert lines.locator("button[data-act]").all_inner_texts() == ["start"]
        lines.locator('button[data-act="start"]').click()
        expect(lines.locator("td.state")).to_have_text("running", timeout=10_000)

        # the merged log: times as the terminal shows them, names in their terminal colors,
        # and a selection copies the empty lines between "first" and "last"
        page.locator("button.logs-all").click()
        expect(page.locator("#log .line", has_text="last").first).to_be_visible(timeout=10_000)
        stamp = page.locator("#log .line .at").first.inner_text()
        assert re.fullmatch(r"\d\d:\d\d:\d\d", stamp), stamp
        color = page.locator("#log .line .who", has_text="lines").first.evaluate("e => getComputedStyle(e).color")
        assert color not in ("", "rgb(0, 0, 0)") and color != page.locator("#log .line .at").first.evaluate(
            "e => getComputedStyle(e).color")
        copied = page.evaluate(
            "(() => { const r = document.createRange(); r.selectNodeContents(document.getElementById('log'));"
            " const s = getSelection(); s.removeAllRanges(); s.addRange(r); return s.toString(); })()"
        )
        assert "first\n\n\nlast" in copied, repr(copied)
        assert stamp not in copied  # the times are shown, not copied
        assert page.locator('link[rel="icon"]').count() == 1
        assert errors == [], errors


def test_hosts_outside_localhost_get_a_bare_421_and_never_the_routes(tmp_path: Path) -> None:
    """Issue 21: a DNS-rebinding page (any Host) got the 404 page listing every route, and a
    Host smuggling another made the dashboard redirect there."""
    with dashboard_stack(tmp_path) as (_, proxy):
        for host in ("evil.example", f"shop.localhost:{proxy}@evil.example", "api.shop.localhost.evil.example"):
            status, body = request(proxy, "/", host=host)
            assert status == 421 and b"api" not in body and b"shop" not in body, (host, body)
        conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=30)
        conn.request("GET", "/", headers={"Host": f"shop.localhost:{proxy}"})
        answer = conn.getresponse()
        assert answer.getheader("Location") == f"http://a3s.localhost:{proxy}/#shop"
        conn.close()
        assert request(proxy, "/", host="nope.localhost")[0] == 404  # a *.localhost name still gets its page


def test_live_log_streams_at_once_are_bounded(tmp_path: Path) -> None:
    """Issue 21: 200 log views that never read grew the proxy from 40 to 188 MB."""
    from a3s_dev.dashboard.handlers import MAX_FOLLOWING

    with dashboard_stack(tmp_path) as (_, proxy):
        def follow() -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", proxy), timeout=10)
            sock.sendall(f"GET /api/shop/api/logs?follow=1 HTTP/1.1\r\nHost: a3s.localhost:{proxy}\r\n\r\n".encode())
            return sock

        views = [follow() for _ in range(MAX_FOLLOWING)]
        try:
            for view in views:
                assert view.recv(4096).startswith(b"HTTP/1.1 200")
            status, body = request(proxy, "/api/shop/api/logs?follow=1")
            assert status == 503 and b"log streams are open already" in body
        finally:
            for view in views:
                view.close()


# ---------------------------------------------------------------------------- where it asks for a login


@contextmanager
def login_stack(tmp_path: Path) -> Iterator[tuple[Stack, int, str]]:
    """The dashboard stack on a proxy that asks for a login, as it does where the kernel does
    not say who is on a connection (macOS); `A3S_PROXY_LOGIN=1` takes the same path on Linux.
    The stack, the proxy's port and the login link `a3s up` printed."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "server.py").write_text(SERVICE)
    (folder / "A3sfile.hcl").write_text(A3SFILE.format(python=sys.executable))
    proxy = free_port()
    with stack_in(folder, {"A3S_PROXY_PORT": str(proxy), "A3S_PROXY_LOGIN": "1"}) as st:
        result = st.a3s("up", "-d")
        assert result.code == 0, result.out + result.err
        history = st.paths.logs_dir / "a3s.log"
        found = wait_until(
            lambda: re.search(rf"dashboard: (http://a3s\.localhost:{proxy}/\?login=[\w-]+) \(a login link, good once\)",
                              history.read_text()),
            timeout=10, message="the login link in the stream",
        )
        yield st, proxy, found.group(1)


def cookie_of(port: int, link: str) -> str:
    """Open a login link as a browser would: the cookie it sets (`name=value`)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", link.split(f":{port}", 1)[1], headers={"Host": f"a3s.localhost:{port}"})
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 303 and answer.getheader("Location") == "/", answer.status
        set_cookie = answer.getheader("Set-Cookie") or ""
    finally:
        conn.close()
    attributes = [a.strip() for a in set_cookie.split(";")]
    assert {"Path=/", "HttpOnly", "SameSite=Strict"} <= set(attributes), set_cookie
    assert not any(a.lower().startswith("domain=") for a in attributes), "for the dashboard's host only"
    return attributes[0]


def test_where_the_kernel_does_not_say_who_connects_the_dashboard_asks_for_a_login(tmp_path: Path) -> None:
    """Issue 21: on macOS the proxy cannot refuse other users by uid; its dashboard, its API,
    its route list and the services' logs are then behind a one-time login link only this user
    can get (from the 0600 registration socket: `a3s up` prints one, `a3s ls` asks for one)."""
    with login_stack(tmp_path) as (st, proxy, link):
        pid = st.status()["api"]["pid"]
        own = f"http://a3s.localhost:{proxy}"
        # without the cookie: nothing of this user's is shown, nothing is done
        status, page = request(proxy, "/")
        assert status == 403 and b"Log in to the dashboard" in page and b"shop" not in page
        assert b"a3s-token" not in page
        for path in ("/api/services", "/api/projects", "/api/shop/api/logs?n=50", "/metrics"):
            status, body = request(proxy, path)
            assert status == 403 and b"api listening" not in body, path
        for path in ("/api/shop/api/restart", "/api/shop/stop"):
            assert request(proxy, path, method="POST", headers={"Origin": own, "X-A3S-Token": "x"})[0] == 403
        status, page = request(proxy, "/", host="nope.localhost")  # the 404 page lists no route
        assert status == 404 and b"shop.localhost" not in page and b"a3s status" in page
        assert request(proxy, "/?login=guessed")[0] == 403
        # the services themselves are served as always (any user reaches their ports anyway)
        assert request(proxy, "/", host="web.shop.localhost")[0] == 200

        # the link `a3s up` printed, opened once: a cookie for this host, the address without it
        cookie = {"Cookie": cookie_of(proxy, link)}
        status, page = request(proxy, link.split(f":{proxy}", 1)[1])
        assert status == 403 and b"used already" in page, "a login link works once"
        status, page = request(proxy, "/", headers=cookie)
        assert status == 200 and b'data-project="shop"' in page
        assert request(proxy, "/api/services", headers=cookie)[0] == 200
        mine = {**cookie, "Origin": own, "X-A3S-Token": token_of(page)}
        assert request(proxy, "/api/shop/api/logs?n=50", headers=mine)[0] == 200
        assert request(proxy, "/api/shop/api/restart", method="POST", headers={**cookie, "Origin": own})[0] == 403
        assert st.status()["api"]["pid"] == pid, "refused actions did nothing"
        status, body = request(proxy, "/api/shop/api/restart", method="POST", headers=mine)
        assert status == 200, body
        wait_until(lambda: st.status()["api"]["pid"] not in (None, pid), timeout=20, message="api restarted")

        # an error page says where the log is instead of showing it
        assert st.a3s("down", "web").code == 0
        status, page = request(proxy, "/", host="web.shop.localhost")
        assert status in (502, 503) and b"web listening" not in page and b"a3s logs web" in page

        # `a3s ls` logs in by itself, and hands out a new link
        listed = st.a3s("ls")
        assert listed.code == 0 and "shop" in listed.out, listed.out + listed.err
        fresh = re.search(rf"dashboard login \(good once\): (http://a3s\.localhost:{proxy}/\?login=[\w-]+)", listed.out)
        assert fresh is not None, listed.out
        assert request(proxy, "/", headers={"Cookie": cookie_of(proxy, fresh.group(1))})[0] == 200
        # the redirect stays on the dashboard whatever the path
        for path in ("//evil.example/", "/\\evil.example/"):
            token = proxy_process.login(proxy)
            assert token is not None
            conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
            conn.request("GET", f"{path}?login={token}&keep=1", headers={"Host": f"a3s.localhost:{proxy}"})
            answer = conn.getresponse()
            assert (answer.status, answer.getheader("Location")) == (303, "/evil.example/?keep=1"), path
            conn.close()
        assert json.loads(st.a3s("ls", "--json").out)[0]["name"] == "shop"


def test_the_login_link_in_a_browser_opens_the_dashboard_and_the_cookie_stays_out_of_scripts(
    tmp_path: Path, browser: object
) -> None:
    with login_stack(tmp_path) as (st, proxy, link):
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"http://a3s.localhost:{proxy}/")
        expect(page.locator("h1")).to_have_text("Log in to the dashboard")
        page.goto(link)
        assert page.url == f"http://a3s.localhost:{proxy}/", "the token is gone from the address"
        expect(page.locator('[data-service="api"] span.state')).to_have_text("running", timeout=10_000)
        assert page.evaluate("document.cookie") == "", "HttpOnly: no script reads it"
        page.reload()  # logged in until the proxy stops, and live: its event stream carries the cookie
        expect(page.locator('[data-service="web"] span.state')).to_have_text("running", timeout=10_000)
        assert st.a3s("down", "web").code == 0
        expect(page.locator('[data-service="web"] span.state')).to_have_text("stopped", timeout=10_000)
