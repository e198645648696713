# The two commands of the README: `make demo` and `make test`. Each builds its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned here only (a CPU build on the CI machines); the package never pins it.
CONSTRAINTS := tests/constraints.txt

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) torch
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[train,test]'
	# Unsloth is not installed (it needs a GPU), but tests/test_packed_conv_unsloth.py reads its
	# hybrid-packing module from the wheel, the same pin scripts/fetch_gpu_wheels.sh carries.
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: -d .whl unsloth==2026.10.9
	touch $@

# Plans, trains, evaluates and publishes the demo run on this machine; a second run is a no-op.
demo: $(VENV)/.installed
	$(BIN)/tuneform validate
	$(BIN)/tuneform apply runs/demo.yaml

# Lint first: it takes seconds and fails on what review would.
test: lint
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/python -m pip install -q check-jsonschema
	$(BIN)/python bench/plan_speed.py
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .tuneform
