"""`a3s trust` against a temporary system store and real NSS databases made with certutil."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from a3s_dev.tls.ca import LocalCA
from a3s_dev.tls.trust import CA_NAME, SystemStore, install, uninstall

pytestmark = pytest.mark.timeout(60)
CERTUTIL = shutil.which("certutil")
needs_certutil = pytest.mark.skipif(CERTUTIL is None, reason="certutil (libnss3-tools) is not installed")


def nss_db(folder: Path) -> Path:
    folder.mkdir(parents=True)
    assert CERTUTIL is not None
    subprocess.run([CERTUTIL, "-N", "-d", f"sql:{folder}", "--empty-password"], check=True, timeout=30)
    return folder


def nicknames(db: Path) -> list[str]:
    assert CERTUTIL is not None
    out = subprocess.run([CERTUTIL, "-L", "-d", f"sql:{db}"], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    return [line.rsplit(None, 1)[0].strip() for line in out.splitlines()[4:] if line.strip()]


def fake_store(tmp_path: Path) -> tuple[SystemStore, Path]:
    """A store folder and an update command that records each call (as update-ca-certificates would run)."""
    calls = tmp_path / "calls.txt"
    update = ("sh", "-c", f'echo "$0 $(ls {tmp_path / "anchors"} | wc -l)" >> {calls}')
    store = SystemStore("the test store", tmp_path / "anchors" / "a3s-local-ca.crt", (*update, "add"), (*update, "remove"))
    return store, calls


@needs_certutil
def test_trust_adds_exactly_one_entry_everywhere_and_uninstall_removes_exactly_it(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    store, calls = fake_store(tmp_path)
    (tmp_path / "anchors").mkdir()
    (tmp_path / "anchors" / "someone-else.crt").write_text("not ours\n")
    firefox, chromium = nss_db(tmp_path / "firefox"), nss_db(tmp_path / "chromium")
    outcome = install(ca, store=store, nss=[firefox, chromium], certutil=CERTUTIL)
    assert outcome.trusted_somewhere and not outcome.failed, outcome.lines
    assert store.target.read_bytes() == ca.cert_path.read_bytes()
    assert sorted(p.name for p in (tmp_path / "anchors").iterdir()) == ["a3s-local-ca.crt", "someone-else.crt"]
    assert calls.read_text().split() == ["add", "2"]
    assert [len(nicknames(db)) for db in (firefox, chromium)] == [1, 1]
    assert nicknames(firefox)[0].startswith("a3s local development CA")
    assert any(str(store.target) in line for line in outcome.lines)
    assert any(line.startswith("  export SSL_CERT_FILE=") for line in outcome.lines)
    # again: nothing added twice
    again = install(ca, store=store, nss=[firefox, chromium], certutil=CERTUTIL)
    assert all("already trusts it" in line for line in again.lines[:3]), again.lines
    assert [len(nicknames(db)) for db in (firefox, chromium)] == [1, 1]
    assert calls.read_text().split() == ["add", "2"]

    removed = uninstall(ca, certutil=CERTUTIL)
    assert not removed.failed, removed.lines
    assert sorted(p.name for p in (tmp_path / "anchors").iterdir()) == ["someone-else.crt"]
    assert calls.read_text().split() == ["add", "2", "remove", "1"]
    assert [nicknames(db) for db in (firefox, chromium)] == [[], []]
    assert not ca.trusted()
    assert uninstall(ca, certutil=CERTUTIL).lines == [
        "nothing to remove: `a3s trust` has not installed this CA anywhere"
    ]


def test_a_store_it_may_not_change_gets_the_commands_to_run_with_sudo(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    store = SystemStore("the test store", Path("/proc/a3s-nope/a3s-local-ca.crt"), ("true",), ("true",))
    outcome = install(ca, store=store, nss=[], certutil=None)
    assert outcome.failed and not outcome.trusted_somewhere
    assert f"run: sudo cp {ca.cert_path} /proc/a3s-nope/a3s-local-ca.crt && sudo true" in outcome.lines[0]
    assert not ca.trusted()


@needs_certutil
def test_the_command_finds_the_browsers_databases_and_says_what_it_changed(tmp_path: Path) -> None:
    """`a3s trust` as a user who may not change the system store: the NSS databases under its
    home change, the system store does not, and it says how to do that with sudo."""
    tmp_path = Path(tempfile.mkdtemp(prefix="a3s-trust-"))  # a folder another user can reach
    os.chmod(tmp_path, 0o755)
    home = tmp_path / "home"
    chromium = nss_db(home / ".pki" / "nssdb")
    firefox = nss_db(home / ".mozilla" / "firefox" / "abcd.default-release")
    (home / ".mozilla" / "firefox" / "not-a-profile").mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share")}
    command = [sys.executable, "-m", "a3s_dev", "trust"]
    if os.getuid() == 0:  # as root it would change this machine's store: run as nobody instead
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run as another user")
        subprocess.run(["chown", "-R", "65534:65534", str(home)], check=True)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]

    def a3s(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, check=False)

    result = a3s()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{chromium}: added as" in result.stdout and f"{firefox}: added as" in result.stdout
    assert "not changed (no permission); run: sudo cp" in result.stdout
    assert [len(nicknames(db)) for db in (chromium, firefox)] == [1, 1]
    printed = a3s("--print")
    ca_pem = home / ".local" / "share" / "a3s" / "ca" / "ca.pem"
    assert printed.returncode == 0 and printed.stdout.strip() == str(ca_pem)
    removed = a3s("--uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert [nicknames(db) for db in (chromium, firefox)] == [[], []]
    assert ca_pem.exists()  # the CA itself stays: only the trust is undone
    shutil.rmtree(tmp_path)


def test_a_ca_folder_it_cannot_use_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": "/proc/a3s-nope"}
    result = subprocess.run([sys.executable, "-m", "a3s_dev", "trust", "--print"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("a3s: https: cannot use the local CA folder /proc/a3s-nope")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


@needs_certutil
def test_with_no_browser_database_it_makes_chromiums_and_trusts_the_ca_there(tmp_path: Path) -> None:
    """SPEC §16: a fresh user (or headless Chromium) has no ~/.pki/nssdb; `a3s trust` said only
    the sudo line and Chromium went on refusing every certificate."""
    ca = LocalCA(tmp_path / "ca")
    home = tmp_path / "home"
    home.mkdir()
    store, _ = fake_store(tmp_path)
    outcome = install(ca, store=store, nss=[], certutil=CERTUTIL, home=home)
    chromium = home / ".pki" / "nssdb"
    assert f"browsers (NSS): no database found; made Chromium's {chromium}" in outcome.lines
    assert f'{chromium}: added as "{CA_NAME}' in "\n".join(outcome.lines)
    assert len(nicknames(chromium)) == 1


def test_with_no_browser_database_and_no_certutil_it_says_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store, _ = fake_store(tmp_path)
    outcome = install(LocalCA(tmp_path / "ca"), store=store, nss=[], certutil=None, home=home)
    assert any("no certificate database found" in line and "libnss3-tools" in line for line in outcome.lines)
    assert not (home / ".pki").exists()


@pytest.mark.parametrize("address", ["192.168.1.1", "1.1.1.1", "2606:4700:4700::1111"])
def test_a_leaf_for_an_ip_address_signed_with_the_ca_key_does_not_verify(tmp_path: Path, address: str) -> None:
    """SPEC §6 / issue 21: the name constraint covered DNS names only, so whoever held ca-key.pem
    could sign any IP address that every store `a3s trust` touched accepts."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    ca = LocalCA(tmp_path / "ca").ensure()
    ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    ip = ipaddress.ip_address(address)

    def leaf(san: x509.GeneralName) -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

    verifier_for = PolicyBuilder().store(Store([ca_cert])).time(now).build_server_verifier
    # a name the CA may sign verifies: the check is real
    verifier_for(x509.DNSName("web.shop.localhost")).verify(leaf(x509.DNSName("web.shop.localhost")), [])
    with pytest.raises(VerificationError):
        verifier_for(x509.IPAddress(ip)).verify(leaf(x509.IPAddress(ip)), [])


