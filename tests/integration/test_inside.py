"""Working inside the stack (SPEC §10): `a3s run` with a service's exact environment, on a real
terminal; `a3s wait`; JSON from every command. Real `up -d` supervisors, a real pty."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import free_port, wait_until
from support_control import SERVICE, SICK_HEALTH, Stack, server_stack, service_block, stack_in

from a3s_dev.control.client import ControlClient

pytestmark = pytest.mark.timeout(120)

DUMP_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def stack_with_deps(folder: Path) -> None:
    """db <- api (port auto, env_file, env) <- web: what `run` must reproduce for api."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.py").write_text(SERVICE)
    (folder / ".env").write_text('FROM_FILE="from the file"\nSHARED=file\n')
    python = sys.executable
    (folder / "A3sfile.hcl").write_text(
        'dev {\n  proxy_port = 0\n  stop_timeout = "3s"\n}\n'
        + service_block("db", f"exec {python} server.py", port=free_port())
        + service_block("api", f"exec {python} server.py", depends_on=["db"],
                        extra='port = "auto"\nenv_file = ".env"\nenv = { SHARED = "env", COLOR = "blue" }')
        + service_block("web", f"exec {python} server.py", port=free_port(), depends_on=["api"])
    )


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_run_gives_the_command_the_services_exact_environment_and_folder(tmp_path: Path) -> None:
    stack_with_deps(tmp_path)
    with stack_in(tmp_path) as st:
        assert st.a3s("up", "-d").code == 0
        api = st.status()["api"]
        result = st.a3s("run", "api", "--", sys.executable, "-c", DUMP_ENV)
        assert result.code == 0, result.err
        seen = json.loads(result.out)
        expected = environ_of(api["pid"])
        assert seen == expected  # the automatic port, the env_file, env and A3S_DB_URL alike
        assert seen["PORT"] == str(api["port"]) and seen["SHARED"] == "env" and seen["FROM_FILE"] == "from the file"
        where = st.a3s("run", "api", "pwd")  # one argument: run by /bin/sh -c, in the service's dir
        assert where.out.strip() == str(tmp_path)
        assert api["pid"] == st.status()["api"]["pid"], "run never touches the service itself"


def test_run_passes_the_exit_code_and_refuses_an_unknown_service_with_a_suggestion(tmp_path: Path) -> None:
    stack_with_deps(tmp_path)
    with stack_in(tmp_path) as st:
        assert st.a3s("run", "--no-deps", "db", "--", "sh", "-c", "exit 7").code == 7
        unknown = st.a3s("run", "ap", "--", "true")
        assert unknown.code == 2 and "unknown service 'ap' (did you mean 'api'?)" in unknown.err, unknown.err
        assert st.a3s("run", "db", "--", "no-such-program-here").code == 127


def test_run_starts_the_dependencies_first_and_never_the_service(tmp_path: Path) -> None:
    """docker compose's `run`: web's dependencies (api, and db under it) come up in a
    background supervisor that keeps running; web itself does not start."""
    stack_with_deps(tmp_path)
    with stack_in(tmp_path) as st:
        result = st.a3s("run", "web", "--", sys.executable, "-c", DUMP_ENV)
        assert result.code == 0, result.err
        rows = st.status()
        assert rows["db"]["state"] == "running" and rows["api"]["state"] == "running"
        assert rows["web"]["state"] == "stopped"
        seen = json.loads(result.out)
        assert seen["A3S_API_URL"] == f"http://127.0.0.1:{rows['api']['port']}"  # the port api really got
        assert "a3s: ready: db, api" in result.err  # progress on stderr: stdout is the command's


def test_run_on_a_terminal_stays_a_terminal(tmp_path: Path) -> None:
    stack_with_deps(tmp_path)
    with stack_in(tmp_path) as st:
        code = "import sys; print('tty', sys.stdin.isatty(), sys.stdout.isatty()); sys.exit(int(input()))"
        output, status = run_on_pty(st, ["run", "--no-deps", "db", "--", sys.executable, "-c", code], answer=b"5\n")
        assert "tty True True" in output, output
        assert status == 5


def run_on_pty(st: Stack, args: list[str], *, answer: bytes) -> tuple[str, int]:
    """`a3s ARGS` on a fresh pseudo-terminal: what it printed, its exit code; `answer` is typed
    once it printed a whole line starting with "tty" (typed sooner, its echo can land inside
    that line when the program writes it in pieces)."""
    main, side = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "a3s_dev", *args], cwd=st.folder, env=env,
                            stdin=side, stdout=side, stderr=side, close_fds=True, start_new_session=True)
    os.close(side)
    out = b""
    typed = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                out += chunk
                if not typed and b"\n" in out.partition(b"tty")[2]:  # the whole line: typing echoes
                    os.write(main, answer)
                    typed = True
            elif proc.poll() is not None:
                break
        return out.decode(errors="replace"), proc.wait(timeout=10)
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()


