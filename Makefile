# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tunduk demo

test: $(STAMP)
	$(BIN)/python -m pytest

# BENCH_ARGS e.g. "--profile full" or "--only direct,off --duration 3"
bench: $(STAMP)
	@command -v wrk >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; }; } \
	  || echo "wrk could not be installed: using the Python load generator" >&2
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
