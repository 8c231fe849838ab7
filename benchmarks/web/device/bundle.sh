#!/bin/bash
# Packs what bench_minilm.mjs needs on a bare GPU machine (no node, no Chromium, no models, no
# network) into one tar.xz split into chunks that each fit one device call's carry:
#   chromium/       /usr/lib/chromium's runtime files (no validation layer, no mock ICD)
#   chromium/lib/   every non-glibc shared library Chromium loads (ldd of the binary + what it
#                   dlopens here), libstdc++/libgcc_s apart in chromium/lib-cxx/ (run.sh uses them
#                   only where the machine has none: a newer system copy is the better one)
#   node/node       /usr/bin/node
#   web-tools/node_modules/playwright-core
#   bench-tools/node_modules/onnxruntime-web   package.json + the dist files the bench loads
#   cache/models/all-MiniLM-L6-v2/             the model dir (WEBJIT_CACHE layout)
#   cache/onnx/all-MiniLM-L6-v2.onnx.skel      the ONNX export less its weights (onnx_skeleton.py)
# Chunks go to ROOT/.dev1, ROOT/.dev2, ... (ignored through .git/info/exclude), each with the
# chunk file part-NN and, in .dev1, SHA256SUMS of the whole archive.
#   benchmarks/web/device/bundle.sh [CHUNK_MB (default 58: a chunk plus the ~5 MB tree stays under the 64 MiB carry)]
# Env: WEBJIT_WEB_TOOLS, WEBJIT_BENCH_TOOLS, WEBJIT_CACHE as in bench_minilm.mjs; XZ_LEVEL (default
# 9; 6 packs the Chromium bundle in a fraction of the time for a few MB more), CHUNK_DIR_PREFIX
# (default .dev: the chunk folders are .dev1, .dev2, ...).
# BUNDLE_KIND=gemma packs what bench_gemma_gpu.mjs needs instead of the onnxruntime/MiniLM files:
#   pkg/          the npm package (WEBJIT_PKG_DIR, default web/pkg)
#   bin/webjit    the release CLI (WEBJIT_CLI, default target/release/webjit), stripped
#   wllama/       @wllama/wllama's package.json + esm/ (WEBJIT_WLLAMA_DIR, as bench_gemma_gpu.mjs)
#   REVISION      the commit they were built from (BUNDLE_REVISION, default this checkout's HEAD)
# and the Gemma GGUF (already compressed data) travels uncompressed after the archive: the chunk
# files are b-NN (the archive) and m-NN (the model, m-00 filling the last archive chunk), with
# SHA256SUMS of wb.tar.xz and the model in .dev1; run_gemma.sh joins them.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
CHUNK_MB=${1:-58}
TOOLS=${WEBJIT_WEB_TOOLS:-$ROOT/.cache/web-tools}
BENCH_TOOLS=${WEBJIT_BENCH_TOOLS:-$ROOT/.cache/bench-tools}
CACHE=${WEBJIT_CACHE:-$HOME/.cache/webjit}
CR=/usr/lib/chromium
KIND=${BUNDLE_KIND:-minilm}
XZ_LEVEL=${XZ_LEVEL:-9}
PFX=${CHUNK_DIR_PREFIX:-.dev}
WORK=${BUNDLE_WORK:-/tmp/webjit-device-bundle}
S=$WORK/wb
rm -rf "$WORK"
mkdir -p "$S/chromium/lib" "$S/chromium/lib-cxx" "$S/chromium/locales" "$S/node" "$S/web-tools/node_modules" "$S/cache/models"

# Chromium's own files.
for f in chromium chrome_crashpad_handler chrome_100_percent.pak chrome_200_percent.pak resources.pak \
  icudtl.dat snapshot_blob.bin v8_context_snapshot.bin libEGL.so libGLESv2.so libvulkan.so.1 \
  libvk_swiftshader.so vk_swiftshader_icd.json; do
  cp -a "$CR/$f" "$S/chromium/"
done
cp -a "$CR/locales/en-US.pak" "$S/chromium/locales/"

# Shared libraries: ldd (recursive) of everything, plus the few Chromium dlopens at run time.
is_glibc() {
  case "$1" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libresolv.so.*|libutil.so.*|ld-linux*|linux-vdso*|libanl.so.*|libnss_*) return 0 ;;
  esac
  return 1
}
libs=$( (for f in "$S/chromium/chromium" "$S/chromium/chrome_crashpad_handler" "$S/chromium/libvk_swiftshader.so" \
            /lib/x86_64-linux-gnu/libxcb-dri3.so.0 /lib/x86_64-linux-gnu/libwayland-client.so.0; do
          ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
        done
        echo /lib/x86_64-linux-gnu/libxcb-dri3.so.0 /lib/x86_64-linux-gnu/libwayland-client.so.0) | tr ' ' '\n' | sort -u)
n=0
for p in $libs; do
  b=$(basename "$p")
  is_glibc "$b" && continue
  case "$b" in
    libstdc++.so.*|libgcc_s.so.*) cp -L "$p" "$S/chromium/lib-cxx/$b" ;;
    *) cp -L "$p" "$S/chromium/lib/$b" ;;
  esac
  n=$((n + 1))