def test_a_refused_handshake_is_said_once_per_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 21: a name whose certificate cannot be issued was refused with nothing said
    anywhere; the client only sees an alert."""
    import socket
    import ssl
    import threading

    from a3s_dev.tls.ca import ServerContexts

    contexts = ServerContexts(LocalCA(tmp_path / "ca"))
    host = "web.shop.localhost"
    (tmp_path / "ca" / "leaves" / f"{host}.pem").mkdir()  # neither readable nor writable as a file
    client = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))

    def handshake() -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            server = threading.Thread(target=_serve_one, args=(contexts.context, theirs), daemon=True)
            server.start()
            with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
                client.wrap_socket(ours, server_hostname=host)
            server.join(10)

    with caplog.at_level("WARNING", logger="a3s_dev.tls.ca"):
        handshake()
        handshake()
    said = [r.getMessage() for r in caplog.records if host in r.getMessage()]
    assert len(said) == 1 and "handshakes are refused" in said[0]


def _serve_one(context: object, sock: object) -> None:
    import socket
    import ssl

    assert isinstance(context, ssl.SSLContext) and isinstance(sock, socket.socket)
    try:
        context.wrap_socket(sock, server_side=True).close()
    except (ssl.SSLError, OSError):
        pass


def test_names_a_client_invents_are_bounded_in_memory_and_on_disk(tmp_path: Path) -> None:
    """Issue 21: a leaf file per SNI name, never deleted (1,000 names: 1,007 files, RSS 50 to
    93 MB), and a web page can ask for as many subdomains as it likes."""
    from a3s_dev.tls.ca import MAX_CONTEXTS, MAX_LEAVES, ServerContexts

    contexts = ServerContexts(LocalCA(tmp_path / "ca"))
    kept = contexts.for_host("web.shop.localhost")
    for i in range(MAX_LEAVES + 50):
        contexts.for_host(f"n{i}.evil.localhost")
        if i % 10 == 0:
            assert contexts.for_host("web.shop.localhost") is kept  # in use: never the one to go
    assert contexts.cached == MAX_CONTEXTS
    leaves = sorted(p.name for p in (tmp_path / "ca" / "leaves").iterdir())
    assert len(leaves) == MAX_LEAVES
    assert f"n{MAX_LEAVES + 49}.evil.localhost.pem" in leaves and "n0.evil.localhost.pem" not in leaves


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl client to send such a name")
def test_a_server_name_that_is_not_ascii_is_refused_without_a_traceback(tmp_path: Path) -> None:
    """Issue 21: `ssl` reported a non-ASCII SNI as "Exception ignored" with a traceback in the
    proxy's log (one per handshake a client likes to send)."""
    import socket
    import threading

    from a3s_dev.tls.ca import ServerContexts, quiet_undecodable_server_names

    reported: list[object] = []
    before = sys.unraisablehook
    sys.unraisablehook = reported.append
    try:
        quiet_undecodable_server_names()
        contexts = ServerContexts(LocalCA(tmp_path / "ca"))
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]

            def serve() -> None:
                conn, _ = server.accept()
                _serve_one(contexts.context, conn)

            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            client = subprocess.run(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "caf\xe9.localhost".encode("latin-1")],
                input=b"", capture_output=True, timeout=30, check=False,
            )
            thread.join(10)
        assert client.returncode != 0  # refused
        assert reported == []
    finally:
        sys.unraisablehook = before


