# Nous Chat: `make run` serves the chat, `make test` runs the suite. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: setup migrate run test test-embedded test-production browser-deps lint bench worker beat clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(PY) manage.py migrate --noinput

# The embedded default: SQLite, in-memory channel layer, runs in-process. One ASGI process.
run: migrate
	@$(PY) manage.py demo_user --url http://$(HOST):$(PORT)/
	@echo "Serving Nous Chat on http://$(HOST):$(PORT)/  (Ctrl+C to stop)"
	$(VENV)/bin/uvicorn nous_site.asgi:application --host $(HOST) --port $(PORT) \
		--ws wsproto --ws-per-message-deflate false --ws-max-size 65536 --lifespan off --log-level warning

# Production mode needs REDIS_URL (and DATABASE_URL); see README.md.
worker: migrate
	$(VENV)/bin/celery -A nous_site worker --pool threads --concurrency 4 -Q nous-runs --loglevel INFO

# The periodic commands (cleanup_agents, prune_conversations): one beat process per deployment.
beat: setup
	@mkdir -p var
	$(VENV)/bin/celery -A nous_site beat --loglevel INFO

# Debian's Chromium for the browser test (root only; elsewhere the browser test skips or fails per REQUIRE_SERVICES).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the browser test will skip"; }

test: setup browser-deps
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles
