# provision — set-up, demo, tests, benchmarks.
# Needs only the Rust toolchain and Python 3; everything else is installed here.

VENV       ?= .venv
PYTHON     ?= python3
MOTO       := $(VENV)/bin/moto_server
CARGO      ?= cargo

.PHONY: all build venv demo test test-unit test-it lint fmt bench clean-demo

all: build

build:
	$(CARGO) build

# The local AWS emulator (moto in server mode), in a project venv.
venv: $(MOTO)
$(MOTO):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet 'moto[server]' boto3

# The main job against a local emulator: init/plan/apply/show/output/artifacts/destroy (k3s).
demo: venv build
	PYTHON=$(VENV)/bin/python MOTO_SERVER=$(MOTO) ./scripts/demo.sh

# Every test: unit tests (engine, config, render, state) and the integration binary that
# drives the real `provision` against moto.
test: venv
	MOTO_SERVER=$(CURDIR)/$(MOTO) $(CARGO) test --all-targets

test-unit:
	$(CARGO) test --lib --no-default-features

test-it: venv
	MOTO_SERVER=$(CURDIR)/$(MOTO) $(CARGO) test --test it

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: venv
	$(CARGO) build --release
	PYTHON=$(VENV)/bin/python MOTO_SERVER=$(MOTO) ./scripts/bench.sh

clean-demo:
	rm -rf demo
