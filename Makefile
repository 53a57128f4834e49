# bosh-rs: two commands matter — `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
# Build products live outside the clone so that CI's fresh clones reuse compiled dependencies.
export CARGO_TARGET_DIR ?= /var/tmp/bosh-rs-target
export CARGO_TERM_COLOR ?= never
BOSH_RS := $(CARGO_TARGET_DIR)/release/bosh-rs

.PHONY: demo test deps fmt-check clippy unit examples-test build bench

## demo: the main job — builds bosh-rs and runs the release-engineering flow on the example release
demo: deps build
	BOSH_RS=$(BOSH_RS) bash scripts/demo.sh

## test: installs what the tests need, then formatting, lints and every test
test: deps fmt-check clippy unit examples-test

deps:
	bash scripts/install-deps.sh

build:
	cargo build --release --workspace

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --all-targets --workspace -- -D warnings

unit:
	bash scripts/with-postgres.sh cargo test --workspace --no-fail-fast

examples-test:
	# smoke.sh also runs test/templates.sh (the ERB checks).
	bash examples/greeter-release/test/smoke.sh

## bench: every bench/*.sh into BENCHMARKS.md (~25 min on 2 cores), on the binaries built here
bench: deps build
	cargo build --profile agent -p bosh-agent
	BOSH_RS=$(BOSH_RS) bash bench/run.sh
