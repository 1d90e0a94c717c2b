# flowscope: `make up` runs the whole embedded pipeline, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install up test test-unit chaos bench lint system-deps clean

$(BIN)/flowscope: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[embedded,test]'
	@touch $@

## install: create .venv (if needed) and install flowscope with the embedded stack and test tools
install: $(BIN)/flowscope

## up: start broker, warehouse, receiver, stream worker, dashboards and simulated traffic; Ctrl-C stops all
up: install
	$(BIN)/flowscope up

## system-deps: the system packages the tests need (docker-compose, to validate the compose file)
system-deps:
	@bash scripts/system-deps.sh

## test: install everything the tests need, then run the whole suite
test: install system-deps
	$(BIN)/python -m pytest

## chaos: kill each component under load and judge against the simulator's truth; writes chaos-report.json
chaos: install
	$(BIN)/flowscope chaos --report chaos-report.json --data-dir data/chaos

## bench: the speed targets (receiver, stream, freshness, dashboards at 100M events); writes bench-report.json
bench: install system-deps
	$(BIN)/flowscope bench --report bench-report.json --data-dir data/bench

test-unit: install
	$(BIN)/python -m pytest tests/unit

## lint: ruff, mypy (strict) and the import rules (import-linter contracts in pyproject.toml)
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf data chaos-report.json bench-report.json .pytest_cache .mypy_cache .ruff_cache
