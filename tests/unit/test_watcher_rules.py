"""Pure watcher decisions: ignore globs, routing, what to hand the OS, debounce, the log line."""

from __future__ import annotations

from pathlib import Path

import pytest

from a3s_dev.config.model import DevConfig, ServiceDef, WatchConfig
from a3s_dev.watch.engine import _transient
from a3s_dev.watch.rules import (
    DEFAULT_IGNORES,
    IgnoreRules,
    PathKind,
    PendingChanges,
    Routes,
    WatchRoots,
    describe_change,
    plan_roots,
    prune_predicate,
    prune_roots,
)

ROOT = Path("/proj")


def config(*services: ServiceDef) -> DevConfig:
    return DevConfig(path=ROOT / "A3sfile.hcl", services=services)


def svc(name: str, *paths: str, ignore: tuple[str, ...] = (), restart: bool = True) -> ServiceDef:
    watch = WatchConfig(paths=tuple(ROOT / p for p in paths), ignore=ignore, restart=restart)
    return ServiceDef(name=name, cmd="true", dir=ROOT, watch=watch)


# ---------------------------------------------------------------- ignore globs


@pytest.mark.parametrize(
    "glob, rel, ignored",
    [
        ("target", "target", True),
        ("target", "crates/gw/target/debug/gw", True),
        ("target", "src/targets.py", False),
        ("*.lock", "Cargo.lock", True),
        ("*.lock", "web/yarn.lock", True),
        ("*.lock", "src/lock.py", False),
        ("src/gen/**", "src/gen/a/b.py", True),
        ("src/gen/**", "src/gen", True),
        ("src/gen/**", "src/general.py", False),
        ("src/gen/**", "lib/src/gen/x.py", False),  # anchored at the A3sfile's folder
        ("src/gen", "src/gen/x.py", True),  # a folder with `/` covers its subtree
        ("/src/gen", "src/gen/x.py", True),
        ("./docs/*.md", "docs/a.md", True),
        ("docs/*.md", "docs/sub/a.md", False),  # `*` stops at `/`
        ("docs/**/*.md", "docs/a.md", True),  # `**` spans zero folders …
        ("docs/**/*.md", "docs/x/y/a.md", True),  # … or several
        ("**/fixtures", "a/b/fixtures/f.json", True),
        ("data?.csv", "data1.csv", True),
        ("data[0-9].csv", "x/data7.csv", True),
        ("data[!0-9].csv", "x/data7.csv", False),
        ("build/", "web/build/index.js", True),  # a trailing `/` is tolerated
    ],
)
def test_ignore_globs_match_components_and_paths_relative_to_the_a3sfile(
    glob: str, rel: str, ignored: bool
) -> None:
    assert IgnoreRules.compile([glob]).matches(rel) is ignored


@pytest.mark.parametrize("folder", DEFAULT_IGNORES)
def test_default_ignores_cover_their_whole_subtree(folder: str) -> None:
    routes = Routes.of(config(svc("api", ".")))
    assert routes.route(ROOT / folder / "deep" / "file.py") == ()
    assert routes.route(ROOT / "src" / folder / "file.py") == ()
    assert routes.route(ROOT / "src" / "app.py") == ("api",)


@pytest.mark.parametrize(
    "name", ["app.py.swp", ".app.py.swx", "app.py~", ".#app.py", "#app.py#", "4913"]
)
def test_editor_temporary_files_never_restart_a_service(name: str) -> None:
    routes = Routes.of(config(svc("api", "src")))
    assert routes.route(ROOT / "src" / name) == ()


def test_ignores_apply_below_an_explicit_watch_path_only() -> None:
    routes = Routes.of(config(svc("lib", "vendor/target/lib", "Cargo.lock", ignore=("*.lock",))))
    assert routes.route(ROOT / "vendor/target/lib/mod.rs") == ("lib",)
    assert routes.route(ROOT / "vendor/target/lib/target/out.o") == ()
    assert routes.route(ROOT / "Cargo.lock") == ("lib",)  # a named file is always watched


def test_a_service_ignore_glob_does_not_affect_other_services() -> None:
    routes = Routes.of(config(svc("api", "src", ignore=("src/gen/**",)), svc("gen", "src/gen")))
    assert routes.route(ROOT / "src/gen/models.py") == ("gen",)
    assert routes.route(ROOT / "src/app.py") == ("api",)


# ---------------------------------------------------------------- routing


