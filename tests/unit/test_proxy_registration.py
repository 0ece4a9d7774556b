"""The registration protocol's pure half: what a supervisor sends, what the proxy accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a3s_dev.config.model import DevConfig, GlobalSettings, ServiceDef
from a3s_dev.core import history
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.link.protocol import (
    PROTOCOL,
    BadMessage,
    decode,
    encode,
    parse_registration,
    parse_status,
    register_message,
    status_message,
)

CONFIG = DevConfig(
    path=Path("/src/shop/A3sfile.hcl"),
    settings=GlobalSettings(name="shop"),
    services=(
        ServiceDef("web", "x", Path("/src/shop"), port=3000, subdomain="www", depends_on=("db",)),
        ServiceDef("db", "x", Path("/src/shop"), port=5432, proxy=False),
        ServiceDef("worker", "x", Path("/src/shop")),
    ),
)


def test_what_a_supervisor_sends_is_what_the_proxy_reads() -> None:
    statuses = [ServiceStatus("web", ServiceState.RUNNING, pid=12, port=3000, probe="GET / → 200", restarts=2)]
    message = decode(encode(register_message(CONFIG, statuses, logs=Path("/src/shop/.a3s/logs"), pid=99)))
    reg = parse_registration(message)
    assert (reg.project, reg.a3sfile, reg.pid) == ("shop", CONFIG.path, 99)
    assert [(s.name, s.port, s.subdomain, s.proxy, s.depends_on) for s in reg.services] == [
        ("web", 3000, "www", True, ("db",)), ("db", 5432, None, False, ()), ("worker", None, None, True, ()),
    ]
    assert reg.statuses == {"web": statuses[0]}
    update = decode(encode(status_message(ServiceStatus("db", ServiceState.FAILED, reason="exit code 1"))))
    assert parse_status(update["status"]) == ServiceStatus("db", ServiceState.FAILED, reason="exit code 1")


def good() -> dict[str, object]:
    return json.loads(encode(register_message(CONFIG, [], logs=Path("/src/shop/.a3s/logs"), pid=1)))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"type": "hello"}, 'first message must be "register"'),
        ({"protocol": PROTOCOL + 1}, "a3s versions differ"),
        ({"project": "Not A Label"}, "not a DNS label"),
        ({"project": 7}, '"project"'),
        ({"a3sfile": "relative/A3sfile.hcl"}, "absolute"),
        ({"pid": True}, '"pid"'),
        ({"services": {"web": 1}}, '"services"'),
        ({"services": [{"name": "../etc"}]}, "not a valid name"),
        ({"services": [{"name": "web", "port": 70000}]}, "not a port"),
        ({"services": [{"name": "web", "port": "80"}]}, '"port"'),
        ({"services": [{"name": "web"}] * 1001}, "more than 1000"),
        ({"statuses": [{"name": "ghost", "state": "running"}]}, "not one of the project's services"),
        ({"statuses": [{"name": "web", "state": "exploded"}]}, "not a service state"),
    ],
)
def test_every_field_is_checked_before_it_is_used(change: dict[str, object], why: str) -> None:
    message = {**good(), **change}
    with pytest.raises(BadMessage, match=why):
        parse_registration(message)


@pytest.mark.parametrize("line", [b"nope", b"[]", b'{"type": 1}', b"[" * 100000, b" " * (2 << 20)])
def test_a_line_that_is_not_a_message_is_refused(line: bytes) -> None:
    with pytest.raises(BadMessage):
        decode(line)


def test_the_log_tail_reads_only_the_end_of_a_big_file(tmp_path: Path) -> None:
    lines = [f"2026-12-01T10:00:00.{i % 1000:03d} line {i}" for i in range(20000)]
    (tmp_path / "web.log").write_text("\n".join(lines) + "\n")
    assert history.tail(tmp_path, "web", 3) == ["line 19997", "line 19998", "line 19999"]
    assert history.tail(tmp_path, "web", 0) == []
    assert history.tail(tmp_path, "nope", 5) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("localhost", "localhost"),
        ("WEB.Shop.localhost", "web.shop.localhost"),
        ("web.shop.localhost.", "web.shop.localhost"),
        ("a-b.localhost", "a-b.localhost"),
        ("example.com", None),
        ("localhost.example.com", None),
        ("a..b.localhost", None),
        ("-a.localhost", None),
        ("bad_label.localhost", None),
        ("x" * 64 + ".localhost", None),
        (".localhost", None),
        ("", None),
        (None, None),
        ("a." * 130 + "localhost", None),
    ],
)
def test_only_localhost_names_get_a_certificate(name: str | None, expected: str | None) -> None:
    from a3s_dev.tls.ca import certifiable

    assert certifiable(name) == expected


def test_the_system_store_is_found_by_what_the_os_has() -> None:
    from a3s_dev.tls.trust import system_store

    debian = system_store("linux", lambda p: p == "/usr/sbin/update-ca-certificates")
    assert debian is not None and debian.target == Path("/usr/local/share/ca-certificates/a3s-local-ca.crt")
    fedora = system_store("linux", lambda p: p == "/usr/bin/update-ca-trust")
    assert fedora is not None and fedora.add == ("update-ca-trust", "extract")
    mac = system_store("darwin", lambda p: False)
    assert mac is not None and not mac.copies and mac.add[:2] == ("security", "add-trusted-cert")
    assert system_store("linux", lambda p: False) is None


def test_nss_databases_are_the_profiles_that_hold_one(tmp_path: Path) -> None:
    from a3s_dev.tls.trust import nss_databases

    for folder in (".pki/nssdb", ".mozilla/firefox/a.default", "snap/firefox/common/.mozilla/firefox/b.x"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "cert9.db").write_bytes(b"")
    (tmp_path / ".mozilla/firefox/empty").mkdir()
    assert [p.relative_to(tmp_path).as_posix() for p in nss_databases(tmp_path)] == [
        ".pki/nssdb", ".mozilla/firefox/a.default", "snap/firefox/common/.mozilla/firefox/b.x",
    ]


def test_start_and_traffic_messages_name_one_service_and_its_open_sockets() -> None:
    from a3s_dev.link.protocol import parse_wake, start_message, traffic_message

    assert parse_wake(decode(encode(start_message("web")))) == ("web", None)
    assert parse_wake(decode(encode(traffic_message("web", 2)))) == ("web", 2)
    for bad in ({"type": "start", "service": "../x"}, {"type": "traffic", "service": "web", "open": -1},
                {"type": "traffic", "service": "web", "open": "2"}):
        with pytest.raises(BadMessage):
            parse_wake(bad)
