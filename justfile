# a3s developer recipes. `just --list` shows them.

venv := ".venv"

# run the test suite
test *ARGS:
    {{venv}}/bin/python -m pytest -q {{ARGS}}

# static checks (ruff and mypy: `pip install ruff mypy` into the venv)
lint:
    {{venv}}/bin/python -m ruff check src tests benchmarks
    {{venv}}/bin/python -m mypy src

# every benchmark, figures printed
bench:
    for b in benchmarks/bench_*.py; do echo "== $b"; {{venv}}/bin/python "$b" || exit 1; done

# run the project's own stack (examples/quickstart)
up *ARGS:
    {{venv}}/bin/a3s -f A3sfile.hcl up {{ARGS}}