KEYTOOL = shutil.which("keytool")
JAVA_STORE = Path("/etc/ssl/certs/java/cacerts")


def java_aliases() -> str:
    assert KEYTOOL is not None
    return subprocess.run([KEYTOOL, "-list", "-cacerts", "-storepass", "changeit"], capture_output=True, text=True,
                          timeout=60, check=False).stdout


@pytest.mark.timeout(180)
@pytest.mark.skipif(KEYTOOL is None or not JAVA_STORE.exists() or os.geteuid() != 0
                    or not Path("/usr/sbin/update-ca-certificates").exists(),
                    reason="needs root, Debian's update-ca-certificates and ca-certificates-java (keytool)")
def test_on_debian_uninstall_takes_the_ca_out_of_the_java_keystore_too(tmp_path: Path) -> None:
    """The real system store of this (throwaway) machine: `update-ca-certificates --fresh`
    alone left the CA in Java's keystore."""
    from a3s_dev.tls.trust import system_store

    store = system_store()
    assert store is not None and "update-ca-certificates" in store.name
    ca = LocalCA(tmp_path / "ca")
    ca.ensure()
    alias = "debian:a3s-local-ca.pem"
    try:
        added = install(ca, store=store, nss=[], certutil=None)
        assert added.trusted_somewhere, added.lines
        assert alias in java_aliases()
        removed = uninstall(ca, certutil=None)
        assert not removed.failed, removed.lines
        assert alias not in java_aliases()
        assert not Path("/etc/ssl/certs/a3s-local-ca.pem").exists()
    finally:
        Path("/usr/local/share/ca-certificates/a3s-local-ca.crt").unlink(missing_ok=True)
        if alias in java_aliases():
            subprocess.run([KEYTOOL, "-delete", "-alias", alias, "-cacerts", "-storepass", "changeit"], check=False,
                           capture_output=True)
        subprocess.run(["update-ca-certificates", "--fresh"], check=False, capture_output=True)