done
if ldd "$S/chromium/chromium" | grep -q 'not found'; then echo "bundle: chromium has unresolved libraries" >&2; exit 1; fi
echo "bundle: $n shared libraries"

cp -a /usr/bin/node "$S/node/node"
cp -a "$TOOLS/node_modules/playwright-core" "$S/web-tools/node_modules/"

if [ "$KIND" = gemma ]; then
  PKG=${WEBJIT_PKG_DIR:-$ROOT/web/pkg}
  CLI=${WEBJIT_CLI:-$ROOT/target/release/webjit}
  WL=${WEBJIT_WLLAMA_DIR:-$ROOT/benchmarks/web/gemma/node_modules/@wllama/wllama}
  [ -f "$PKG/wasm/webjit_web_bg.wasm" ] || { echo "bundle: $PKG is not a built package" >&2; exit 1; }
  [ -f "$WL/esm/wasm/wllama.wasm" ] || { echo "bundle: no wllama at $WL" >&2; exit 1; }
  mkdir -p "$S/bin" "$S/wllama"
  cp -a "$PKG" "$S/pkg"
  strip -o "$S/bin/webjit" "$CLI"
  cp -a "$WL/package.json" "$WL/esm" "$S/wllama/"
  # The commit the package and the CLI were built from (run_gemma.sh reports it).
  echo "${BUNDLE_REVISION:-$(git -C "$ROOT" rev-parse --short HEAD)}" > "$S/REVISION"
else
mkdir -p "$S/bench-tools/node_modules/onnxruntime-web/dist" "$S/cache/onnx"
# onnxruntime-web: the wasm EP (ort.wasm.min.mjs -> ort-wasm-simd-threaded.{mjs,wasm}) and the
# webgpu EP (ort.webgpu.min.mjs -> ort-wasm-simd-threaded.asyncify.{mjs,wasm}).
ORT=$BENCH_TOOLS/node_modules/onnxruntime-web
cp -a "$ORT/package.json" "$S/bench-tools/node_modules/onnxruntime-web/"
for f in ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm \
  ort.webgpu.min.mjs ort-wasm-simd-threaded.asyncify.mjs ort-wasm-simd-threaded.asyncify.wasm; do
  cp -a "$ORT/dist/$f" "$S/bench-tools/node_modules/onnxruntime-web/dist/"
done

cp -a "$CACHE/models/all-MiniLM-L6-v2" "$S/cache/models/"
python3 "$HERE/onnx_skeleton.py" split "$CACHE/onnx/all-MiniLM-L6-v2.onnx" \
  "$CACHE/models/all-MiniLM-L6-v2/model.safetensors" "$S/cache/onnx/all-MiniLM-L6-v2.onnx.skel"
fi

du -sh "$S"/*
echo "bundle: compressing (xz -$XZ_LEVEL)..."
tar -C "$WORK" -cf - wb | nice xz -"$XZ_LEVEL" -T0 > "$WORK/wb.tar.xz"
ls -la "$WORK/wb.tar.xz"
rm -rf "$ROOT/$PFX"[0-9]*
if [ "$KIND" = gemma ]; then
  GGUF=$CACHE/models/gemma-3-270m-q4_k_m.gguf
  split -b "${CHUNK_MB}M" -d -a 2 "$WORK/wb.tar.xz" "$WORK/b-"
  # m-00 fills what the last archive chunk leaves of CHUNK_MB; the rest of the model follows.
  room=$((CHUNK_MB * 1048576 - $(stat -c %s "$(ls "$WORK"/b-* | tail -1)")))
  head -c "$room" "$GGUF" > "$WORK/m-00"
  tail -c +$((room + 1)) "$GGUF" | split -b "${CHUNK_MB}M" -d -a 2 --numeric-suffixes=1 - "$WORK/m-"
  nb=$(ls "$WORK"/b-* | wc -l)
  i=1
  for p in "$WORK"/b-* "$WORK"/m-*; do
    case "$p" in */m-00) d=$nb ;; *) d=$i; i=$((i + 1)) ;; esac
    mkdir -p "$ROOT/$PFX$d"
    mv "$p" "$ROOT/$PFX$d/"
    grep -qx "/$PFX$d/" "$ROOT/.git/info/exclude" || echo "/$PFX$d/" >> "$ROOT/.git/info/exclude"
  done
  { (cd "$WORK" && sha256sum wb.tar.xz); (cd "$(dirname "$GGUF")" && sha256sum "$(basename "$GGUF")"); } > "$ROOT/${PFX}1/SHA256SUMS"
else
  split -b "${CHUNK_MB}M" -d -a 2 "$WORK/wb.tar.xz" "$WORK/part-"
  i=1
  for p in "$WORK"/part-*; do
    mkdir -p "$ROOT/$PFX$i"
    mv "$p" "$ROOT/$PFX$i/"
    grep -qx "/$PFX$i/" "$ROOT/.git/info/exclude" || echo "/$PFX$i/" >> "$ROOT/.git/info/exclude"
    i=$((i + 1))
  done
  (cd "$WORK" && sha256sum wb.tar.xz) > "$ROOT/${PFX}1/SHA256SUMS"
fi
ls -la "$ROOT/$PFX"[0-9]*