def test_every_port_is_the_supervisors(tmp_path: Path) -> None:
    """An automatic port is chosen once, by the supervisor: run asks it, never picks its own."""
    stack_with_deps(tmp_path)
    with stack_in(tmp_path) as st:
        assert st.a3s("up", "-d").code == 0
        port = st.status()["api"]["port"]
        ports = {json.loads(st.a3s("run", "api", "--", sys.executable, "-c", DUMP_ENV).out)["PORT"] for _ in range(3)}
        assert ports == {str(port)}
        wait_until(lambda: st.status()["api"]["state"] == "running", timeout=5, message="api untouched")


def sick_stack(folder: Path) -> None:
    python = sys.executable
    server_stack(
        folder,
        service_block("db", f"exec {python} server.py", port=free_port()),
        service_block("api", f"exec {python} sick.py", port=free_port(), extra=SICK_HEALTH),
        service_block("web", f"exec {python} server.py", port=free_port(), depends_on=["api"]),
    )


def test_wait_says_why_each_service_is_not_ready_and_waits_for_stopped_too(tmp_path: Path) -> None:
    sick_stack(tmp_path)
    with stack_in(tmp_path) as st:
        assert st.a3s("up", "-d", "db", "--timeout", "10s").code == 0
        assert st.a3s("up", "-d", "web", "--timeout", "1s").code == 1  # api never gets healthy
        assert st.a3s("wait", "db").code == 0 and "ready: db" in st.a3s("wait", "db").out
        waited = st.a3s("wait", "api", "web", "--timeout", "1s")
        assert waited.code == 1
        assert "api (starting: GET /health → 500)" in waited.err and "web (pending: waiting for api)" in waited.err
        as_json = json.loads(st.a3s("wait", "--json", "--timeout", "500ms").out)
        assert as_json["ok"] is False
        assert {s["name"]: s["probe"] for s in as_json["services"]}["api"] == "GET /health → 500"
        assert st.a3s("down", "db").code == 0
        assert st.a3s("wait", "db", "--for", "stopped", "--timeout", "5s").code == 0
        assert st.a3s("wait", "nope").code == 2


def test_every_command_speaks_json_and_only_json_on_stdout(tmp_path: Path) -> None:
    stack_with_deps(tmp_path)
    with stack_in(tmp_path) as st:
        up = st.a3s("up", "-d", "--json")
        assert up.code == 0, up.err
        started = json.loads(up.out)
        assert started["ok"] is True and started["ready_in"] > 0
        assert {s["name"]: s["state"] for s in started["services"]} == {"db": "running", "api": "running", "web": "running"}
        restarted = json.loads(st.a3s("restart", "api", "--json").out)
        assert restarted["ok"] is True and restarted["services"][0]["name"] == "api"
        assert isinstance(json.loads(st.a3s("status", "--json").out), list)
        assert json.loads(st.a3s("wait", "--json").out)["ok"] is True
        assert json.loads(st.a3s("validate", "--json").out)["ok"] is True
        lines = [json.loads(line) for line in st.a3s("logs", "--json", "db").out.splitlines()]
        assert lines and all(set(line) == {"service", "at", "text"} for line in lines)
        assert all(line["service"] == "db" and len(line["at"]) >= 23 and "T" in line["at"] for line in lines)
        grepped = st.a3s("logs", "--grep", "listening on [0-9]+", "db").out.splitlines()
        assert grepped and all("listening on" in line for line in grepped)
        stopped = json.loads(st.a3s("down", "web", "--json").out)
        assert stopped == {"ok": True, "stopped": ["web"], "supervisor_stopped": False}
        everything = json.loads(st.a3s("down", "--json").out)
        assert everything["ok"] is True and set(everything["stopped"]) == {"db", "api"}


def test_up_d_json_names_each_failure_with_its_lines(tmp_path: Path) -> None:
    (tmp_path / "A3sfile.hcl").write_text(
        'dev {\n  proxy_port = 0\n}\n' + service_block("task", "echo about to fail; exit 3", extra="oneshot = true")
    )
    with stack_in(tmp_path) as st:
        result = st.a3s("up", "-d", "--json")
        assert result.code == 1
        answer = json.loads(result.out)
        assert answer["ok"] is False and answer["failures"][0]["name"] == "task"
        assert answer["failures"][0]["reason"] == "exit code 3" and "about to fail" in answer["failures"][0]["lines"]


HUNGRY = """
import subprocess, sys
child = "import time; b = bytearray(50 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", child])
while True:
    pass  # one busy core
"""


