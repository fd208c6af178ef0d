# tollgate — the two commands: `make dev` and `make test`. Everything else follows.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
REQS := infra/local/requirements.txt
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

help:
	@echo "make dev       run the whole system locally (emulator, mock provider, proxy) and print how to call it"
	@echo "make test      install what the tests need, then run every test tier"
	@echo "make bench     print latency, memory, size and call-count figures"
	@echo "make eval-dlp  print the sensitive-data filter's precision/recall table"
	@echo "make template-checks  cfn-lint, sam validate --lint, checkov and the policy-vs-code check on template.yaml (make test runs it too)"
	@echo "make deploy-check  deploy rehearsal: template.yaml created on the emulator's CloudFormation, the proxy invoked with API Gateway REST events (make test runs it too)"
	@echo "make sam-cli   install the AWS SAM CLI into .venv/sam (for sam build / sam deploy; make test installs it too)"
	@echo "make lint      cargo fmt --check and clippy -D warnings (make test runs it too)"
	@echo "make fuzz      run every fuzz target for FUZZ_SECONDS each (needs a nightly toolchain and cargo-fuzz)"

# The project's Python tools (moto server, cargo-lambda, cfn-lint, the official SDKs) live in
# ./.venv, installed from pinned requirements; re-installed when a requirements file changes.
$(VENV)/.installed: $(REQS) $(wildcard tests/dlp_eval/requirements.txt)
	python3 -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r $(REQS)
	if [ -f tests/dlp_eval/requirements.txt ]; then $(PIP) install --quiet --disable-pip-version-check -r tests/dlp_eval/requirements.txt; fi
	touch $@

venv: $(VENV)/.installed

# checkov cannot share ./.venv (it pins packaging<24, pytest 9 needs >=24): its own venv inside it.
CHECKOV_VENV := $(VENV)/checkov
CHECKOV_REQS := infra/local/checkov-requirements.txt
$(CHECKOV_VENV)/.installed: $(CHECKOV_REQS) | $(VENV)/.installed
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(CHECKOV_REQS)
	touch $@

# The AWS SAM CLI, also in its own venv (.venv/sam): `make sam-cli`, then `.venv/sam/bin/sam`.
SAM_VENV := $(VENV)/sam
SAM_REQS := infra/local/sam-requirements.txt
$(SAM_VENV)/.installed: $(SAM_REQS) | $(VENV)/.installed
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(SAM_REQS)
	touch $@

sam-cli: $(SAM_VENV)/.installed

build:
	cargo build --bins

dev: venv build
	infra/local/dev.sh

test: venv lint
	cargo build --bins
	cargo test --workspace
	$(MAKE) --no-print-directory template-checks
	$(MAKE) --no-print-directory deploy-check
	$(PY) -m pytest -q tests/e2e
	@if [ -f tests/dlp_eval/test_gates.py ]; then $(PY) -m pytest -q tests/dlp_eval; fi
	$(MAKE) --no-print-directory fuzz-smoke

# Part of `make test`, seconds, no AWS account: cfn-lint, `sam validate --lint`, checkov (every skip justified inline in
# template.yaml), and the policy-vs-code and environment checks of tests/deploy (docs/deploy.md, "Checks").
template-checks: venv $(CHECKOV_VENV)/.installed $(SAM_VENV)/.installed
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --template template.yaml --region us-east-1
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml
	@# the scanners see only the resources the default parameters enable: scan again with every option on
	$(PY) tests/deploy/all_options.py target/template-checks/all-options.yaml
	$(VENV)/bin/cfn-lint target/template-checks/all-options.yaml
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f target/template-checks/all-options.yaml
	$(PY) -m pytest -q tests/deploy

# Part of `make test`: the deploy rehearsal (docs/deploy.md, "Rehearsal"): the SAM-translated
# template created as a stack on the emulator's CloudFormation (every resource accounted for in
# a table), then the built proxy run under a Lambda Runtime API and invoked with events/' API
# Gateway REST samples, its streamed responses read as API Gateway reads them. No AWS account.
deploy-check: venv build
	$(PY) tests/deploy/rehearsal.py

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

bench: venv
	infra/bench/run.sh

eval-dlp: venv
	$(PY) tests/dlp_eval/report.py

FUZZ_SECONDS ?= 60
fuzz:
	cd fuzz && for t in $$(cargo +nightly fuzz list); do cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS); done

# Part of `make test`: a short pass over every fuzz target when a nightly toolchain with
# cargo-fuzz is installed; otherwise a notice says it was skipped (nothing is downloaded).
FUZZ_SMOKE_SECONDS ?= 30
fuzz-smoke:
	@if cargo +nightly fuzz --version >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS); \
	else \
	  echo "notice: fuzz pass skipped: no nightly toolchain with cargo-fuzz (rustup toolchain install nightly; cargo install cargo-fuzz)"; \
	fi

.PHONY: help venv sam-cli build dev test template-checks deploy-check lint bench eval-dlp fuzz fuzz-smoke
