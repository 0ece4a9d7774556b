"""Many checkouts on one laptop (SPEC §13) with real supervisors on one proxy: `${project}` and
`${services.*}` per worktree, the project-wide environment, profiles, `a3s ls`, and the wrong
port explained."""

from __future__ import annotations

import json
from pathlib import Path

from support import free_port, wait_until
from support_control import Stack, stack_in

WORKTREE = """\
dev {
  env      = { SHARED = "all-${project}", LEVEL = "dev" }
  env_file = ".env"
}
service "db" {
  cmd   = "exec python3 -m http.server $PORT --bind 127.0.0.1"
  port  = "auto"
  proxy = false
}
service "api" {
  cmd        = "exec python3 -m http.server $PORT --bind 127.0.0.1"
  port       = "auto"
  depends_on = ["db"]
  env        = { DATABASE_URL = "postgres://127.0.0.1:${services.db.port}/app_${project}", LEVEL = "api" }
}
service "web" {
  cmd        = "exec python3 -m http.server $PORT --bind 127.0.0.1"
  port       = "auto"
  profiles   = ["front"]
  depends_on = ["api"]
}
service "e2e" {
  cmd      = "exec sleep 1000"
  profiles = ["e2e"]
}
"""


def worktree(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "A3sfile.hcl").write_text(WORKTREE)
    (folder / ".env").write_text("FROM_FILE=yes\nLEVEL=file\n")
    return folder


def states(st: Stack) -> dict[str, str]:
    return {name: row["state"] for name, row in st.status().items()}


def env_of(st: Stack, service: str, *names: str) -> list[str]:
    script = "; ".join(f'echo "${name}"' for name in names)
    result = st.a3s("run", "--no-deps", service, "--", script)
    assert result.code == 0, result.err
    return result.out.splitlines()


def test_two_worktrees_get_their_own_database_names_ports_and_are_listed(tmp_path: Path) -> None:
    proxy = free_port()
    env = {"A3S_PROXY_PORT": str(proxy)}
    with stack_in(worktree(tmp_path / "shop"), env) as one, stack_in(worktree(tmp_path / "shop-login"), env) as two:
        for st in (one, two):
            result = st.a3s("up", "-d")
            assert result.code == 0, result.out + result.err
        urls = {}
        for st, project in ((one, "shop"), (two, "shop-login")):
            port = st.status()["db"]["port"]
            url, shared, level, from_file = env_of(st, "api", "DATABASE_URL", "SHARED", "LEVEL", "FROM_FILE")
            assert url == f"postgres://127.0.0.1:{port}/app_{project}"
            assert (shared, level, from_file) == (f"all-{project}", "api", "yes")  # the service's own env wins
            assert env_of(st, "db", "LEVEL") == ["dev"]  # dev env over dev env_file
            urls[project] = url
        assert urls["shop"] != urls["shop-login"]
        listed = json.loads(one.a3s("ls", "--json").out)
        assert sorted((p["name"], p["running"], p["total"], p["failed"]) for p in listed) == [
            ("shop", 2, 4, 0), ("shop-login", 2, 4, 0)]
        assert {p["a3sfile"] for p in listed} == {str(one.a3sfile), str(two.a3sfile)}
        assert all(p["dashboard"] == f"http://a3s.localhost:{proxy}/#{p['name']}" for p in listed)
        table = one.a3s("ls").out
        assert "shop-login" in table and "2/4 running" in table


def test_profiles_start_what_was_chosen_and_dependencies_regardless(tmp_path: Path) -> None:
    with stack_in(worktree(tmp_path / "shop"), {"A3S_PROXY_PORT": "0"}) as st:
        assert st.a3s("validate").out.splitlines()[-1] == "profiles: front (web), e2e (e2e)"
        assert st.a3s("up", "-d").code == 0
        assert states(st) == {"db": "running", "api": "running", "web": "stopped", "e2e": "stopped"}
        assert st.a3s("up", "-d", "--profile", "front").code == 0
        assert states(st)["web"] == "running" and states(st)["e2e"] == "stopped"
        assert st.a3s("down").code == 0
        # A3S_PROFILES, and a named service starts whatever its profiles, with its dependencies
        st.env["A3S_PROFILES"] = "e2e"
        assert st.a3s("up", "-d").code == 0
        assert states(st) == {"db": "running", "api": "running", "web": "stopped", "e2e": "running"}
        assert st.a3s("down").code == 0
        del st.env["A3S_PROFILES"]
        assert st.a3s("up", "-d", "web").code == 0
        assert states(st) == {"db": "running", "api": "running", "web": "running", "e2e": "stopped"}
        wrong = st.a3s("up", "-d", "--profile", "frnt")
        assert wrong.code != 0 and "unknown profile 'frnt' (profiles in A3sfile.hcl: front, e2e)" in wrong.err


