# The two commands a new user needs:  `make demo`  and  `make test`.
# Both create the virtual environment (.venv) from the lock file when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9

.PHONY: demo test lint format install clean lock bench

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "uv==$(UV_VERSION)"

# --compile-bytecode: every worker, flow-run and server process imports MLflow, scikit-learn and XGBoost;
# without .pyc files (uv writes none by default, and PYTHONDONTWRITEBYTECODE stops Python from writing
# them) each process compiles those sources again: 5-8 s per process on 2 cores.
$(VENV)/.installed: requirements.lock pyproject.toml $(BIN)/uv
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --index-url https://pypi.org/simple \
		-r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --no-deps -e .
	touch $@

install: $(VENV)/.installed

## Run the main job on the embedded default: generate the drifting stream and replay it through the pipeline.
demo: install
	$(BIN)/ctcd demo

## Lint, format check, the layer contracts (pyproject's [tool.importlinter]) and the whole test suite (what CI runs).
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	bash scripts/run-tests.sh

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Regenerate the lock file after changing dependencies in pyproject.toml.
lock: $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra dask --python-version 3.11 \
		--index-url https://pypi.org/simple -o requirements.lock

clean:
	rm -rf $(VENV) .ctcd
