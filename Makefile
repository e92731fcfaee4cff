# sde: two set-up commands, `make demo` and `make test`; everything else is a helper.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The hub's proxy (npm); 5.1 is the newest that runs on Debian 12's Node.js 18.
CHP := $(VENV)/chp/node_modules/.bin/configurable-http-proxy
# Python 3.11 or newer; Debian 12's python3 is 3.11.
PYTHON ?= python3
SDE_HOME ?= $(CURDIR)/.demo-home
export SDE_HOME
# Every portion of the `sde` namespace; a new one needs the editable install redone.
PORTIONS := $(sort $(wildcard platform/sde/*/ accreditation/sde/*/ airlock/sde/*/ workspace-images/sde/*/))

.PHONY: install system demo test lint typecheck images clean

system:
	bash infra/scripts/install-system.sh

install: system $(VENV)/.installed $(CHP)

$(CHP):
	npm install -s --prefix $(VENV)/chp --no-audit --no-fund configurable-http-proxy@5.1.0

$(VENV)/.installed: pyproject.toml setup.py $(PORTIONS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

demo: install images
	$(VENV)/bin/sde demo

test: install images
	bash infra/scripts/run-tests.sh

# The researcher workspace image and the platform images of docker-compose.yml;
# BASE_IMAGE=... uses a registry's Debian image instead of building one with debootstrap.
images: system
	bash workspace-images/build.sh
	bash infra/images/build.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy platform accreditation airlock workspace-images/sde

clean:
	rm -rf $(VENV) .demo-home .pytest_cache .mypy_cache .ruff_cache