def test_a_service_listening_on_another_port_is_explained_with_the_flag(tmp_path: Path) -> None:
    elsewhere, told = free_port(), free_port()
    (tmp_path / "A3sfile.hcl").write_text(
        f'service "web" {{\n  cmd = "exec python3 -m http.server {elsewhere} --bind 127.0.0.1 # vite"\n'
        f'  port = {told}\n}}\n'
    )
    with stack_in(tmp_path, {"A3S_PROXY_PORT": "0"}) as st:
        result = st.a3s("up", "-d", "--timeout", "3s")
        said = f"web listens on {elsewhere}, not on its port {told} (pass --port $PORT --strictPort)"
        assert result.code != 0 and said in result.out + result.err
        wait_until(lambda: st.status()["web"]["probe"] == said, message="status saying it")
        assert said in st.a3s("status").out


LAZY = """\
dev {
  name = "lazy"
}
service "db" {
  cmd        = "exec python3 -m http.server $PORT --bind 127.0.0.1"
  port       = "auto"
  proxy      = false
  idle_stop  = "1s"
}
service "web" {
  cmd        = "sleep 0.3; exec python3 -m http.server $PORT --bind 127.0.0.1"
  port       = "auto"
  lazy       = true
  idle_stop  = "2s"
  depends_on = ["db"]
}
service "docs" {
  cmd  = "exec python3 -m http.server $PORT --bind 127.0.0.1"
  port = "auto"
  lazy = true
}
"""


def fetch(proxy: int, host: str) -> int:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{proxy}/", headers={"Host": host}, timeout=30, trust_env=False).status_code
    except httpx.HTTPError:
        return 0


def test_a_lazy_service_is_idle_until_a_request_starts_it_and_idle_stop_makes_it_idle_again(tmp_path: Path) -> None:
    from support import holds, pid_alive

    (tmp_path / "A3sfile.hcl").write_text(LAZY)
    proxy = free_port()
    with stack_in(tmp_path, {"A3S_PROXY_PORT": str(proxy)}) as st:
        result = st.a3s("up", "-d")
        assert result.code == 0, result.out + result.err
        # db is not lazy: it runs; and though it has idle_stop, a web that needs it would keep it up
        assert states(st) == {"db": "running", "web": "idle", "docs": "idle"}
        assert fetch(proxy, "web.lazy.localhost") == 200  # held while web (and db) started
        rows = st.status()
        assert rows["web"]["state"] == "running" and rows["docs"]["state"] == "idle"
        first = rows["web"]["pid"]
        # db: no request of its own for 1 s, but web runs and needs it: never idle-stopped meanwhile
        holds(lambda: st.status()["db"]["state"] == "running", 1.5, message="db kept up by its dependent")
        wait_until(lambda: st.status()["web"]["state"] == "idle", timeout=10, message="web idle-stopped")
        assert st.status()["web"]["reason"] == "no request for 2s"
        assert not pid_alive(first)
        wait_until(lambda: st.status()["db"]["state"] == "idle", timeout=10, message="db idle once web is")
        assert "web stopped (idle for 2s)" in st.a3s("logs", "a3s").out
        # the next request brings both back
        assert fetch(proxy, "web.lazy.localhost") == 200
        rows = st.status()
        assert rows["web"]["state"] == "running" and rows["web"]["pid"] != first and rows["db"]["state"] == "running"
        # `up SVC` starts a lazy one like any service
        assert st.a3s("up", "-d", "docs").code == 0
        assert st.status()["docs"]["state"] == "running"