def test_status_and_metrics_show_cpu_and_memory_of_the_whole_process_group(tmp_path: Path) -> None:
    """The service's own process is small; its child holds 50 MB: the group's figure counts it."""
    (tmp_path / "hungry.py").write_text(HUNGRY)
    (tmp_path / "A3sfile.hcl").write_text(
        'dev {\n  proxy_port = 0\n}\n' + service_block("hungry", f"exec {sys.executable} hungry.py")
    )
    with stack_in(tmp_path) as st:
        assert st.a3s("up", "-d").code == 0
        row = wait_until(lambda: (r := st.status()["hungry"])["rss"] and r["rss"] >= 40 * 2**20 and r["cpu"] and r,
                         timeout=15, message="the group's memory and CPU")
        assert row["cpu"] >= 20.0, row
        table = st.a3s("status").out.splitlines()
        assert table[0].split()[5:7] == ["CPU", "MEM"]
        header, line = table[0], table[1]
        assert line[header.index("CPU"):].split()[0].endswith("%") and line[header.index("MEM"):].split()[0].endswith("M")
        metrics = ControlClient(st.paths.socket).metrics()
        assert 'a3s_service_memory_bytes{service="hungry"}' in metrics
        assert 'a3s_service_cpu_seconds_total{service="hungry"}' in metrics


def test_open_prints_the_url_and_hands_it_to_the_browser_and_completion_knows_the_services(tmp_path: Path) -> None:
    stack_with_deps(tmp_path)
    record = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {record}\n')
    browser.chmod(0o755)
    with stack_in(tmp_path) as st:
        assert st.a3s("up", "-d", "db").code == 0
        env = {**os.environ, "BROWSER": str(browser), "NO_COLOR": "1"}
        opened = subprocess.run([sys.executable, "-m", "a3s_dev", "open", "db"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=30, check=False)
        url = st.status()["db"]["url"]
        assert opened.returncode == 0 and opened.stdout.strip() == url
        wait_until(lambda: record.exists() and record.read_text().strip() == url, timeout=5, message="the browser")
        completion = subprocess.run(
            [sys.executable, "-m", "a3s_dev"], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
            env={**env, "_A3S_COMPLETE": "complete_bash", "COMP_WORDS": "a3s restart a", "COMP_CWORD": "2"},
        )
        assert completion.stdout.split() == ["api"]


DEBUGGED = """
import time
print("before", flush=True)
x = 41
breakpoint()
print("after", x + 1, flush=True)
time.sleep(600)
"""


def test_attach_to_a_service_stopped_at_a_breakpoint_and_detach_leaves_it_running(tmp_path: Path) -> None:
    """foreman#703's "debugger input": pdb in a service, typed into from another terminal,
    while its output also goes on to the log files."""
    (tmp_path / "debugme.py").write_text(DEBUGGED)
    (tmp_path / "server.py").write_text(SERVICE)
    (tmp_path / "A3sfile.hcl").write_text(
        'dev {\n  proxy_port = 0\n  stop_timeout = "3s"\n}\n'
        + service_block("debugme", f"exec {sys.executable} -u debugme.py", extra="interactive = true")
        + service_block("plain", f"exec {sys.executable} server.py", port=free_port())
    )
    with stack_in(tmp_path) as st:
        assert st.a3s("up", "-d").code == 0
        # the prompt has no newline: it still reaches the log within moments
        wait_until(lambda: "(Pdb)" in st.a3s("logs", "debugme").out, timeout=10, message="the pdb prompt in the log")
        main, side = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "a3s_dev", "attach", "debugme"], cwd=tmp_path,
                                env={**os.environ, "TERM": "xterm"}, stdin=side, stdout=side, stderr=side,
                                start_new_session=True)
        os.close(side)
        screen = b""

        def read_until(needle: bytes, timeout: float = 10.0) -> None:
            nonlocal screen
            deadline = time.monotonic() + timeout
            while needle not in screen:
                assert time.monotonic() < deadline, f"{needle!r} not seen in {screen[-300:]!r}"
                if select.select([main], [], [], 0.1)[0]:
                    screen += os.read(main, 4096)

        try:
            read_until(b"(Pdb)")  # the screen as it is: the prompt
            os.write(main, b"p 1+1\r")
            read_until(b"\n2\r\n")
            os.write(main, b"c\r")
            read_until(b"after 42")
            os.write(main, b"\x1d")  # Ctrl-]
            assert proc.wait(timeout=10) == 0
            read_until(b"detached")
        finally:
            os.close(main)
            if proc.poll() is None:
                proc.kill()
        assert st.status()["debugme"]["state"] == "running"
        wait_until(lambda: "after 42" in st.a3s("logs", "debugme").out, timeout=5, message="the output in the log too")
        refused = st.a3s("attach", "plain")
        assert refused.code == 1 and "plain is not interactive: set interactive = true" in refused.err, refused.err
