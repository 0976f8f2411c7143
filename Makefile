# The two quick-start commands: `make run` (the product) and `make test` (the suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Web server, Celery worker and beat on the embedded default (SQLite + file-system
# broker under var/), at http://$(WEB_HOST):$(WEB_PORT)/ (127.0.0.1:8000 unless set).
# Ctrl-C stops all three. The product as its users see it: DEBUG off (the styled 403
# and 404 pages; tracebacks go to the console), with a key of this checkout, cookies over
# plain HTTP, callbacks to this machine, and runserver --insecure serving static/.
# The secret key is made once per checkout (var/secret_key), never a published one.
RUN_VAR = $(or $(COUPONS_VAR_DIR),var)
run: export DEBUG ?= false
run: export SECRET_KEY ?= $(shell mkdir -p $(RUN_VAR) && { [ -s $(RUN_VAR)/secret_key ] || $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $(RUN_VAR)/secret_key; } && cat $(RUN_VAR)/secret_key)
run: export SECURE_COOKIES ?= false
run: export COUPON_CALLBACK_ALLOW_LOOPBACK ?= true
run: export WEB_HOST ?= 127.0.0.1
run: export WEB_PORT ?= 8000
run: export ALLOWED_HOSTS ?= 127.0.0.1,localhost,$(WEB_HOST)
run: export PATH := $(abspath $(BIN)):$(PATH)
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_setup
	exec $(BIN)/honcho --procfile couponsite/Procfile.dev --app-root . start

# The whole suite, browser tests included, on the local PostgreSQL and Redis
# (pytest-django creates and drops its own test database).
test: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/coupons
test: export CELERY_BROKER_URL ?= redis://127.0.0.1:6379/15
test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)