def test_a_change_goes_to_every_service_whose_paths_contain_it_and_no_other() -> None:
    routes = Routes.of(config(svc("api", "api", "shared"), svc("web", "web", "shared"), svc("db")))
    assert routes.route(ROOT / "api/app.py") == ("api",)
    assert routes.route(ROOT / "web/index.js") == ("web",)
    assert routes.route(ROOT / "shared/util.py") == ("api", "web")
    assert routes.route(ROOT / "apiary/x.py") == ()  # a prefix of the name is not containment
    assert routes.route(ROOT / "README.md") == ()
    assert [r.service for r in routes.rules] == ["api", "web"]  # db has no watch block


def test_a_single_file_watch_path_matches_that_file_only() -> None:
    routes = Routes.of(config(svc("api", "settings.toml")))
    assert routes.route(ROOT / "settings.toml") == ("api",)
    assert routes.route(ROOT / "settings.toml.bak") == ()
    assert routes.route(ROOT / "other.toml") == ()


def test_watch_paths_outside_the_a3sfile_folder_are_routed() -> None:
    routes = Routes.of(config(svc("api", "../shared")))
    assert routes.route(Path("/shared/lib/target/x")) == ()
    assert routes.route(Path("/shared/lib/util.py")) == ("api",)


def test_routes_normalise_paths_and_list_every_watch_path_once() -> None:
    routes = Routes.of(config(svc("api", "src/", "./src"), svc("web", "src")))
    assert routes.paths == (str(ROOT / "src"),)
    assert routes.route("/proj/src/../src/a.py") == ("api", "web")


# ---------------------------------------------------------------- which folders to watch


def kinds(dirs: set[str], files: set[str] = frozenset()) -> object:
    def kind(path: str) -> PathKind:
        if path in dirs or path == "/":
            return PathKind.DIR
        return PathKind.FILE if path in files else PathKind.MISSING

    return kind


def test_existing_folders_are_watched_recursively_without_nesting() -> None:
    plan = plan_roots(
        ["/p/src", "/p/src/lib", "/p/web"], kinds({"/p", "/p/src", "/p/src/lib", "/p/web"})
    )
    assert plan == WatchRoots(recursive=("/p/src", "/p/web"))


def test_a_single_file_is_watched_through_its_folder_without_recursion() -> None:
    plan = plan_roots(["/p/A3sfile.hcl", "/p/src"], kinds({"/p", "/p/src"}, {"/p/A3sfile.hcl"}))
    assert plan == WatchRoots(recursive=("/p/src",), flat=("/p",))


def test_a_missing_path_is_watched_through_its_nearest_existing_folder() -> None:
    plan = plan_roots(["/p/src/gen/models"], kinds({"/p", "/p/src"}))
    assert plan == WatchRoots(flat=("/p/src",))


def test_a_flat_root_inside_a_recursive_one_is_dropped() -> None:
    plan = plan_roots(
        ["/p", "/p/src/missing", "/p/src/main.py"], kinds({"/p", "/p/src"}, {"/p/src/main.py"})
    )
    assert plan == WatchRoots(recursive=("/p",))


def test_a_path_under_a_file_is_anchored_at_a_real_folder() -> None:
    plan = plan_roots(["/p/notes.txt/x"], kinds({"/p"}, {"/p/notes.txt"}))
    assert plan == WatchRoots(flat=("/p",))


# ---------------------------------------------------------------- debounce and the log line


def test_a_burst_is_over_debounce_seconds_after_its_last_change() -> None:
    pending = PendingChanges(debounce=0.5)
    assert not pending
    pending.add(["/p/a"], now=10.0)
    pending.add(["/p/b", "/p/a"], now=10.3)
    assert pending.remaining(10.5) == pytest.approx(0.3)
    assert pending.remaining(10.9) == 0.0
    assert pending.take() == ("/p/a", "/p/b")
    assert not pending


def test_a_burst_that_never_pauses_is_acted_on_after_ten_debounce_periods() -> None:
    pending = PendingChanges(debounce=0.5)
    pending.add(["/p/log.txt"], now=10.0)
    assert pending.remaining(10.0) == pytest.approx(0.5)
    for i in range(1, 17):  # a change every 0.3 s: the trailing debounce alone never ends
        pending.add(["/p/log.txt"], now=10.0 + i * 0.3)
    assert pending.remaining(14.8) == pytest.approx(0.2)  # 10 x 0.5 s after the first change
    assert pending.remaining(15.0) == 0.0
    pending.take()
    pending.add(["/p/a"], now=20.0)  # the next burst starts its own clock
    assert pending.remaining(20.0) == pytest.approx(0.5)


