"""`a3s trust`: put a3s's local CA into the trust stores, and take it out again (SPEC §6).

Nothing else in a3s ever changes a trust store. What `trust` changed is recorded in the CA
folder (`trusted.json`), so `--uninstall` removes exactly that and nothing else.

- The system store: Debian and Ubuntu (`/usr/local/share/ca-certificates` and
  `update-ca-certificates`), Fedora and RHEL (`/etc/pki/ca-trust/source/anchors` and
  `update-ca-trust`), macOS (`security add-trusted-cert` into the System keychain). Without
  the rights to change it, `trust` prints the commands to run with sudo.
- NSS databases (Firefox profiles, Chromium's `~/.pki/nssdb`, their snap and flatpak
  variants), with `certutil` when it is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a3s_dev.system.files import write_private
from a3s_dev.system.places import ca_env
from a3s_dev.tls.ca import CA_NAME, LocalCA

Run = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class SystemStore:
    """Where the operating system keeps the CAs it trusts, and how it is told about a change."""

    name: str
    target: Path  # the CA's file in the store (macOS: the keychain)
    add: tuple[str, ...]  # run after copying the file in ({cert}: the CA's path)
    remove: tuple[str, ...]  # run after deleting it
    copies: bool = True  # False: the commands themselves add and remove (macOS)


# Debian's update-ca-certificates tells its hooks (ca-certificates-java's Java keystore, mono's)
# nothing about a removed local CA, even with --fresh: the keystore kept a3s's CA after
# `trust --uninstall`. So the hooks are told first, as update-ca-certificates itself tells
# them about a removed CA (`-<pem>` on their stdin), then the store is rebuilt.
DEBIAN_HOOKS = "/etc/ca-certificates/update.d"
DEBIAN_PEM = "/etc/ssl/certs/a3s-local-ca.pem"
DEBIAN_REMOVE = (
    "sh", "-c",
    (f'for hook in {DEBIAN_HOOKS}/*; do [ -x "$hook" ] && echo "-{DEBIAN_PEM}" | "$hook"; done; '
     "update-ca-certificates --fresh"),
)
OLD_DEBIAN_REMOVE = ["update-ca-certificates", "--fresh"]  # what records from before say


def system_store(platform: str = sys.platform, exists: Callable[[str], bool] = os.path.exists) -> SystemStore | None:
    """The system store of this machine, or None when a3s does not know it."""
    if platform == "darwin":
        keychain = Path("/Library/Keychains/System.keychain")
        return SystemStore(
            "the macOS System keychain",
            keychain,
            ("security", "add-trusted-cert", "-d", "-r", "trustRoot", "-k", str(keychain), "{cert}"),
            ("security", "remove-trusted-cert", "-d", "{cert}"),
            copies=False,
        )
    if exists("/usr/sbin/update-ca-certificates") or exists("/usr/local/share/ca-certificates"):
        return SystemStore(
            "the system store (update-ca-certificates)",
            Path("/usr/local/share/ca-certificates/a3s-local-ca.crt"),
            ("update-ca-certificates",),
            DEBIAN_REMOVE,
        )
    if exists("/usr/bin/update-ca-trust"):
        return SystemStore(
            "the system store (update-ca-trust)",
            Path("/etc/pki/ca-trust/source/anchors/a3s-local-ca.pem"),
            ("update-ca-trust", "extract"),
            ("update-ca-trust", "extract"),
        )
    return None


def nss_databases(home: Path) -> list[Path]:
    """The NSS databases (folders holding `cert9.db`) of the user's Firefox and Chromium."""
    patterns = [
        ".pki/nssdb",  # Chromium, Chrome (Linux)
        "snap/chromium/current/.pki/nssdb",
        ".mozilla/firefox/*",
        "snap/firefox/common/.mozilla/firefox/*",
        ".var/app/org.mozilla.firefox/.mozilla/firefox/*",
        "Library/Application Support/Firefox/Profiles/*",  # macOS
    ]
    found: list[Path] = []
    for pattern in patterns:
        for folder in sorted(home.glob(pattern)):
            if (folder / "cert9.db").is_file() and folder not in found:
                found.append(folder)
    return found


@dataclass
class Outcome:
    """What `trust` did, line by line, and whether the CA is trusted anywhere now."""

    lines: list[str] = field(default_factory=list)
    trusted_somewhere: bool = False
    failed: bool = False


def _nickname(ca: LocalCA) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    return f"{CA_NAME} {cert.fingerprint(hashes.SHA256()).hex()[:12]}"


def _record(ca: LocalCA) -> dict[str, Any]:
    try:
        data = json.loads(ca.trusted_path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(ca: LocalCA, record: dict[str, Any]) -> None:
    if record.get("system") or record.get("nss"):
        write_private(ca.trusted_path, json.dumps(record, indent=2) + "\n")
    else:
        ca.trusted_path.unlink(missing_ok=True)


def _command(args: Sequence[str], cert: Path) -> list[str]:
    return [a.replace("{cert}", str(cert)) for a in args]


def _shell(args: Sequence[str]) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in args)


