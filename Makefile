# Two commands for a fresh machine: `make run` and `make test` (see README.md);
# `make system-deps` (as root) installs the programs some tests drive.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STATEDIR ?= _caterva2/sub
HTTP ?= localhost:8000
# Three pytest-xdist workers, one test file each at a time: most tests wait on
# processes and sockets, so three fit two cores (the whole suite took 9.5 min
# serially here and 5 min with these). `make test PYTEST_WORKERS=` runs serially.
PYTEST_WORKERS ?= -n 3 --dist loadfile

.PHONY: run test lint install demo-data clean lab lab-stop system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs the package with every extra; re-run when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[all]'
	touch $@

install: $(VENV)/.installed

# A secret for login tokens, kept in .env (never committed).
.env:
	@echo "CATERVA2_SECRET=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))')" > .env

# The example datasets served in @public (copied once; your own files are left alone).
demo-data: install
	@mkdir -p $(STATEDIR)/public
	@test -n "$$(ls -A $(STATEDIR)/public)" || $(BIN)/python -c \
	  "from caterva2.common.b2files import store_tree; store_tree('root-example', '$(STATEDIR)/public')"

# A standalone subscriber serving root-example/ in @public, with logins.
run: install .env demo-data
	$(BIN)/cat2sub --statedir $(STATEDIR) --http $(HTTP)

# The multi-site lab: RabbitMQ, two publishers, two subscribers on 127.0.0.x.
lab: install .env
	set -a; . ./.env; set +a; $(BIN)/python lab/lab.py start

lab-stop:
	$(BIN)/python lab/lab.py stop

# Programs the tests drive that pip cannot install, and why. `make test` never
# installs them (it only says which are missing); `make system-deps` does, with
# apt-get, after saying what it installs and why. `.ci/run` calls it first.
SYSTEM_PROGRAMS := docker-compose chromium rabbitmq-server openssl
MISSING = $$(for p in $(SYSTEM_PROGRAMS); do command -v $$p >/dev/null || printf ' %s' $$p; done)

system-deps:
	@echo "make system-deps: programs the tests drive that pip cannot install:"
	@echo "  docker-compose   validates docker-compose.yml (lab and secret tests)"
	@echo "  chromium         the GUI tests (playwright drives Debian's Chromium)"
	@echo "  rabbitmq-server  throwaway broker nodes (permission, TLS, federation, lab tests)"
	@echo "  openssl          test certificates (TLS tests)"
	@missing="$(MISSING)"; \
	if [ -z "$$missing" ]; then echo "make system-deps: all installed, nothing to do"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "make system-deps: installing with apt-get:$$missing (and what they depend on)"; \
	  apt-get install -y -q $$missing || { apt-get update -q && apt-get install -y -q $$missing; }; \
	else echo "make system-deps: install$$missing yourself (as root, with your package manager)"; exit 1; fi

test: install
	@missing="$(MISSING)"; [ -z "$$missing" ] || \
	  echo "make test: not installed:$$missing: the tests that need them fail (see make system-deps)"
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf _caterva2 .pytest_cache build *.egg-info
