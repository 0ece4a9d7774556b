"""a3s's own local certificate authority, and the TLS side of the proxy (SPEC §6, HTTPS).

The CA is created on first use under `$XDG_DATA_HOME/a3s/ca/` (default
`~/.local/share/a3s/ca/`): `ca.pem` (the certificate users trust, with `a3s trust`) and
`ca-key.pem` (mode 0600, in a 0700 folder), made with the `cryptography` package. It is
valid for 10 years and may sign only certificates for `localhost` and `*.localhost` names
(X.509 name constraints), so a leaked key cannot impersonate any real site.

The proxy asks for a certificate per host name as TLS handshakes arrive (SNI): each leaf is
issued on demand for exactly that name, valid 397 days at most, kept in memory (the 128 most
recently used) and under `leaves/` (cert and key in one 0600 file; the 256 most recently
written), and issued again when it nears its end or was let go. A name
that is not `localhost` or a well-formed `*.localhost` name gets no certificate: the
handshake is refused, nothing is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import os
import re
import ssl
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from a3s_dev.errors import A3sError
from a3s_dev.system.files import private_dir, write_private
from a3s_dev.system.places import ca_folder

CA_NAME = "a3s local development CA"
CA_DAYS = 3650
LEAF_DAYS = 397  # the CA/Browser Forum's ceiling for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)
# Bounds for a client inventing names (a web page can ask for a thousand subdomains): server
# contexts kept in memory (about 40 KB each) and leaf files kept on disk, the least recent go.
MAX_CONTEXTS = 128
MAX_LEAVES = 256
MAX_COMMON_NAME = 64  # characters (RFC 5280, ub-common-name)
_log = logging.getLogger(__name__)
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# The system bundle that the exported SSL_CERT_FILE / REQUESTS_CA_BUNDLE extend with our CA.
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, BSDs
)


def certifiable(name: str | None) -> str | None:
    """The host name a certificate may be issued for (lower-cased), or None: `localhost` and
    names of DNS labels under `.localhost`, 253 characters at most."""
    if not name or len(name) > 253:
        return None
    name = name.lower().rstrip(".")
    if name == "localhost":
        return name
    if not name.endswith(".localhost"):
        return None
    labels = name[: -len(".localhost")].split(".")
    return name if all(_LABEL.fullmatch(label) for label in labels) else None


def _is_ip(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class LocalCA:
    """The CA's files and the leaves it issues."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or ca_folder()
        self.cert_path = self.folder / "ca.pem"
        self.key_path = self.folder / "ca-key.pem"
        self.leaves = self.folder / "leaves"
        self.bundle_path = self.folder / "bundle.pem"
        self.trusted_path = self.folder / "trusted.json"  # what `a3s trust` changed
        self._key: object | None = None
        self._cert: object | None = None

    def trusted(self) -> bool:
        """True once `a3s trust` installed this CA somewhere."""
        return self.trusted_path.exists()

    def exists(self) -> bool:
        return self.cert_path.exists() and self.key_path.exists()

    def ensure(self) -> LocalCA:
        """Create the CA when it is not there yet (and the bundle file beside it); self.
        A3sError (one line) when its folder cannot be used."""
        try:
            self.folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_dir(self.folder)
            if not self.exists():
                self._create()
            if not self.bundle_path.exists():
                self.write_bundle()
        except OSError as exc:
            where = exc.filename or self.folder
            raise A3sError(f"https: cannot use the local CA folder {where}: {exc.strerror or exc}") from None
        return self

    def _create(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"a3s ({os.uname().nodename})"),
        ])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                # RFC 5280: a name type with no constraint is unconstrained, so every address is
                # excluded too: a leaked key can sign neither a real site nor an IP address.
                x509.NameConstraints(
                    permitted_subtrees=[x509.DNSName("localhost")],
                    excluded_subtrees=[
                        x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
                        x509.IPAddress(ipaddress.ip_network("::/0")),
                    ],
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private(self.key_path, pem_key.decode())
        write_private(self.cert_path, cert.public_bytes(serialization.Encoding.PEM).decode())
        os.chmod(self.cert_path, 0o644)  # the certificate is public: trust stores copy it
        with contextlib.suppress(FileNotFoundError):
            self.bundle_path.unlink()  # it held the previous CA

    def write_bundle(self) -> None:
        """`bundle.pem`: the system's CA bundle plus ours, for SSL_CERT_FILE and
        REQUESTS_CA_BUNDLE, which replace the system bundle rather than add to it."""
        system = next((Path(p) for p in SYSTEM_BUNDLES if os.path.exists(p)), None)
        text = system.read_text(errors="replace") if system is not None else ""
        if text and not text.endswith("\n"):
            text += "\n"
        write_private(self.bundle_path, text + self.cert_path.read_text())
        os.chmod(self.bundle_path, 0o644)

    def _signer(self) -> tuple[object, object]:
        if self._key is None or self._cert is None:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization

            self._key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        return self._key, self._cert

    def leaf(self, host: str) -> Path:
        """The file (certificate, CA certificate, key; 0600) for `host`, issued when missing or
        near its end. `host` must be `certifiable`."""
        from cryptography import x509

        path = self.leaves / f"{host}.pem"
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE:
                return path
        except (OSError, ValueError):
            pass
        self._issue(host, path)
        return path

    def _issue(self, host: str, path: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key, ca_cert = self._signer()
        assert isinstance(ca_cert, x509.Certificate) and isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        # X.509 caps a common name at 64 characters; a longer name is in the SAN alone, under an
        # empty subject, which RFC 5280 allows when the SAN is critical (browsers read only the SAN)
        short = len(host) <= MAX_COMMON_NAME
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, host)] if short else []
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=not short)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        private_dir(self.leaves)
        self._prune(keep=MAX_LEAVES - 1)
        pem = (
            cert.public_bytes(serialization.Encoding.PEM)
            + ca_cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        write_private(path, pem.decode())


    def _prune(self, keep: int) -> None:
        """Delete all but the `keep` most recently written leaf files."""
        files = list(self.leaves.glob("*.pem"))
        if len(files) <= keep:
            return
        def written(path: Path) -> float:
            try:
                return path.stat().st_mtime
            except FileNotFoundError:
                return 0.0
        for path in sorted(files, key=written)[: len(files) - keep]:
            path.unlink(missing_ok=True)


def quiet_undecodable_server_names() -> None:
    """Keep a TLS client's server name that is not ASCII out of this process's log. `ssl` fails
    to decode it before our SNI callback runs, refuses the handshake (as it should) and reports
    the UnicodeDecodeError as "Exception ignored" with a traceback; that report is dropped.
    Installed once per process, by the proxy when it starts serving TLS."""
    hook = sys.unraisablehook
    if getattr(hook, "a3s_quiet_server_names", False):
        return

    def quiet(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, UnicodeDecodeError) and isinstance(unraisable.object, bytes):
            return
        hook(unraisable)

    quiet.a3s_quiet_server_names = True  # type: ignore[attr-defined]
    sys.unraisablehook = quiet


class ServerContexts:
    """The proxy's TLS server side: one `ssl.SSLContext` that picks each connection's
    certificate from its SNI name (`sni_callback`), a context per host cached in memory."""

    def __init__(self, ca: LocalCA) -> None:
        self.ca = ca.ensure()
        self._by_host: OrderedDict[str, ssl.SSLContext] = OrderedDict()  # least recently used first
        self._refused: set[str] = set()
        self.context = self._new(self.ca.leaf("localhost"))  # for a client that sends no SNI
        self.context.sni_callback = self._sni

    def _say_refused(self, name: str, exc: Exception) -> None:
        """Say once per name (and for a bounded number of names) why its handshake was refused:
        the client only sees an alert."""
        if name in self._refused or len(self._refused) >= MAX_CONTEXTS:
            return
        self._refused.add(name)
        _log.warning("https: no certificate for %s, its handshakes are refused: %s", name, exc)

    @staticmethod
    def _new(leaf: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.load_cert_chain(leaf)
        return ctx

    def for_host(self, name: str | None) -> ssl.SSLContext | None:
        host = certifiable(name)
        if host is None:
            return None
        ctx = self._by_host.get(host)
        if ctx is None:
            ctx = self._by_host[host] = self._new(self.ca.leaf(host))
            if len(self._by_host) > MAX_CONTEXTS:
                self._by_host.popitem(last=False)
        else:
            self._by_host.move_to_end(host)
        return ctx

    @property
    def cached(self) -> int:
        """How many server contexts are kept in memory."""
        return len(self._by_host)

    def _sni(self, sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        if name is None or _is_ip(name):
            return None  # no SNI, or an address as one (wrk sends it): the localhost certificate
        try:
            ctx = self.for_host(name)
        except Exception as exc:  # noqa: BLE001 - a handshake must never take the proxy down
            self._say_refused(name, exc)
            ctx = None
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sslobj.context = ctx
        return None
