# a3s developer recipes. `just --list` shows them.

venv := ".venv"

# run the test suite
test *ARGS:
    {{venv}}/bin/python -m pytest -q {{ARGS}}

# static checks (the `lint` extra: pip install -e '.[test,lint]')
lint:
    {{venv}}/bin/ruff check src tests benchmarks
    {{venv}}/bin/mypy src
    {{venv}}/bin/lint-imports

# every benchmark, figures printed
bench:
    for b in benchmarks/bench_*.py; do echo "== $b"; {{venv}}/bin/python "$b" || exit 1; done

# run the project's own stack (examples/quickstart)
up *ARGS:
    {{venv}}/bin/a3s -f A3sfile.hcl up {{ARGS}}
