# Two commands do all the set-up on a machine with only Python 3.11+ and make:
#   make demo   -> environment from uv.lock, then the demo on the built-in simulator
#   make test   -> the same environment, then lint (ruff), types (mypy) and the whole test suite
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test lint bench env prices legacy-env legacy-requirements clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

env: $(VENV)/.synced

# openai SDK < 3 on legacy httpx, for tests/test_legacy_httpx.py: exact pins with hashes.
VENV_LEGACY := .venv-legacy
LEGACY_REQS := tests/legacy-requirements.txt

$(VENV_LEGACY)/.synced: $(UV) $(LEGACY_REQS) pyproject.toml
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV_LEGACY)
	$(UV) pip install --quiet --python $(VENV_LEGACY) --require-hashes -r $(LEGACY_REQS)
	$(UV) pip install --quiet --python $(VENV_LEGACY) --no-deps -e .
	touch $@

legacy-env: $(VENV_LEGACY)/.synced

# Re-pin after changing uv.lock or tests/legacy-requirements.in (needs PyPI).
legacy-requirements: $(UV)
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes --no-header --no-annotate > $(TOOLS)/legacy-constraints.txt
	$(UV) pip compile pyproject.toml tests/legacy-requirements.in -c $(TOOLS)/legacy-constraints.txt \
		--generate-hashes --universal --python-version 3.11 --no-header --no-annotate -o $(LEGACY_REQS)

demo: env
	$(VENV)/bin/holysheep-lab demo

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: env legacy-env lint
	$(VENV)/bin/python -m pytest -n 2 -q

bench: env
	$(VENV)/bin/python bench/run_all.py

# Regenerate holysheep_lab/core/prices.json from genai-prices (dev group); commit the result.
prices: env
	$(VENV)/bin/python tools/make_prices.py

clean:
	rm -rf $(VENV) $(VENV_LEGACY) $(TOOLS)