def test_the_log_line_names_the_service_count_and_first_paths() -> None:
    root = "/proj"
    one = describe_change("api", ["/proj/src/app.py"], root, restarting=True)
    assert one == "api: 1 file changed (src/app.py) → restarting"
    many = [f"/proj/src/m{i}.py" for i in (4, 1, 3, 2)]
    line = describe_change("api", many, root, restarting=False)
    assert line == "api: 4 files changed (src/m1.py, src/m2.py, src/m3.py, …)"


# ---------------------------------------------------------------- ignored folders stay out of the OS watches

TREE = {
    "/p": ["/p/.git", "/p/node_modules", "/p/src", "/p/web"],
    "/p/src": ["/p/src/app", "/p/src/gen"],
    "/p/src/app": ["/p/src/app/target"],
    "/p/web": ["/p/web/components"],
    "/p/node_modules": ["/p/node_modules/react"],
}


def test_a_clean_tree_stays_one_recursive_watch() -> None:
    plan = prune_roots(
        WatchRoots(recursive=("/p/web",)), lambda d: TREE.get(d, []), lambda d: False
    )
    assert plan == WatchRoots(recursive=("/p/web",))


def test_ignored_folders_are_cut_out_of_a_recursive_watch() -> None:
    pruned = {"/p/.git", "/p/node_modules", "/p/src/app/target"}
    plan = prune_roots(
        WatchRoots(recursive=("/p",), flat=("/q",)), lambda d: TREE.get(d, []), pruned.__contains__
    )
    # Folders on the way to a pruned one are watched flat; clean subtrees recursively.
    assert plan == WatchRoots(
        recursive=("/p/src/gen", "/p/web"), flat=("/q", "/p", "/p/src", "/p/src/app")
    )


def test_a_folder_is_prunable_when_rejected_and_holding_no_watch_path() -> None:
    routes = Routes.of(config(svc("api", "."), svc("lib", "vendor/target/lib")))
    prunable = prune_predicate(routes.paths, routes.accepts)
    assert prunable("/proj/node_modules")
    assert prunable("/proj/crates/gw/target")
    assert prunable("/proj/.a3s")
    assert not prunable("/proj/src")
    assert not prunable("/proj/vendor/target")  # lib's watch path is inside it
    assert prunable("/proj/vendor/target/debug")


def test_files_created_and_gone_within_a_batch_are_no_change(tmp_path: Path) -> None:
    kept = tmp_path / "app.py"
    kept.write_text("")
    raw = {
        (1, str(tmp_path / "app.py.tmp")),  # a safe write: the scratch file appears …
        (3, str(tmp_path / "app.py.tmp")),  # … and is renamed over the real one
        (1, str(kept)),
        (3, str(kept)),  # deleted and created again: still there, a real change
        (3, str(tmp_path / "old.py")),  # only deleted: a real change
    }
    assert _transient(raw) == {str(tmp_path / "app.py.tmp")}


def test_a_service_restarting_on_its_own_files_is_warned_once_then_slowed_like_a_crash_loop() -> None:
    from a3s_dev.watch.rules import RestartLoop

    loop = RestartLoop("api", "/r")
    decisions = [loop.decide(float(t), ["/r/data/app.db", "/r/data/app.db-journal"]) for t in range(9)]
    assert [d for d in decisions[:5]] == [(None, 0.0)] * 5  # five in a minute are a busy developer
    warning, delay = decisions[5]
    assert warning is not None and delay == 1.0
    assert warning.startswith("api restarted 6 times in a minute on file changes (data/app.db, data/app.db-journal)")
    assert 'add `ignore = ["data"]` to its watch block' in warning
    assert [d for d in decisions[6:]] == [(None, 2.0), (None, 4.0), (None, 8.0)]  # said once, then backoff


def test_a_quiet_minute_resets_the_restart_loop() -> None:
    from a3s_dev.watch.rules import RestartLoop

    loop = RestartLoop("api", "/r")
    for t in range(6):
        loop.decide(float(t), ["/r/out.txt"])
    assert loop.decide(200.0, ["/r/src/app.py"]) == (None, 0.0)
    for t in range(201, 205):
        assert loop.decide(float(t), ["/r/out.txt"]) == (None, 0.0)
    warning, _ = loop.decide(205.0, ["/r/out.txt"])
    assert warning is not None and 'ignore = ["out.txt"]' in warning  # warned again: a new loop
