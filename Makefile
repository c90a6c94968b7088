# `make up` and `make test` work from a fresh clone: each creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: up test drills audit bench lock clean bytecode

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[dev]'
	touch $@

up: $(VENV)/.installed
	$(BIN)/ingest up

# Where the environment sets PYTHONDONTWRITEBYTECODE (CI's does), every `ingest` process a test starts
# would compile the project from source again: compiled once here instead (a no-op when up to date).
bytecode: $(VENV)/.installed-dev
	$(BIN)/python -m compileall -q -j 0 shared worker bench tests > /dev/null

# Everything but the slow fault drills: under five minutes on two cores. CI (.ci/run) runs both.
test: bytecode
	$(BIN)/python -m pytest -m "not drill"

drills: bytecode
	$(BIN)/python -m pytest -m drill

# Known vulnerabilities in constraints.txt (pip-audit); skipped, saying so, where PyPI's advisory data does not answer.
audit:
	.ci/audit

bench: bytecode
	$(BIN)/python -m bench

# Refresh constraints.txt (the lock) from what a fresh resolve installs today.
lock:
	rm -rf /tmp/ingest-lock && $(PYTHON) -m venv /tmp/ingest-lock
	/tmp/ingest-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/ingest-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .venv-audit build *.egg-info
