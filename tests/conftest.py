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


@pytest.fixture(scope="session", autouse=True)
def _no_stray_process_at_the_end(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No process a test started outlives the run (SPEC: no stray processes, ever): at the end,
    every process still working in one of the run's folders is named, killed, and fails it."""
    base = tmp_path_factory.getbasetemp()
    yield
    import time

    def strays() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(entry / "cwd").removesuffix(" (deleted)")
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cwd.startswith(str(base)) and command:
                found.append(f"pid {entry.name} in {cwd}: {command[:100]}")
        return found

    deadline = time.monotonic() + 10.0  # a proxy lingers 3 s after its last project left
    left = strays()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = strays()
    for line in left:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(line.split()[1].rstrip(":")), signal.SIGKILL)
    assert not left, "processes left behind by the tests:\n" + "\n".join(left)
