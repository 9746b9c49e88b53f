# OneProtect Integrations portal. Quick start: `make run`, then `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# requirements.txt is what production runs; requirements-dev.txt adds the tools (and includes it).
REQUIREMENTS := requirements.txt requirements-dev.txt
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) | cksum | cut -d' ' -f1)

.PHONY: run test lint format e2e chaos bench clean check-runtime

$(STAMP): $(REQUIREMENTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

run: $(STAMP)
	$(PY) -m scripts.run

test: $(STAMP)
	$(PY) -m scripts.with_db -- $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy portal integrations audit

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# requirements.txt alone (a scratch venv) runs production: check --deploy, every import, gunicorn.
check-runtime:
	$(PYTHON) -m scripts.check_runtime

clean:
	rm -rf $(VENV) .data artifacts .pytest_cache .ruff_cache

chaos: $(STAMP)
	$(PY) -m chaos.run $(CHAOS_ARGS)

# The delivery and page measurements, then publishing throughput (issue 12's table).
bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)
	$(PY) -m bench.publish_bench $(PUBLISH_BENCH_ARGS)

# The browser walkthrough needs Debian's Chromium (Playwright's own download cannot work here).
e2e: $(STAMP)
	@test -x /usr/bin/chromium || { echo "Installing Chromium (apt-get)…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(PY) -m scripts.with_db -- $(PY) -m pytest -m e2e tests/e2e $(PYTEST_ARGS)
