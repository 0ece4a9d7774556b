"""Property-style: random valid A3sfiles, written out as HCL, load back to what was written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from a3s_dev.config import graph
from a3s_dev.config.load import load
from a3s_dev.config.model import ProbeKind, RestartMode

pytestmark = pytest.mark.timeout(60)


def q(text: str) -> str:
    """An HCL string literal (JSON's escaping is a subset HCL reads the same way)."""
    return json.dumps(text).replace("${", "$${") if "${" in text else json.dumps(text)


def random_file(rng: random.Random, root: Path) -> tuple[str, list[dict[str, object]]]:
    n = rng.randint(1, 12)
    names = [f"svc-{i}{rng.choice(['', '_x', 'a'])}" for i in range(n)]
    ports = rng.sample(range(1024, 60000), n)
    chunks = ['dev {\n  proxy_port = 0\n  stop_timeout = "3s"\n}\n']
    model: list[dict[str, object]] = []
    for i, name in enumerate(names):
        spec: dict[str, object] = {"name": name, "cmd": rng.choice(["run", 'echo "hi"\tthere', "serve ${PORT} é"])}
        body = [f"  cmd = {q(str(spec['cmd']))}"]
        if rng.random() < 0.7:
            spec["port"] = ports[i]
            body.append(f"  port = {ports[i]}")
        deps = sorted(rng.sample(names[:i], rng.randint(0, min(i, 3))))
        if deps or rng.random() < 0.3:
            spec["depends_on"] = deps
            sep = rng.choice([", ", ",\n    "])
            body.append(f"  depends_on = [{sep.join(q(d) for d in deps)}{rng.choice(['', ',']) if deps else ''}]")
        if rng.random() < 0.5:
            env = {f"K{j}": rng.choice(["v", "1", "true", "a b"]) for j in range(rng.randint(0, 3))}
            spec["env"] = env
            body.append("  env = {" + rng.choice([", ", "\n    "]).join(f"{k} = {q(v)}" for k, v in env.items()) + "}")
        if rng.random() < 0.4:
            spec["oneshot"] = True
            body.append("  oneshot = true")
        if rng.random() < 0.4:
            spec["restart"] = rng.choice(["always", "never", "on-failure"])
            body.append(f"  restart = {q(str(spec['restart']))}")
        if rng.random() < 0.4:
            spec["stop_timeout"] = rng.choice([("250ms", 0.25), ("1m30s", 90.0), ("2", 2.0)])
            body.append(f"  stop_timeout = {q(spec['stop_timeout'][0])}")  # type: ignore[index]
        if "port" in spec and rng.random() < 0.5:
            spec["health"] = rng.choice(["http", "tcp"])
            path = "\n    path = \"/h\"" if spec["health"] == "http" else ""
            body.append(f"  health {{\n    type = {q(str(spec['health']))}{path}\n    retries = 4\n  }}")
        if rng.random() < 0.3:
            (root / name).mkdir(exist_ok=True)
            spec["watch"] = name
            body.append(f"  watch {{\n    paths = [{q(name)}]  # comment\n    debounce = \"50ms\"\n  }}")
        rng.shuffle(body)
        chunks.append(f"# service {i}\nservice {q(name)} {{\n" + "\n".join(body) + "\n}\n")
        model.append(spec)
    return "\n".join(chunks), model


@pytest.mark.parametrize("seed", range(30))
def test_random_valid_files_load_back_to_what_was_written(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    text, model = random_file(rng, tmp_path)
    path = tmp_path / "A3sfile.hcl"
    path.write_text(text)
    cfg = load(path, environ={})
    assert cfg.names == tuple(s["name"] for s in model)
    assert cfg.settings.proxy_port == 0 and cfg.settings.stop_timeout == 3.0
    for svc, spec in zip(cfg.services, model, strict=True):
        assert svc.cmd == spec["cmd"]
        assert svc.port == spec.get("port")
        assert svc.subdomain == (str(spec["name"]).replace("_", "-") if "port" in spec else None)
        assert svc.depends_on == tuple(spec.get("depends_on", []))  # type: ignore[arg-type]
        assert dict(svc.env) == spec.get("env", {})
        assert svc.oneshot is bool(spec.get("oneshot"))
        default = RestartMode.NEVER if spec.get("oneshot") else RestartMode.ON_FAILURE
        assert svc.restart == RestartMode(spec["restart"]) if "restart" in spec else svc.restart == default
        assert svc.stop_timeout == (spec["stop_timeout"][1] if "stop_timeout" in spec else 3.0)  # type: ignore[index]
        if "health" in spec:
            assert svc.health is not None and svc.health.type == ProbeKind(spec["health"]) and svc.health.retries == 4
        else:
            assert svc.health is None
        if "watch" in spec:
            assert svc.watch is not None and svc.watch.paths == (tmp_path / str(spec["watch"]),)
            assert svc.watch.debounce == 0.05
        assert svc.dir == tmp_path
    order = graph.start_order(cfg)
    position = {n: i for i, n in enumerate(order)}
    assert all(position[d] < position[s.name] for s in cfg.services for d in s.depends_on)
