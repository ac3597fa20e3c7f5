# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STATEDIR ?= _caterva2/sub
HTTP ?= localhost:8000

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

# Programs the tests drive that pip cannot install: docker-compose (validates
# docker-compose.yml), Chromium (GUI tests), rabbitmq-server (the throwaway nodes
# of the permission, TLS, federation and lab tests) and openssl (test certificates).
# Installed with apt when we can (each package is named like its program).
SYSTEM_PROGRAMS := docker-compose chromium rabbitmq-server openssl
system-deps:
	@missing=""; for p in $(SYSTEM_PROGRAMS); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q $$missing || { apt-get update -q && apt-get install -y -q $$missing; } || true; \
	  else echo "make: install$$missing yourself: the tests that need them will fail"; fi; \
	fi

test: install system-deps
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf _caterva2 .pytest_cache build *.egg-info
