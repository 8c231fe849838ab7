# webjit: `make test` sets up and runs every check; `make demo` sets up and runs the demo.
SHELL := /bin/bash
export XDG_RUNTIME_DIR ?= /tmp
CARGO ?= cargo

.PHONY: setup test demo lint fmt build bench-matmul

setup:
	@scripts/setup.sh

## Format check, clippy (warnings denied, native and wasm32), then every test.
test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p webjit-web --target wasm32-unknown-unknown -- -D warnings
	$(CARGO) test --workspace

## For now: build the CLI and show the device webjit runs on, then a small matmul benchmark.
demo: setup
	$(CARGO) build --release -p webjit-cli
	./target/release/webjit info
	./target/release/webjit bench matmul --m 512 --n 512 --k 512

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release -p webjit-cli

bench-matmul: build
	./target/release/webjit bench matmul --m 1024 --n 1024 --k 1024 --json
