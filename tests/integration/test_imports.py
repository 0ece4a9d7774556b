"""What each command imports (the fast commands keep their budgets by never loading the heavy
modules), and the probes against real sockets."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import anyio

from a3s_dev.core.health import TcpProbe


def loaded_after(tmp_path: Path, calls: str, modules: tuple[str, ...]) -> str:
    """Which of `modules` a fresh interpreter has loaded after `calls`, in a folder with an
    A3sfile of one service: the printed sorted list."""
    code = f"import sys, io\n{calls}\nprint(sorted(m for m in {modules!r} if m in sys.modules))"
    (tmp_path / "A3sfile.hcl").write_text('service "a" {\n  cmd = "true"\n}\n')
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_status_without_a_supervisor_imports_neither_typer_nor_the_servers_nor_networkx(tmp_path: Path) -> None:
    calls = "from a3s_dev.cli import commands\ncommands.status(None, as_json=True, color=False, out=io.StringIO())"
    modules = ("typer", "aiohttp", "anyio", "networkx", "httpx", "textual", "yaml")
    assert loaded_after(tmp_path, calls, modules) == "[]"


def test_validate_and_up_load_neither_textual_nor_yaml(tmp_path: Path) -> None:
    """The terminal UI (Textual) and the exports (PyYAML) are imported by their own commands only."""
    calls = ("from a3s_dev.cli import commands, argv\nfrom a3s_dev.run import serve, prepare, background\n"
             "commands.validate(None, as_json=True, color=False, out=io.StringIO())")
    assert loaded_after(tmp_path, calls, ("textual", "yaml", "a3s_dev.ui", "a3s_dev.export")) == "[]"


def test_the_first_wave_and_a_cycle_check_need_no_networkx() -> None:
    """`a3s up` refuses a cycle and spawns what waits for nothing before networkx is imported."""
    code = (
        "import sys\n"
        "from a3s_dev.config.model import DevConfig, ServiceDef\n"
        "from a3s_dev.config import graph\n"
        "from pathlib import Path\n"
        "cfg = DevConfig(Path('/x'), services=(ServiceDef('a', 'x', Path('/')), ServiceDef('b', 'x', Path('/'), depends_on=('a',))))\n"
        "assert graph.independent(cfg, cfg.names) == ['a']\n"
        "assert graph.acyclic(graph.dependencies(cfg))\n"
        "print('networkx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_httpx_until_an_http_probe_checks() -> None:
    code = (
        "import sys; from a3s_dev.core import supervisor; from a3s_dev import run;"
        "print(sorted(m for m in ('httpx', 'aiohttp', 'watchfiles', 'networkx', 'rich.table', 'typer') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    assert out.strip() == "[]"


def test_tcp_probe_answers_for_a_listener_and_explains_a_refusal() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert anyio.run(TcpProbe(port, 1.0).check).ok
    result = anyio.run(TcpProbe(port, 1.0).check)
    assert not result.ok and result.detail == "connection refused"


def test_the_supervisor_plans_in_process_but_only_after_the_first_wave(tmp_path: Path) -> None:
    """networkx costs ~150 ms of CPU: the supervisor imports it itself (no helper process), but
    only once the first wave is spawned and up, so a start-up never waits for it (b waits for a)."""
    launcher = tmp_path / "launch.py"
    launcher.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from a3s_dev.config.model import DevConfig, ServiceDef\n"
        "from a3s_dev.run import prepare\n"
        "from a3s_dev.run.options import UpOptions\nfrom a3s_dev.run.serve import run_foreground\n"
        "real = prepare.prespawn\n"
        "def spy(*args, **kwargs):\n"
        "    print('AT-FIRST-WAVE', 'networkx' in sys.modules, flush=True)\n"
        "    return real(*args, **kwargs)\n"
        "prepare.prespawn = spy\n"
        "folder = Path(sys.argv[1])\n"
        "a = ServiceDef('a', 'echo a up; exec sleep 30', folder)\n"
        "b = ServiceDef('b', 'echo b up; sleep 0.3; kill -TERM $PPID; exec sleep 30', folder, depends_on=('a',))\n"
        "code = run_foreground(DevConfig(path=folder / 'A3sfile.hcl', services=(a, b)), UpOptions(proxy=False), color=False)\n"
        "print('NETWORKX', 'networkx' in sys.modules, 'EXIT', code, flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, str(launcher), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    assert "b up" in out, out
    assert "AT-FIRST-WAVE False" in out, out
    assert "NETWORKX True EXIT 0" in out, out
