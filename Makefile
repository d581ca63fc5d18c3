# Two commands on a fresh machine: `make demo` and `make test` (see README).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The venv is rebuilt when pyproject.toml or the lock (constraints.txt) changes.
STAMP := $(VENV)/.installed

# Tests run against the machine's real PostgreSQL and Redis unless told otherwise. Test servers
# (live server threads, daphne, Celery) close their connections after each request/task so a
# run never holds more than a few of PostgreSQL's connections.
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/brightrun
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
export DATABASE_CONN_MAX_AGE ?= 0

.PHONY: venv lock demo lint test test-fast run bench reliability clean browser ts-client ts-check

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[train,eval,test]'
	@touch $@

# Re-resolve the dependencies from pyproject.toml (newest allowed releases) and write the lock.
lock:
	rm -rf $(VENV).lock && $(PY) -m venv $(VENV).lock
	$(VENV).lock/bin/python -m pip install -q --disable-pip-version-check -e '.[train,eval,test]'
	{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; $(VENV).lock/bin/python -m pip freeze --exclude-editable | \
	  sed 's/^\(torch==[0-9.]*\)+cpu$$/\1/'; } > constraints.txt.new && mv constraints.txt.new constraints.txt
	rm -rf $(VENV).lock

demo: venv
	$(BIN)/python manage.py demo

run: venv
	$(BIN)/python manage.py runall

# The dashboard's browser test drives Debian's Chromium; install it when missing (root, apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test will skip"; }

# The dependency contracts (.importlinter; docs/architecture.md), ruff's small rule set
# (pyproject.toml) and the dead-code report (tools/dead_code.py: vulture with a whitelist).
# PYTHONPATH=. so the contracts are checked on this checkout's code, whatever the venv's
# editable install points at.
lint: venv
	PYTHONPATH=. $(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/python tools/dead_code.py

test: venv browser ts-check lint
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The TypeScript client (clients/typescript): regenerate the schema and its types after an API
# change (tests/api/test_api_ts_client.py fails while they are stale), and type-check it with
# tsc --strict (the client and the Next.js example), as `make test` does. Generated against
# PostgreSQL (the deployed database): integer bounds in the schema come from the database backend.
TS_DIR := clients/typescript
$(TS_DIR)/node_modules/.stamp: $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.stamp

ts-client: venv $(TS_DIR)/node_modules/.stamp
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python manage.py spectacular --format openapi-json --file $(TS_DIR)/openapi.json
	cd $(TS_DIR) && npm run --silent generate

ts-check: $(TS_DIR)/node_modules/.stamp
	cd $(TS_DIR) && npm run --silent check

# Figures, not pass/fail: every benchmark prints what it measured and the command behind it.
bench: venv
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m benchmarks $(BENCH_ARGS)

# The reliability suite at full size (the fast parts also run in `make test`); prints a table.
reliability: venv
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) RELIABILITY_FULL=1 \
	  $(BIN)/python -m pytest tests/reliability -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf var/ .pytest_cache
