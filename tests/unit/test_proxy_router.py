"""The pure half of the proxy: Host header -> route, header filtering, and the HTML pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from multidict import CIMultiDict

from a3s_dev.config.model import ServiceDef
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.dashboard.board import Board, render_dashboard
from a3s_dev.link.addresses import RouteEntry
from a3s_dev.proxy.headers import (
    REQUEST_DROP,
    forward_headers,
    header_tokens,
    origin_form,
    plain_request,
    request_head,
    response_head,
    response_headers,
)
from a3s_dev.proxy.pages import render_not_found, render_unavailable
from a3s_dev.proxy.router import RouteKind, Router, Verdict, normalize_host, verdict


def svc(name: str, port: int | None = None, subdomain: str | None = None) -> ServiceDef:
    return ServiceDef(name=name, cmd="true", dir=Path("/tmp"), port=port, subdomain=subdomain)


@pytest.fixture
def router() -> Router:
    return Router({"shop": [svc("api", 8080), svc("web", 3000, subdomain="app"), svc("worker"), svc("db", 5432)]})


@pytest.mark.parametrize(
    "host",
    ["api.localhost", "api.localhost:7080", "API.LOCALHOST:7080", "Api.Localhost", "api.localhost.", " api.localhost "],
)
def test_service_host_routes_to_its_port_in_any_case_with_or_without_port(router: Router, host: str) -> None:
    route = router.resolve(host)
    assert route.kind is RouteKind.UPSTREAM
    assert (route.service, route.port) == ("api", 8080)


def test_explicit_subdomain_replaces_the_service_name(router: Router) -> None:
    assert router.resolve("app.localhost:7080").service == "web"
    assert router.resolve("web.localhost:7080").kind is RouteKind.UNKNOWN


@pytest.mark.parametrize("host", ["localhost", "localhost:7080", "a3s.localhost:7080", "127.0.0.1:7080", "[::1]:7080"])
def test_bare_localhost_and_a3s_localhost_give_the_index(router: Router, host: str) -> None:
    assert router.resolve(host).kind is RouteKind.INDEX


@pytest.mark.parametrize("host", ["nope.localhost", "", None, "x.api.localhost"])
def test_unknown_hosts_are_unknown(router: Router, host: str | None) -> None:
    assert router.resolve(host).kind is RouteKind.UNKNOWN


@pytest.mark.parametrize(
    "host",
    ["example.com", "api.example.com", "api.localhost:7480@evil.example", "api.localhost:x", "api.localhost.evil.example",
     "[::1]:7080@evil.example", "a b.localhost"],
)
def test_hosts_outside_localhost_or_not_hosts_at_all_are_foreign(router: Router, host: str) -> None:
    """Issue 21: a DNS-rebinding page got the 404 page listing every route; a Host smuggling
    another (`x.localhost:7480@evil.example`) made the dashboard redirect there."""
    assert router.resolve(host).kind is RouteKind.FOREIGN


def test_a_service_without_port_is_known_but_not_routable(router: Router) -> None:
    route = router.resolve("worker.localhost")
    assert route.kind is RouteKind.NOT_ROUTABLE
    assert route.service == "worker"


def test_entries_keep_declaration_order(router: Router) -> None:
    assert [(e.subdomain, e.service, e.port) for e in router.entries] == [
        ("api", "api", 8080),
        ("app", "web", 3000),
        ("db", "db", 5432),
    ]


def test_route_cache_is_bounded(router: Router) -> None:
    for i in range(Router._CACHE_LIMIT * 2 + 10):
        router.resolve(f"h{i}.localhost")
    assert len(router._cache) <= Router._CACHE_LIMIT


@pytest.mark.parametrize(
    ("raw", "host"),
    [("API.localhost:80", "api.localhost"), ("[::1]:7080", "::1"), ("[::1]", "::1"), ("::1", "::1"), (None, "")],
)
def test_normalize_host(raw: str | None, host: str) -> None:
    assert normalize_host(raw) == host


def test_forwarded_headers_keep_host_add_x_forwarded_and_drop_hop_by_hop() -> None:
    incoming = CIMultiDict(
        [
            ("Host", "api.localhost:7080"),
            ("Connection", "keep-alive, X-Private"),
            ("Keep-Alive", "timeout=5"),
            ("X-Private", "secret"),
            ("Proxy-Authorization", "Basic x"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Expect", "100-continue"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
            ("X-Forwarded-For", "10.0.0.1"),
        ]
    )
    out = forward_headers(incoming, REQUEST_DROP, "127.0.0.1", "api.localhost:7080")
    assert out["Host"] == "api.localhost:7080"
    assert out.getall("Cookie") == ["a=1", "b=2"]
    assert out["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1"
    assert out["X-Forwarded-Host"] == "api.localhost:7080"
    assert out["X-Forwarded-Proto"] == "http"
    for gone in ("Connection", "Keep-Alive", "X-Private", "Proxy-Authorization", "Transfer-Encoding", "TE", "Expect"):
        assert gone not in out, gone


def test_response_headers_keep_repeated_set_cookie_and_drop_hop_by_hop() -> None:
    upstream = CIMultiDict(
        [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Connection", "close"), ("Content-Length", "5"),
         ("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")]
    )
    out = response_headers(upstream.items(), keep_length=False)
    assert out.getall("Set-Cookie") == ["a=1", "b=2"]
    assert out["Content-Encoding"] == "gzip"
    assert "Connection" not in out and "Transfer-Encoding" not in out and "Content-Length" not in out
    assert response_headers(upstream.items(), keep_length=True)["Content-Length"] == "5"


def test_not_found_page_lists_routes_as_links() -> None:
    page = render_not_found("nope.localhost:7080", [RouteEntry("api", "api", 8080, "shop")], 7080)
    assert '<a href="http://api.shop.localhost:7080/">' in page
    assert "nope.localhost:7080" in page


def test_unavailable_page_names_service_state_and_escapes_log_lines() -> None:
    status = ServiceStatus("api", ServiceState.FAILED, exit_code=3, reason="exit code 3")
    lines = [f"line {i}" for i in range(30)][-20:] + ["<script>alert(1)</script> & done"]
    page = render_unavailable(status, lines)
    assert "api is failed" in page and "exit code 3" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; done" in page
    assert "<script>alert" not in page
    assert "<code>a3s restart api</code>" in page


def test_stopped_page_says_how_to_start_the_service() -> None:
    page = render_unavailable(ServiceStatus("web", ServiceState.STOPPED, exit_code=-15), [])
    assert "web is stopped" in page and "<code>a3s up web</code>" in page
    assert "-15" not in page and "SIGTERM" not in page  # a requested stop is not news


def test_a_crash_page_names_the_exit() -> None:
    assert "killed by SIGKILL" in render_unavailable(ServiceStatus("w", ServiceState.FAILED, exit_code=-9), [])


def board(name: str, statuses: list[ServiceStatus], **links: str) -> Board:
    return Board(name, f"/src/{name}/A3sfile.hcl", statuses, links, [[st.name for st in statuses]], {})


def test_the_dashboard_lists_every_project_its_services_and_links() -> None:
    page = render_dashboard(
        [
            board("shop", [ServiceStatus("api", ServiceState.RUNNING, pid=12, started_at=900.0, probe="GET / → 200"),
                           ServiceStatus("worker", ServiceState.STOPPED, pid=13)], api="http://api.shop.localhost:7080"),
            board("<blog>", [ServiceStatus("x<y", ServiceState.FAILED, reason="exit <b>1</b>")]),
        ],
        token='t"ok',
        now=1000.0,
    )
    assert '<a href="http://api.shop.localhost:7080">' in page
    assert '<span class="state state-running">running</span>' in page
    assert '<td class="pid">12</td>' in page and '<td class="uptime">1m40s</td>' in page
    assert '<td class="pid"></td>' in page  # a stopped service shows no pid
    assert "&lt;blog&gt;" in page and "x&lt;y" in page and "exit &lt;b&gt;1&lt;/b&gt;" in page
    assert "<blog>" not in page and "<b>1" not in page
    assert 'content="t&quot;ok"' in page
    assert "<title>✖ 1 failed · a3s</title>" in page


def test_the_graph_has_a_column_per_generation_and_an_arrow_per_dependency() -> None:
    from a3s_dev.dashboard.board import render_graph

    statuses = [ServiceStatus(n, ServiceState.RUNNING) for n in ("db", "cache", "api", "web")]
    svg = render_graph(Board("shop", "", statuses, {}, [["db", "cache"], ["api"], ["web"]],
                             {"api": ["db", "cache"], "web": ["api"]}))
    assert svg.count("<line ") == 3 and svg.count('<g class="node state-running"') == 4
    xs = {name: int(x) for name, x in re.findall(r'data-service="(\w+)"><rect x="(\d+)"', svg)}
    assert xs["db"] == xs["cache"] < xs["api"] < xs["web"]


S = ServiceState


@pytest.mark.parametrize(
    ("state", "reason", "deps", "expected"),
    [
        (S.RUNNING, None, (), Verdict.FORWARD),
        (S.UNHEALTHY, "probe failed", (), Verdict.FORWARD),  # unhealthy still routes (SPEC §3)
        (S.STARTING, None, (), Verdict.HOLD),
        (S.BACKOFF, "exit code 1, restarting in 1s", (), Verdict.HOLD),
        (S.STOPPING, "restarting", (), Verdict.HOLD),
        (S.STOPPED, "restarting", (), Verdict.HOLD),  # between the old exit and the new spawn
        (S.PENDING, "waiting for db", (S.STARTING,), Verdict.HOLD),
        (S.PENDING, "dependency db failed", (S.FAILED,), Verdict.FAIL),
        (S.STOPPED, None, (), Verdict.FAIL),
        (S.FAILED, "exit code 3", (), Verdict.FAIL),
        (S.COMPLETED, "exit code 0", (), Verdict.FAIL),
        (S.IDLE, None, (), Verdict.START),  # lazy or idle-stopped: its supervisor starts it (SPEC §13)
        (S.IDLE, "no request for 15m", (), Verdict.START),
    ],
)
def test_verdict_holds_only_what_will_become_ready(
    state: ServiceState, reason: str | None, deps: tuple[ServiceState, ...], expected: Verdict
) -> None:
    assert verdict(state, reason, deps) is expected


def test_request_head_is_one_block_with_forwarded_headers_and_our_framing() -> None:
    incoming = CIMultiDict(
        [("Host", "api.localhost:7080"), ("Connection", "keep-alive, X-Private"), ("X-Private", "s"),
         ("Transfer-Encoding", "chunked"), ("Content-Length", "3"), ("X-Forwarded-Proto", "https"),
         ("X-Forwarded-For", "10.0.0.1"), ("Accept", "*/*")]
    )
    head = request_head("POST", "/a%20b?x=1", incoming.items(), "127.0.0.1", chunked=True,
                        connection=incoming.get("Connection"))
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /a%20b?x=1 HTTP/1.1" and head.endswith(b"\r\n\r\n")
    assert "Host: api.localhost:7080" in lines and "Accept: */*" in lines
    assert "X-Forwarded-For: 10.0.0.1, 127.0.0.1" in lines
    assert "X-Forwarded-Host: api.localhost:7080" in lines
    assert "X-Forwarded-Proto: http" in lines and "X-Forwarded-Proto: https" not in lines
    assert lines.count("Transfer-Encoding: chunked") == 1  # ours, not the client's
    assert "Content-Length: 3" not in lines  # never both framings
    assert not any(l.startswith(("Connection", "X-Private")) for l in lines)


# --------------------------------------------------------------------------- the direct path's share


def test_plain_request_reads_the_common_browser_request() -> None:
    raw = (b"GET /app.js?v=1 HTTP/1.1\r\nHost: Web.localhost:7080\r\nConnection: keep-alive, X-P\r\n"
           b"X-P: 1\r\nCookie: a=b; c=\xc3\xa9\r\nContent-Length: 0")
    req = plain_request(raw)
    assert req is not None
    assert (req.method, req.target, req.host, req.close) == ("GET", "/app.js?v=1", "Web.localhost:7080", False)
    assert req.connection == "keep-alive, X-P"
    head = request_head(req.method, req.target, req.headers, "::1", chunked=False, connection=req.connection)
    lines = head.split(b"\r\n")
    assert b"Cookie: a=b; c=\xc3\xa9" in lines, "header bytes pass unchanged"
    assert b"X-P: 1" not in lines and not any(line.startswith(b"Connection") for line in lines)
    assert b"X-Forwarded-For: ::1" in lines and b"Content-Length: 0" in lines
    closing = plain_request(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: Close")
    assert closing is not None and closing.close


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.0\r\nHost: a.localhost",  # keep-alive rules differ
        b"GET http://a.localhost/ HTTP/1.1\r\nHost: a.localhost",  # absolute form
        b"POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 5",  # a body
        b"POST /reset HTTP/1.1\r\nHost: a.localhost",  # not idempotent: never sent twice
        b"POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked",
        b"GET /ws HTTP/1.1\r\nHost: a.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade",
        b"PUT / HTTP/1.1\r\nHost: a.localhost\r\nExpect: 100-continue",
        b"GET / HTTP/1.1\r\nHost: a.localhost\r\nX-A: 1\r\n  folded",  # obs-fold
        b"GET / HTTP/1.1\r\nHost : a.localhost",  # space before the colon
        b"GET / HTTP/1.1\r\nHost: a.localhost\r\nBad Header",
        b"GET / HTTP/1.1\r\nHost: a.localhost\r\nX-A: a\x00b",  # control character
        b"GET / HTTP/1.1\r\nHost: a.localhost\nX-A: 1",  # bare LF
        b"GET / HTTP/1.1\r\nAccept: */*",  # no Host
        b"GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost",  # two
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a.localhost",  # raw non-ASCII target
        b"get / HTTP/1.1\r\nHost: a.localhost",
        b"GET / HTTP/1.1\r\nHost: a.localhost\r\nX-A3s-Hops: 1",  # been through the proxy: hops are counted there
    ],
)
def test_plain_request_leaves_everything_else_to_aiohttp(raw: bytes) -> None:
    assert plain_request(raw) is None


def test_response_head_cuts_headers_named_in_connection_and_adds_our_framing() -> None:
    lines = b"\r\nServer: x\r\nX-Secret: s\r\nx-secret: t\r\nX-Kept: k"
    head = response_head(404, "Not Found", lines, connection="keep-alive, X-Secret", chunked=True, close=True)
    assert head == (b"HTTP/1.1 404 Not Found\r\nServer: x\r\nX-Kept: k\r\n"
                    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    plain = response_head(200, "OK", lines, connection="keep-alive", chunked=False, close=False)
    assert plain == b"HTTP/1.1 200 OK" + lines + b"\r\n\r\n"


def test_header_tokens_are_trimmed_lower_cased_and_never_empty() -> None:
    assert header_tokens(" Keep-Alive ,X-Private,, close") == {"keep-alive", "x-private", "close"}
    assert header_tokens(None) == header_tokens("") == set()


# ---------------------------------------------------------------------------- SPEC §8: framing is never hop-by-hop


def _head_lines(**kw: object) -> list[str]:
    defaults: dict[str, object] = {"chunked": False, "connection": None}
    defaults.update(kw)
    headers = defaults.pop("headers")
    head = request_head("POST", "/innocent", headers, "127.0.0.1", **defaults)  # type: ignore[arg-type]
    return head.decode().split("\r\n")


def test_connection_tokens_never_remove_the_framing_or_the_host() -> None:
    """A client's `Connection: content-length` must not strip the body's framing: the upstream
    would read the body as a second request on the pooled connection (request smuggling)."""
    headers = [
        ("Host", "api.localhost"),
        ("Connection", "keep-alive, content-length, host, x-forwarded-for, X-Private"),
        ("Content-Length", "42"),
        ("X-Private", "p"),
    ]
    lines = _head_lines(headers=headers, connection="keep-alive, content-length, host, x-forwarded-for, X-Private")
    assert "Content-Length: 42" in lines
    assert "Host: api.localhost" in lines and "X-Forwarded-Host: api.localhost" in lines
    assert "X-Forwarded-For: 127.0.0.1" in lines
    assert "X-Private: p" not in lines  # a real hop-by-hop header named in Connection still goes


def test_a_response_connection_token_never_removes_its_length() -> None:
    out = response_headers([("Connection", "content-length, transfer-encoding"), ("Content-Length", "5")], keep_length=True)
    assert out["Content-Length"] == "5"
    head = response_head(200, "OK", b"\r\nContent-Length: 5", connection="content-length", chunked=False, close=False)
    assert b"\r\nContent-Length: 5\r\n" in head


def test_the_clients_x_forwarded_host_and_proto_are_replaced_never_passed_through() -> None:
    headers = [("Host", "api.localhost:7080"), ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "https")]
    lines = _head_lines(headers=headers)
    assert [line for line in lines if line.lower().startswith("x-forwarded-host")] == ["X-Forwarded-Host: api.localhost:7080"]
    assert [line for line in lines if line.lower().startswith("x-forwarded-proto")] == ["X-Forwarded-Proto: http"]
    ws = forward_headers(dict(headers), REQUEST_DROP, "127.0.0.1", "api.localhost:7080")
    assert ws.getall("X-Forwarded-Host") == ["api.localhost:7080"] and ws.getall("X-Forwarded-Proto") == ["http"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://evil.example/x?q=1", "/x?q=1"),
        ("http://evil.example", "/"),
        ("https://a.b:99/p/q", "/p/q"),
        ("/already?fine", "/already?fine"),
        ("*", "*"),
    ],
)
def test_an_absolute_form_target_goes_upstream_in_origin_form(target: str, expected: str) -> None:
    assert origin_form(target) == expected
    assert request_head("GET", target, [("Host", "x")], None, chunked=False, connection=None).startswith(
        f"GET {expected} HTTP/1.1\r\n".encode()
    )


def test_a_service_is_also_at_its_subdomain_under_the_projects_name() -> None:
    router = Router({"shop": [ServiceDef("web", "x", Path("."), port=3000, subdomain="web")]})
    assert router.resolve("web.shop.localhost:7080").service == "web"
    assert router.resolve("WEB.Shop.localhost").service == "web"
    assert router.resolve("web.shop.localhost").project == "shop"
    assert router.resolve("web.localhost").service == "web"
    assert router.resolve("web.other.localhost").kind is RouteKind.UNKNOWN
    assert router.resolve("shop.localhost").kind is RouteKind.INDEX


def two_projects(departed: dict[str, list[str]] | None = None) -> Router:
    return Router(
        {
            "shop": [svc("web", 3000), svc("api", 8000), svc("db", 5432)],
            "blog": [svc("web", 3001), ServiceDef("pg", "x", Path("."), port=5433, proxy=False)],
        },
        departed,
    )


def test_each_project_has_its_own_hosts() -> None:
    router = two_projects()
    assert (router.resolve("web.shop.localhost").port, router.resolve("web.blog.localhost").port) == (3000, 3001)
    assert router.resolve("api.blog.localhost").kind is RouteKind.UNKNOWN
    assert router.resolve("pg.blog.localhost").kind is RouteKind.NOT_HTTP
    assert [(e.project, e.subdomain) for e in router.entries] == [
        ("shop", "web"), ("shop", "api"), ("shop", "db"), ("blog", "web"),
    ]


def test_a_subdomain_of_one_project_alone_works_without_the_project() -> None:
    router = two_projects()
    route = router.resolve("api.localhost:7080")
    assert (route.kind, route.project, route.port) == (RouteKind.UPSTREAM, "shop", 8000)
    assert router.resolve("pg.localhost").kind is RouteKind.NOT_HTTP


def test_a_subdomain_of_several_projects_lists_the_choices() -> None:
    route = two_projects().resolve("web.localhost")
    assert route.kind is RouteKind.AMBIGUOUS
    assert [(c.project, c.port) for c in route.choices] == [("shop", 3000), ("blog", 3001)]


def test_the_hosts_of_a_project_that_left_say_so() -> None:
    router = two_projects({"games": ["play", "admin"]})
    for host in ("play.games.localhost", "play.localhost", "games.localhost", "nope.games.localhost"):
        route = router.resolve(host)
        assert (route.kind, route.project) == (RouteKind.PROJECT_GONE, "games"), host
    assert router.resolve("nope.localhost").kind is RouteKind.UNKNOWN
    assert router.resolve("x.never.localhost").kind is RouteKind.UNKNOWN


def test_a_project_back_under_its_name_is_served_again() -> None:
    router = Router({"games": [svc("play", 4000)]}, {"games": ["play"]})
    assert router.resolve("play.games.localhost").kind is RouteKind.UPSTREAM


def test_the_error_page_shows_the_last_probe_result_escaped() -> None:
    from a3s_dev.core.state import ServiceState, ServiceStatus
    from a3s_dev.proxy.pages import render_unavailable

    status = ServiceStatus("api", ServiceState.STARTING, probe="GET /health → 500 <script>")
    page = render_unavailable(status, [])
    assert "last probe: GET /health → 500 &lt;script&gt;" in page and "<script>" not in page


def test_the_hop_count_is_the_proxys_own_one_more_each_time_and_no_token_removes_it() -> None:
    """Issue 21: a service sending requests on to its own address is caught by this count."""
    from a3s_dev.proxy.headers import hops_of

    headers = [("Host", "api.localhost"), ("Connection", "X-A3s-Hops"), ("X-A3s-Hops", "3")]
    lines = request_head("GET", "/", headers, None, chunked=False, connection="X-A3s-Hops", hops=4).decode().split("\r\n")
    assert [line for line in lines if line.lower().startswith("x-a3s-hops")] == ["X-A3s-Hops: 4"]
    first = request_head("GET", "/", [("Host", "api.localhost")], None, chunked=False, connection=None)
    assert b"\r\nX-A3s-Hops: 1\r\n" in first
    ws = forward_headers(dict(headers), REQUEST_DROP, None, "api.localhost", hops=4)
    assert ws.getall("X-A3s-Hops") == ["4"]
    assert [hops_of(v) for v in (None, "", "2", "08", "²", "-1", "1e3", "99999")] == [0, 0, 2, 8, 0, 0, 0, 0]
