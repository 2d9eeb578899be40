# Set-up and everyday commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The whole suite in 4 worker processes (pytest-xdist); `make test PYTEST_ARGS=` runs it in one.
PYTEST_ARGS ?= -n 4

.PHONY: demo test typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.installed

## demo: create .venv, install agentledger, run the demo on the embedded SQLite store
demo: $(VENV)/.installed
	$(BIN)/agentledger demo

## test: create/update .venv with the test dependencies, lint, type-check, run the whole suite
test: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: every store side by side with its raw driver, then 1-8 concurrent writers (not part of the tests; PostgreSQL needs the postgres extra: `make test` installs it)
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_concurrency.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
