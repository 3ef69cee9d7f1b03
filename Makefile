# Two commands do all the set-up on a machine with only Python 3.11+ and make:
#   make demo   -> environment from uv.lock, then the demo on the built-in simulator
#   make test   -> the same environment, then the whole test suite
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test bench env clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

env: $(VENV)/.synced

demo: env
	$(VENV)/bin/holysheep-lab demo

test: env
	$(VENV)/bin/python -m pytest -n 2 -q

bench: env
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) $(TOOLS)
