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

venv: $(VENV)/.ok

demo: venv
	$(CARGO) run -q -p gc-archive-cli -- demo

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: venv
	$(CARGO) test --workspace

lint: venv
	cfn-lint template.yaml
	sam validate --lint

test: venv fmt clippy unit lint

# Lambda artifacts for deployment (arm64, provided.al2023), as `sam build` produces them.
build: venv
	$(CARGO) lambda build --release --arm64

clean-venv:
	rm -rf $(VENV)
