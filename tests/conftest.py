from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """`@pytest.mark.anyio` tests run on asyncio, the loop a3s itself runs on (one fixture for all)."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's A3S_* settings or colors."""
    for key in list(os.environ):
        if key.startswith("A3S_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One cache folder for the whole run, never the developer's: the HCL parser is built once
    per run (lark caches it there) and every a3s process the tests start shares it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _private_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A runtime folder of the run's own: the shared proxies and project names the tests start
    never meet the developer's."""
    folder = tmp_path_factory.mktemp("xdg-runtime")
    folder.chmod(0o700)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(folder))
        yield


@pytest.fixture(autouse=True)
def _no_proxy_left_behind() -> Iterator[None]:
    """Every shared proxy a test started (through `a3s up`) is gone after it: asked to stop,
    then killed."""
    from a3s_dev.link import proxy_process

    before = set(proxy_process.folder().glob("proxy-*.pid"))
    yield
    for pid_file in set(proxy_process.folder().glob("proxy-*.pid")) - before:
        port = int(pid_file.name.removeprefix("proxy-").removesuffix(".pid"))
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        proxy_process.stop(port, timeout=5.0)
        with contextlib.suppress(OSError):
            if b"a3s_dev.proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
