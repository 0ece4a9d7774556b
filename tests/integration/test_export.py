"""`a3s export` as a command (SPEC §15): golden files for examples/containers both ways, every
document checked by the official schemas (compose-spec through check-jsonschema, the Kubernetes
API through kubernetes-validate --strict, both offline), the report on stderr with lines, the
exit codes, and byte-identical output from a second run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
EXAMPLE = ROOT / "examples" / "containers"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def a3s(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "a3s_dev", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def compose_valid(path: Path) -> None:
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def kubernetes_valid(paths: list[Path]) -> None:
    done = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", *map(str, paths)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """An A3sfile with every mapped feature (tests/golden/export-stack.hcl) and its files."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "A3sfile.hcl").write_text((GOLDEN / "export-stack.hcl").read_text())
    (folder / "db.env").write_text("POSTGRES_USER=shop\nPOSTGRES_DB=app\n")
    (folder / "init").mkdir()
    return folder


def test_examples_containers_exports_as_the_golden_files_both_ways() -> None:
    for target in ("compose", "kubernetes"):
        done = a3s("export", target, cwd=EXAMPLE)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (GOLDEN / f"containers.{target}.yaml").read_text(), f"{target}: not the golden file"
        assert "A3sfile.hcl:43: not exported: web: a host process (cmd, no image): left out" in done.stderr


def test_every_exported_document_is_valid_by_the_official_schemas(stack: Path, tmp_path: Path) -> None:
    done = a3s("export", "compose", "-o", "deploy/compose.yaml", cwd=stack)
    assert done.returncode == 0, done.stderr
    compose_file = stack / "deploy" / "compose.yaml"
    compose_valid(compose_file)
    text = compose_file.read_text()
    assert "- ../init:/docker-entrypoint-initdb.d:ro" in text and "- ../db.env" in text  # relative to the file
    done = a3s("export", "kubernetes", "-o", str(tmp_path / "k8s"), "--namespace", "shop-dev",
               "--domain", "dev.example.com", cwd=stack)
    assert done.returncode == 0, done.stderr
    files = sorted((tmp_path / "k8s").iterdir())
    assert [f.name for f in files] == ["00-namespace.yaml", "01-volumes.yaml", "api.yaml", "cache.yaml", "db.yaml",
                                       "ingress.yaml", "migrate.yaml", "tail.yaml"]
    kubernetes_valid(files)
    kubernetes_valid([GOLDEN / "containers.kubernetes.yaml"])
    compose_valid(GOLDEN / "containers.compose.yaml")


def test_the_report_names_each_unmapped_thing_by_line_on_stderr(stack: Path) -> None:
    lines = (stack / "A3sfile.hcl").read_text().splitlines()

    def line_of(text: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if text in line)

    done = a3s("export", "kubernetes", cwd=stack)
    assert done.returncode == 0
    report = done.stderr.splitlines()
    assert f"A3sfile.hcl:{line_of('watch {')}: not exported: api: watch: restarts on file change stay with a3s " \
           "(rebuild and redeploy instead)" in report
    assert f'A3sfile.hcl:{line_of("pattern = ")- 1}: not exported: tail: log probe (pattern "ready"): ' \
           "no health check reads the log" in report
    assert all(line.startswith("A3sfile.hcl:") for line in report), report
    assert "kind: Deployment" in done.stdout and "A3sfile.hcl" not in done.stdout  # the documents alone


def test_a_selected_host_process_is_an_error_and_nothing_is_written(stack: Path) -> None:
    done = a3s("export", "compose", "api", "web", "-o", "compose.yaml", cwd=stack)
    assert done.returncode == 1
    line = next(i for i, text in enumerate((stack / "A3sfile.hcl").read_text().splitlines(), 1) if "npm run dev" in text)
    assert f"A3sfile.hcl:{line}: error: web: has no image, only a cmd" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (stack / "compose.yaml").exists()
    unknown = a3s("export", "kubernetes", "nope", cwd=stack)
    assert unknown.returncode != 0 and "unknown service" in unknown.stderr and "Traceback" not in unknown.stderr
    only = a3s("export", "compose", "api", "db", cwd=stack)
    assert only.returncode == 0 and "  api:" in only.stdout and "  cache:" not in only.stdout


def test_a_second_run_is_byte_identical(stack: Path, tmp_path: Path) -> None:
    outputs = []
    for run in ("one", "two"):
        assert a3s("export", "kubernetes", "-o", str(tmp_path / run), cwd=stack).returncode == 0
        assert a3s("export", "compose", "-o", str(tmp_path / run / "compose.yaml"), cwd=stack).returncode == 0
        outputs.append({f.name: f.read_bytes() for f in sorted((tmp_path / run).iterdir())})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 8
