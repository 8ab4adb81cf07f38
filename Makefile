# provision — set-up, demo, tests, benchmarks.
# Needs only the Rust toolchain and Python 3; everything else is installed here.

VENV       ?= .venv
PYTHON     ?= python3
MOTO       := $(VENV)/bin/moto_server
PINS       := tests/support/requirements.txt
CARGO      ?= cargo
# At most this many moto servers at once in the integration tests (2 on CI's 2 cores).
IT_MAX_EMULATORS ?= 3
IT_ENV      = MOTO_SERVER=$(CURDIR)/$(MOTO) IT_MAX_EMULATORS=$(IT_MAX_EMULATORS)

.PHONY: all build venv venv-install registry-tools demo test test-unit test-it test-images test-crash lint fmt bench bench-images clean-demo

all: build

build:
	$(CARGO) build

# The local AWS emulator (moto in server mode) and its client, pinned in $(PINS), in a
# project venv. A venv holding anything else than the pins (another moto) is reinstalled.
venv:
	@$(VENV)/bin/python tests/support/check_pins.py $(PINS) 2>/dev/null \
		|| $(MAKE) --no-print-directory venv-install

venv-install:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r $(PINS)
	$(VENV)/bin/python tests/support/check_pins.py $(PINS)

# The main job against a local emulator: init/plan/apply/show/output/artifacts/destroy (k3s).
demo: venv build registry-tools
	PYTHON=$(VENV)/bin/python MOTO_SERVER=$(MOTO) ./scripts/demo.sh

# Every test: unit tests (engine, config, render, state) and the integration binary that
# drives the real `provision` against moto.
test: venv registry-tools
	$(IT_ENV) $(CARGO) test --all-targets

# The `images` tests run real registries and an independent client: Debian's
# docker-registry (distribution 2.8) and skopeo. Installed here when missing (as root);
# otherwise this says exactly what is needed and fails.
registry-tools:
	@missing=""; \
	test -x /usr/bin/docker-registry || missing="$$missing docker-registry"; \
	command -v skopeo >/dev/null 2>&1 || missing="$$missing skopeo"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing$$missing for the images tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; \
		else \
			echo "error: the images tests need$$missing: run  sudo apt-get install -y$$missing  (Debian/Ubuntu), then make test again" >&2; \
			exit 1; \
		fi; \
	fi

test-images: registry-tools
	$(CARGO) test --test images

test-unit:
	$(CARGO) test --lib --no-default-features

test-it: venv
	$(IT_ENV) $(CARGO) test --test it

# The slow tests: the full crash sweep (SIGKILL the real binary after every mutating call
# of an apply, a destroy, a scale-down and a private-zone apply; `make test` runs a
# sample) and replies lost at random.
# The filter must select tests: libtest runs none and passes when it matches nothing.
CRASH_FILTER ?= crash_sweep slow_
test-crash: venv
	@n=$$($(IT_ENV) $(CARGO) test --test it -- --ignored --list $(CRASH_FILTER) | grep -c ': test$$'); \
	if [ "$$n" -lt 1 ]; then \
		echo "make test-crash: the filter '$(CRASH_FILTER)' selects no ignored test in tests/it" >&2; \
		exit 1; \
	fi; \
	echo "make test-crash: $$n tests ($(CRASH_FILTER))"
	$(IT_ENV) $(CARGO) test --test it -- --ignored --nocapture $(CRASH_FILTER)

lint:
	$(PYTHON) scripts/check-features.py
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The engine at 3/10/50 nodes under the latency model, then the model in front of moto and
# the release binary (BENCHMARKS.md); each exits 1 when a target is missed. The engine
# bench goes first: it leaves a release binary without the `aws` feature, which the
# `cargo build --release` after it replaces.
bench: venv
	$(CARGO) bench --no-default-features --bench engine -- scale
	$(CARGO) build --release
	PYTHON=$(VENV)/bin/python MOTO_SERVER=$(MOTO) ./scripts/bench.sh

# Filling a registry: `provision images` against skopeo, both pulling through a model of a
# far source (40 ms round trips, 8 MB/s per connection, 60 MB/s link) and pushing into a
# fresh local docker-registry (BENCHMARKS.md "## Images"); exits 1 when a target is missed.
# `provision images` needs no AWS SDK: the release build without it is enough (and fast);
# it leaves target/release/provision without the `aws` feature (`make bench` rebuilds it).
# Needs skopeo, docker-registry, curl and openssl (apt-get install skopeo docker-registry).
bench-images:
	$(CARGO) build --release --no-default-features
	PYTHON=$(PYTHON) ./scripts/bench-images.sh

clean-demo:
	rm -rf demo
