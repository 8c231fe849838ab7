#!/usr/bin/env bash
# Builds the npm package `webjit` into web/pkg/ (a build output, gitignored):
#   release wasm (webjit-web) -> wasm-bindgen --target web -> wasm-opt -O3 -> + web/js/* -> web/pkg/
# Idempotent: every tool is checked before it is installed, and the npm tools (wasm-opt from
# binaryen@132, playwright-core for the browser tests) live in a cache dir keyed by the
# committed lock file (web/tools/package-lock.json), so a second run installs nothing.
#
# Env: WEBJIT_WEB_TOOLS (npm tools dir, default .cache/web-tools), WEBJIT_WASM_OPT=0 skips
# wasm-opt (debugging only).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BINDGEN_VERSION=0.2.130
TOOLS=${WEBJIT_WEB_TOOLS:-$ROOT/.cache/web-tools}
PKG=$ROOT/web/pkg
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WASM_IN=$TARGET_DIR/wasm32-unknown-unknown/release/webjit_web.wasm

log() { echo "build-web: $*"; }

# 1. Toolchain: the wasm target and the wasm-bindgen CLI matching the crate's pin exactly (the
#    CLI refuses modules made by another version of the macro).
if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  rustup target add wasm32-unknown-unknown
fi
if ! grep -q "wasm-bindgen = \"=$BINDGEN_VERSION\"" Cargo.toml; then
  log "Cargo.toml no longer pins wasm-bindgen =$BINDGEN_VERSION: update BINDGEN_VERSION here" >&2
  exit 1
fi
have_bindgen=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have_bindgen" != "$BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli $BINDGEN_VERSION (found: ${have_bindgen:-none})"
  # Without --locked: that is the install verified to work with this toolchain.
  cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION" --force
fi

# 2. npm tools, `npm ci` into the cache dir when the lock file changed.
command -v npm >/dev/null || { log "npm is missing (apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$TOOLS"
stamp=$TOOLS/.lock.sha256
want=$(sha256sum web/tools/package-lock.json | awk '{print $1}')
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$TOOLS/node_modules" ]; then
  log "npm ci (binaryen, playwright-core) into $TOOLS"
  cp web/tools/package.json web/tools/package-lock.json "$TOOLS/"
  (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi
WASM_OPT=$TOOLS/node_modules/.bin/wasm-opt

# 3. The release wasm (incremental: cargo rebuilds only what changed).
log "cargo build --release --target wasm32-unknown-unknown -p webjit-web"
cargo build --release --target wasm32-unknown-unknown -p webjit-web

# 4. Bindings into a staging dir, then the package is assembled atomically-enough: a failed
#    build never leaves a half-written web/pkg behind.
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/webjit-pkg.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/wasm"
wasm-bindgen --target web --out-dir "$STAGE/wasm" --out-name webjit_web "$WASM_IN"

if [ "${WEBJIT_WASM_OPT:-1}" != 0 ]; then
  # The features rustc >= 1.82 emits for wasm32-unknown-unknown by default; wasm-opt must
  # accept them and must not introduce any others (browsers differ beyond these).
  before=$(stat -c %s "$STAGE/wasm/webjit_web_bg.wasm")
  "$WASM_OPT" -O3 \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$STAGE/wasm/webjit_web_bg.wasm" -o "$STAGE/wasm/webjit_web_bg.opt.wasm"
  mv "$STAGE/wasm/webjit_web_bg.opt.wasm" "$STAGE/wasm/webjit_web_bg.wasm"
  after=$(stat -c %s "$STAGE/wasm/webjit_web_bg.wasm")
  log "wasm-opt -O3: $before -> $after bytes"
fi

cp web/js/*.js web/js/*.d.ts "$STAGE/"
cp web/README.md "$STAGE/README.md"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
LICENSE=$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@LICENSE@/$LICENSE/" web/js/package.json.in >"$STAGE/package.json"
rm -f "$STAGE/wasm/.gitignore" "$STAGE/wasm/package.json"

rm -rf "$PKG"
mkdir -p "$(dirname "$PKG")"
cp -r "$STAGE" "$PKG"
chmod -R a+rX "$PKG"
log "web/pkg: $(du -sh "$PKG" | awk '{print $1}') ($(ls "$PKG" | tr '\n' ' '))"
