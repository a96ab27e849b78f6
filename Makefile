# Developer entry points. Every target builds the virtualenv first when it is missing or
# older than pyproject.toml or requirements.lock (the pinned versions; `scripts/lock`
# writes it). `make test` and `make demo` need Redis (see README).

VENV := .venv
PY := $(VENV)/bin/python
# A stamp, not $(PY) itself: .venv/bin/python is a symlink to the system interpreter, whose
# old mtime would make Make reinstall on every run.
VENV_STAMP := $(VENV)/.installed
# bench/ may not exist yet in a fresh clone (git keeps no empty folders); ruff fails on a missing path.
LINT_PATHS := $(wildcard app tests flows bench)

.PHONY: venv demo test image-test lint format migrate flows-check

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml requirements.lock
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -c requirements.lock -e '.[dev]'
	touch $@

# Ping Redis; on failure print the exact error and how to start it.
define REDIS_CHECK
import sys, redis
url = sys.argv[1]
try:
    redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
except Exception as exc:
    sys.exit(
        f"Redis is not reachable at {url}: {type(exc).__name__}: {exc}\n"
        "Start it with: sudo apt-get install -y redis-server && redis-server --daemonize yes"
    )
endef
export REDIS_CHECK

# With redis-server installed the demo runs its own on a free port; else it needs a Redis
# at LATCHKEY_DEMO_REDIS_URL / REDIS_URL (default DB 13), and never empties one that holds
# keys it did not create.
demo: $(VENV_STAMP)
	@command -v redis-server >/dev/null || $(PY) -c "$$REDIS_CHECK" "$${LATCHKEY_DEMO_REDIS_URL:-$${REDIS_URL:-redis://127.0.0.1:6379/13}}"
	$(VENV)/bin/latchkey demo $(DEMO_ARGS)

# Pass pytest arguments with ARGS, e.g. `make test ARGS="-k approve -x"`.
test:
	scripts/test $(ARGS)

# Build the container image (Containerfile) and run migrate, web, worker and beat from it
# through one grant and its expiry (needs root, PostgreSQL and Redis; see docs/operations.md).
image-test: $(VENV_STAMP)
	scripts/image-test

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: $(VENV_STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

migrate: $(VENV_STAMP)
	$(VENV)/bin/latchkey migrate

flows-check: $(VENV_STAMP)
	$(VENV)/bin/latchkey flows check
