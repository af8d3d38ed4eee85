# gc-archive developer entry points. Every target installs what it needs itself.
#   make demo   - archive a seeded org end to end (Genesys simulator + moto, no credentials)
#   make test   - fmt check, clippy, every test, template lint
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export AWS_DEFAULT_REGION ?= us-east-1
CARGO ?= cargo

.PHONY: all venv demo test fmt clippy unit lint build bench bench-crypto bench-transfer coldstart clean-venv

all: test

$(VENV)/.ok: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

# The official Genesys Cloud Python SDK (test oracle) in its own virtualenv: it needs
# watchdog>=6, aws-sam-cli pins watchdog 4.
SDK_VENV := .venv-sdk
$(SDK_VENV)/.ok: requirements-genesys-sdk.txt
	python3 -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install --disable-pip-version-check -q -r requirements-genesys-sdk.txt
	touch $@

venv: $(VENV)/.ok $(SDK_VENV)/.ok

# Debian's Chromium, for the audit report's screenshot test (CHROMIUM overrides the path).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: browser
browser:
	@command -v chromium >/dev/null || [ -n "$$CHROMIUM" ] || { \
	  echo "installing Debian's chromium (audit report screenshot test)"; \
	  $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

demo: venv
	$(CARGO) run -q -p gc-archive-cli -- demo

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: venv browser
	$(CARGO) test --workspace

lint: venv
	cfn-lint template.yaml
	sam validate --lint

test: venv fmt clippy unit lint

# Lambda artifacts for deployment (arm64, provided.al2023), as `sam build` produces them.
build: venv
	$(CARGO) lambda build --release --arm64 -p archive-on-event -p chunk-recording -p recording-sweep -p storage-router -p event-stream
	@ls -l target/lambda/*/bootstrap

clean-venv:
	rm -rf $(VENV)

# ---- Benchmarks (bench/, tools/runtime_emulator.py; figures in docs/benchmarks.md) ----
#   make bench      - crypto-bench, then transfer-bench (discard sink 64 MiB + 1 GiB, moto 256 MiB)
#   make coldstart  - cargo lambda build x86_64 + arm64 (release, slow), then init time and sizes
# Benchmarks use the bench-fast profile (opt 3, thin LTO), never release (fat LTO).
.PHONY: bench-build bench-backfill bench-routing bench-stream bench-upload
BENCH_BIN := $(or $(CARGO_TARGET_DIR),target)/bench-fast
BENCH_TRANSFER_ARGS ?= --moto
LAMBDA_FUNCTIONS := -p archive-on-event -p chunk-recording

bench-build:
	$(CARGO) build --profile bench-fast -p gc-archive-bench

bench: bench-crypto bench-transfer

bench-crypto: bench-build
	@command -v openssl >/dev/null || echo "note: openssl is missing (apt-get install openssl); the openssl ratio is skipped"
	$(BENCH_BIN)/crypto-bench

bench-transfer: venv bench-build
	$(BENCH_BIN)/transfer-bench $(BENCH_TRANSFER_ARGS)

# What routing costs per recording (document parse, rule evaluation, facts, route record).
bench-routing: bench-build
	$(BENCH_BIN)/routing-bench

# The sustained phase runs the real daemon (gc-archive stream), built with the same profile.
bench-stream: venv bench-build
	$(CARGO) build --profile bench-fast -p gc-archive-cli
	$(BENCH_BIN)/stream-bench $(BENCH_STREAM_ARGS)

# upload-proxy's presigned parts vs plain SDK uploads into moto, and the function's CPU per GiB
# (about 40 s; BENCH_UPLOAD_ARGS, e.g. --mib 64 --runs 1).
bench-upload: venv bench-build
	$(BENCH_BIN)/upload-bench $(BENCH_UPLOAD_ARGS)

# A 20,000-conversation backfill at 300 requests/min, killed three times (about 8 min).
bench-backfill: venv bench-build
	$(BENCH_BIN)/backfill-bench

coldstart: venv bench-build
	$(CARGO) lambda build --release --x86-64 $(LAMBDA_FUNCTIONS) --lambda-dir target/lambda-x86_64
	$(CARGO) lambda build --release --arm64 $(LAMBDA_FUNCTIONS) --lambda-dir target/lambda-arm64
	$(BENCH_BIN)/coldstart --python $(VENV)/bin/python