def chromium_database(home: Path, certutil: str | None, run: Run = subprocess.run) -> tuple[Path | None, str]:
    """Chromium's `~/.pki/nssdb`, made now (empty password, as Chromium makes it on its first
    start) when no browser made one yet; the line saying what happened."""
    db = home / ".pki" / "nssdb"
    if certutil is None:
        return None, ("browsers (NSS): no certificate database found, and certutil is not installed to make one "
                      "(Debian: apt install libnss3-tools; then run `a3s trust` again, or start Chromium once)")
    try:
        db.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        return None, f"browsers (NSS): cannot make {db}: {exc.strerror or exc}"
    result = run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None, f"browsers (NSS): cannot make {db}: {result.stderr.strip() or 'certutil failed'}"
    return db, f"browsers (NSS): no database found; made Chromium's {db}"


def install(
    ca: LocalCA,
    *,
    store: SystemStore | None,
    nss: Sequence[Path],
    certutil: str | None,
    run: Run = subprocess.run,
    home: Path | None = None,
) -> Outcome:
    """Trust `ca` in `store` and in each NSS database of `nss`; record what changed. With
    `home` and no database in `nss`, Chromium's is made first (headless Chromium and a fresh
    user have none, and Chromium then refuses every a3s certificate)."""
    ca.ensure()
    out = Outcome()
    record = _record(ca)
    if not nss and home is not None:
        made, said = chromium_database(home, certutil, run)
        out.lines.append(said)
        nss = [made] if made is not None else []
    if store is None:
        out.lines.append("system store: not one a3s knows on this system; add the CA yourself: " + str(ca.cert_path))
    elif record.get("system", {}).get("target") == str(store.target):
        out.lines.append(f"{store.name}: already trusts it")
        out.trusted_somewhere = True
    else:
        try:
            if store.copies:
                store.target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ca.cert_path, store.target)
                os.chmod(store.target, 0o644)
            result = run(_command(store.add, ca.cert_path), capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise PermissionError(result.stderr.strip() or f"{store.add[0]} exited {result.returncode}")
        except (PermissionError, FileNotFoundError) as exc:
            if store.copies:
                with contextlib.suppress(OSError):
                    store.target.unlink(missing_ok=True)  # a copy whose update failed
            steps = ([["cp", str(ca.cert_path), str(store.target)]] if store.copies else []) + [
                _command(store.add, ca.cert_path)
            ]
            fix = " && ".join("sudo " + _shell(step) for step in steps)
            why = "no permission" if isinstance(exc, PermissionError) else f"{exc.filename or exc} not found"
            out.lines.append(f"{store.name}: not changed ({why}); run: {fix}")
            out.failed = True
        else:
            record["system"] = {"name": store.name, "target": str(store.target), "remove": list(store.remove),
                                "copies": store.copies}
            out.lines.append(f"{store.name}: added {store.target}")
            out.trusted_somewhere = True
    if nss and certutil is None:
        out.lines.append("browsers (NSS): certutil is not installed (Debian: apt install libnss3-tools); "
                         f"{len(nss)} database(s) not changed")
    elif certutil is not None:
        nickname = _nickname(ca)
        done = set(record.get("nss", []))
        for db in nss:
            if str(db) in done:
                out.lines.append(f"{db}: already trusts it")
                out.trusted_somewhere = True
                continue
            result = run([certutil, "-A", "-d", f"sql:{db}", "-n", nickname, "-t", "C,,", "-i", str(ca.cert_path)],
                         capture_output=True, text=True, check=False)
            if result.returncode == 0:
                done.add(str(db))
                out.lines.append(f"{db}: added as \"{nickname}\" (restart the browser)")
                out.trusted_somewhere = True
            else:
                out.lines.append(f"{db}: not changed: {result.stderr.strip() or 'certutil failed'}")
                out.failed = True
        record["nss"] = sorted(done)
        record["nickname"] = nickname
    _save(ca, record)
    out.lines.append("for runtimes that ignore the system store (a3s up sets these in services while https is on):")
    out.lines += [f"  export {key}={value}" for key, value in ca_env().items()]
    return out


def uninstall(ca: LocalCA, *, certutil: str | None, run: Run = subprocess.run) -> Outcome:
    """Remove exactly what `install` recorded."""
    out = Outcome()
    record = _record(ca)
    system = record.get("system")
    if isinstance(system, dict):
        target = Path(system["target"])
        remove = list(DEBIAN_REMOVE) if system["remove"] == OLD_DEBIAN_REMOVE else system["remove"]
        try:
            if system.get("copies", True):
                target.unlink(missing_ok=True)
            result = run(_command(remove, ca.cert_path), capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise PermissionError(result.stderr.strip())
        except PermissionError:
            steps = ([["rm", str(target)]] if system.get("copies", True) else []) + [_command(remove, ca.cert_path)]
            out.lines.append(f"{system['name']}: not changed (no permission); run: "
                             + " && ".join("sudo " + _shell(s) for s in steps))
            out.failed = True
        else:
            out.lines.append(f"{system['name']}: removed {target}")
            del record["system"]
    left = []
    for db in record.get("nss", []):
        if certutil is None:
            out.lines.append(f"{db}: not changed: certutil is not installed")
            left.append(db)
            out.failed = True
            continue
        result = run([certutil, "-D", "-d", f"sql:{db}", "-n", record.get("nickname", CA_NAME)],
                     capture_output=True, text=True, check=False)
        if result.returncode == 0 or not Path(db).exists():
            out.lines.append(f"{db}: removed")
        else:
            out.lines.append(f"{db}: not changed: {result.stderr.strip() or 'certutil failed'}")
            left.append(db)
            out.failed = True
    record["nss"] = left
    if not out.lines:
        out.lines.append("nothing to remove: `a3s trust` has not installed this CA anywhere")
    _save(ca, record)
    return out
