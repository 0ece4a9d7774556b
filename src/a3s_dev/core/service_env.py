"""A service's environment (SPEC §1): a3s's own, its env_file, its env, then what a3s adds
(PORT, A3S_SERVICE, A3S_<DEP>_URL, the CA's variables). The one builder: the supervisor, the
probes and the first wave all call `service_env`."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from a3s_dev.config.model import DevConfig, ServiceDef
from a3s_dev.errors import RuntimeFailure
from a3s_dev.system.places import ca_env


def env_var_name(service: str) -> str:
    """`A3S_<NAME>_URL` spelling of a service name: upper-cased, `-` as `_`."""
    return service.upper().replace("-", "_").replace(".", "_")


MAX_ENV_FILE = 1 << 20  # bytes: more is not a dotenv file


def file_kind(mode: int) -> str:
    """What a non-regular file is, in a word a user recognises."""
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return word
    return "not a regular file"


def read_env_file(path: Path) -> dict[str, str]:
    """A dotenv file: `KEY=value`, optional `export `, quotes, `#` comments. Raises RuntimeFailure
    if unreadable, not a regular file (a FIFO would hang the supervisor in open(), /dev/zero
    would fill its memory) or over MAX_ENV_FILE bytes."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise RuntimeFailure(f"env_file {path}: {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > MAX_ENV_FILE:
            raise RuntimeFailure(f"env_file {path}: {info.st_size} bytes, more than an env file holds (at most 1 MB)")
        with open(path, "rb") as f:
            text = f.read(MAX_ENV_FILE + 1).decode("utf-8", errors="replace")
    except OSError as exc:
        raise RuntimeFailure(f"env_file {path}: {exc.strerror or exc}") from None
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        env[key] = value
    return env


def project_env(config: DevConfig) -> dict[str, str]:
    """`dev { env_file, env }`: every service's, before its own (SPEC §13)."""
    env = read_env_file(config.settings.env_file) if config.settings.env_file is not None else {}
    env.update(config.settings.env)
    return env


def service_env(
    service: ServiceDef, config: DevConfig, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """SPEC §1: a3s's environment, then the project's (dev env_file, env), then the service's
    env_file, then env, then PORT, A3S_SERVICE and A3S_<DEP>_URL.
    With https on, the runtimes that ignore the system trust store are pointed at a3s's CA
    (SPEC §6), so services calling each other through the proxy verify; a service's own env wins."""
    env = dict(os.environ if base is None else base)
    if config.settings.https:
        env.update(ca_env())
    env.update(project_env(config))
    if service.env_file is not None:
        env.update(read_env_file(service.env_file))
    env.update(service.env)
    if service.port is not None:
        env["PORT"] = str(service.port)
    env["A3S_SERVICE"] = service.name
    for dep in service.depends_on:
        try:
            port = config.service(dep).port
        except KeyError:
            continue
        if port is not None:  # SPEC §1: http:// even for a service that is not HTTP (parse its port)
            env[f"A3S_{env_var_name(dep)}_URL"] = f"http://127.0.0.1:{port}"
    return env
