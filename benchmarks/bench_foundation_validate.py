"""Cold wall time of `a3s validate` on examples/monorepo/A3sfile.hcl (each run a new process).

Scenarios:
  cached      the console script as a user runs it again and again (parsed-tree cache warm)
  uncached    A3S_NO_CACHE=1: every run loads the shipped parser and parses with lark
  fresh-ro    a fresh copy of the install (our package + its dependencies, byte-compiled as
              pip does), made read-only, run with an empty cache folder each time: the very
              first run after installing, on a read-only package folder
  ro-home     the fresh read-only copy with an unwritable cache folder: nothing can be cached

Budget (issue 2): median <= 250 ms and max <= 400 ms. Usage: python benchmarks/bench_foundation_validate.py [RUNS]
"""

from __future__ import annotations

import compileall
import os
import shutil
import stat
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "monorepo"
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 21
MEDIAN_BUDGET, MAX_BUDGET = 0.250, 0.400
# What `a3s validate` may import at most; copying only these keeps the fresh install small.
PACKAGES = ["hcl2", "lark", "regex", "typer", "click", "rich", "pydantic", "pydantic_core",
            "annotated_types", "typing_extensions.py", "typing_inspection", "annotated_doc",
            "shellingham", "pygments", "markdown_it", "mdurl"]


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()}")
    return elapsed


def fresh_install(dest: Path) -> Path:
    """Our package and what validate may import, copied as an install would lay them out, read-only."""
    site = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    shutil.copytree(ROOT / "src" / "a3s_dev", dest / "a3s_dev", ignore=shutil.ignore_patterns("__pycache__"))
    for name in PACKAGES:
        src = site / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    compileall.compile_dir(dest, quiet=1)  # pip byte-compiles on install
    for path in [dest, *dest.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return dest


def report(name: str, times: list[float]) -> bool:
    med, worst = statistics.median(times), max(times)
    ok = med <= MEDIAN_BUDGET and worst <= MAX_BUDGET
    print(f"{name:10} runs={len(times):3}  median={med * 1000:6.1f} ms  min={min(times) * 1000:6.1f} ms  "
          f"max={worst * 1000:6.1f} ms  {'ok' if ok else 'OVER BUDGET'}")
    return ok


def main() -> int:
    exe = Path(sys.executable).with_name("a3s")
    if not exe.exists():
        raise SystemExit("install the package first (pip install -e .): no a3s next to this python")
    base = {k: v for k, v in os.environ.items() if not k.startswith("A3S_")}
    print(f"a3s validate on {EXAMPLE.relative_to(ROOT)}/A3sfile.hcl, {RUNS} cold runs each, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {**base, "XDG_CACHE_HOME": str(tmp / "cache")}
        timed([str(exe), "validate"], env, EXAMPLE)  # fill the tree cache once
        results.append(report("cached", [timed([str(exe), "validate"], env, EXAMPLE) for _ in range(RUNS)]))
        env_nc = {**env, "A3S_NO_CACHE": "1"}
        results.append(report("uncached", [timed([str(exe), "validate"], env_nc, EXAMPLE) for _ in range(RUNS)]))

        ro = fresh_install(tmp / "site")
        # -S: no site-packages at all, only the read-only copy on PYTHONPATH (and the stdlib).
        cmd = [sys.executable, "-S", "-c", "from a3s_dev.entry import main; main(['validate'])"]
        times = []
        for i in range(RUNS):
            env_ro = {**base, "PYTHONPATH": str(ro), "XDG_CACHE_HOME": str(tmp / f"fresh-{i}")}
            times.append(timed(cmd, env_ro, EXAMPLE))
        results.append(report("fresh-ro", times))
        blocker = tmp / "blocker"
        blocker.write_text("")
        env_home = {**base, "PYTHONPATH": str(ro), "XDG_CACHE_HOME": str(blocker)}
        results.append(report("ro-home", [timed(cmd, env_home, EXAMPLE) for _ in range(RUNS)]))
        for path in [ro, *ro.rglob("*")]:  # let TemporaryDirectory clean up
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
