#!/bin/bash
# On the GPU machine, from the repo root: Gemma 3 270M in Chromium against the native CLI and
# wllama (bench_gemma_gpu.mjs), from the chunks of `BUNDLE_KIND=gemma bundle.sh` (see README.md).
# Each call copies the chunk folders it carries (CHUNK_DIR_PREFIX, default .dev: .dev1, .dev2,
# ...) to $CHUNKS (default /tmp/chunks: ignored folders do not stay between calls, /tmp does
# while the machine is held), unpacks the archive once all of it is there, and joins the model
# once all of it is there.
#   benchmarks/web/device/run_gemma.sh copy    only copy the carried chunks
#   benchmarks/web/device/run_gemma.sh probe   + unpack, then probe.mjs with each flag set of
#                                              PROBE_SETS: the adapter and its features
#                                              (shader-f16: Dawn hides it on NVIDIA Vulkan unless
#                                              the vulkan_enable_f16_on_nvidia toggle is on)
#   benchmarks/web/device/run_gemma.sh bench   + join the model, then bench_gemma_gpu.mjs with the
#                                              flags A (BENCH_ARGS; native, webjit, wllama CPU) and
#                                              floor.mjs (Chromium's cost of D dispatches + a
#                                              readback, D = the decode step's dispatches)
#   benchmarks/web/device/run_gemma.sh f16     bench_gemma_gpu.mjs with A + the f16 toggle: webjit
#                                              (tokens checked against the bench call's native
#                                              run) and wllama's WebGPU build (needs shader-f16)
# To $OUT: run.log, probes.txt, gpu.txt (chrome://gpu), $DATE-$GPU-chromium-gemma{,-f16}.json,
# $DATE-$GPU-chromium-floor.json.
# Env: BENCH_ARGS (default: --pp 128,512 --tg 128 --reps 3 --profile), BENCH_TIMEOUT (s, 420),
# DATE (default today, UTC), GPU_TAG, CHROME_FLAGS (instead of A; "" for SwiftShader in a dry run).
set -u
MODE=${1:-bench}
OUT=${OUT:-/tmp/out}
W=${WB:-/tmp/wb}   # WB (ending in /wb) + SKIP_GL=1: a dry run elsewhere
CHUNKS=${CHUNKS:-/tmp/chunks}
PFX=${CHUNK_DIR_PREFIX:-.dev}
DATE=${DATE:-$(date -u +%F)}
GGUF=gemma-3-270m-q4_k_m.gguf
mkdir -p "$OUT" "$CHUNKS"
LOG=$OUT/run.log
say() { echo "run_gemma.sh: $*" | tee -a "$LOG"; }

for d in "$PFX"[0-9]*; do [ -d "$d" ] && cp "$d"/* "$CHUNKS"/ && say "copied $d: $(ls "$d" | tr '\n' ' ')"; done
[ "$MODE" = copy ] && exit 0

# --- Vulkan loader + NVIDIA ICD (as run.sh) --------------------------------------------------
if [ -z "${SKIP_GL:-}" ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export XDG_RUNTIME_DIR=/tmp
for j in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$j" ]; then export VK_DRIVER_FILES=$j VK_ICD_FILENAMES=$j; break; fi
done
[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$LOG"
GPU=${GPU_TAG:-$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr 'A-Z' 'a-z' | grep -o 'h[0-9][0-9]*' | head -1)}
GPU=${GPU:-gpu}

# --- unpack the archive ----------------------------------------------------------------------
if [ ! -f $W/.unpacked ]; then
  want=$(grep ' wb.tar.xz$' "$CHUNKS/SHA256SUMS" | cut -d' ' -f1)
  got=$(cat "$CHUNKS"/b-* | sha256sum | cut -d' ' -f1)
  [ "$want" = "$got" ] || { say "FAIL: archive sha256 $got, want $want (chunks: $(ls "$CHUNKS" | tr '\n' ' '))"; exit 1; }
  rm -rf $W
  if command -v xz >/dev/null; then
    cat "$CHUNKS"/b-* | xz -dc | tar -C "$(dirname $W)" -xf - || { say "FAIL: unpack"; exit 1; }
  else
    cat "$CHUNKS"/b-* | python3 -c 'import lzma,sys,tarfile; tarfile.open(fileobj=lzma.open(sys.stdin.buffer), mode="r|").extractall(sys.argv[1])' "$(dirname $W)" || { say "FAIL: unpack"; exit 1; }
  fi
  touch $W/.unpacked
  say "unpacked $(du -sh $W | cut -f1)"
fi
export LD_LIBRARY_PATH=$W/chromium/lib
if [ ! -e /usr/lib/x86_64-linux-gnu/libstdc++.so.6 ] && [ ! -e /lib/x86_64-linux-gnu/libstdc++.so.6 ]; then LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$W/chromium/lib-cxx; fi
export PATH=$W/node:$PATH
export WEBJIT_CHROMIUM=$W/chromium/chromium WEBJIT_WEB_TOOLS=$W/web-tools WEBJIT_CACHE=$W/cache \
  WEBJIT_PKG_DIR=$W/pkg WEBJIT_WLLAMA_DIR=$W/wllama WEBJIT_REVISION=$(cat $W/REVISION)
say "revision $WEBJIT_REVISION; node $(node --version); $($WEBJIT_CHROMIUM --version 2>&1 | tail -1)"

A=${CHROME_FLAGS-"--use-angle=vulkan --enable-features=Vulkan --disable-vulkan-surface --ignore-gpu-blocklist"}
F16="--enable-dawn-features=vulkan_enable_f16_on_nvidia"
if [ "$MODE" = probe ]; then
  # Which flags give shader-f16: the bench's set, + the Dawn toggle, + allow_unsafe_apis too,
  # + Chrome's WebGPU developer features (no toggle).
  SETS=("$A" "$A $F16" "$A --enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia" "$A --enable-webgpu-developer-features")
  [ -n "${PROBE_SETS:-}" ] && IFS='|' read -r -a SETS <<< "$PROBE_SETS"
  i=0
  for s in "${SETS[@]}"; do
    i=$((i + 1))
    say "probe $i: $s"
    WEBJIT_CHROMIUM_EXTRA_ARGS="$s" PROBE_TIMEOUT_S=30 timeout 90 node benchmarks/web/device/probe.mjs \
      $([ $i -le 2 ] && echo --gpu-txt /tmp/gpu-$i.txt) --out /tmp/probe-$i.json > /dev/null 2> /tmp/probe-$i.err
    { echo "=== probe $i: $s"; cat /tmp/probe-$i.json 2>/dev/null || tail -20 /tmp/probe-$i.err; } >> "$OUT/probes.txt"
    [ -f /tmp/gpu-$i.txt ] && { echo "=== probe $i: $s"; grep -a -v -e '^(Vulkan' /tmp/gpu-$i.txt | head -600; } >> "$OUT/gpu.txt"
    say "probe $i: $(node -e 'const p=require(process.argv[1]).page||{};console.log(JSON.stringify({adapters:(p.requests||[]).map(q=>q.adapter&&q.adapter.vendor),f16:(p.features||[]).includes("shader-f16"),dispatch:p.dispatch}))' /tmp/probe-$i.json 2>&1)"
  done
  exit 0
fi

# --- the model -------------------------------------------------------------------------------
M=$W/cache/models/$GGUF
if [ ! -f "$M" ]; then
  mkdir -p "$(dirname "$M")"
  cat "$CHUNKS"/m-* > "$M.part"
  want=$(grep " $GGUF\$" "$CHUNKS/SHA256SUMS" | cut -d' ' -f1)
  got=$(sha256sum "$M.part" | cut -d' ' -f1)
  [ "$want" = "$got" ] || { say "FAIL: model sha256 $got, want $want (chunks: $(ls "$CHUNKS" | tr '\n' ' '))"; rm -f "$M.part"; exit 1; }
  mv "$M.part" "$M"
fi

# --- bench -----------------------------------------------------------------------------------
set -o pipefail
read -r -a BA <<< "${BENCH_ARGS:---pp 128,512 --tg 128 --reps 3 --profile}"
PRE=(--import ./benchmarks/web/device/gpu_warmup.mjs)
J=$OUT/$DATE-$GPU-chromium-gemma.json
if [ "$MODE" = bench ]; then
  say "bench: ${BA[*]} with '$A'"
  WEBJIT_CHROMIUM_EXTRA_ARGS="$A" timeout ${BENCH_TIMEOUT:-420} node "${PRE[@]}" benchmarks/web/bench_gemma_gpu.mjs "${BA[@]}" --cli $W/bin/webjit --out "$J" 2>&1 >/dev/null | tee -a "$LOG"
  say "exit $?"
  cp "$J" /tmp/last-gemma.json 2>/dev/null
  D=$(node -e 'try{const r=require(process.argv[1]);console.log(r.webjit[r.pp[0]].engine_stats[1].dispatchesPerToken)}catch(e){console.log(176)}' "$J")
  say "floor: $D dispatches"
  WEBJIT_CHROMIUM_EXTRA_ARGS="$A" timeout 90 node "${PRE[@]}" benchmarks/web/device/floor.mjs --runs 200 --dispatches "$D" --out "$OUT/$DATE-$GPU-chromium-floor.json" 2>&1 | tail -5 | tee -a "$LOG"
elif [ "$MODE" = f16 ]; then
  # webjit again with shader-f16 (tokens checked against the native run of the bench call,
  # kept in /tmp/last-gemma.json) and wllama's WebGPU build, which needs shader-f16.
  say "bench f16: ${BA[*]} with '$A $F16'"
  WEBJIT_CHROMIUM_EXTRA_ARGS="$A $F16" timeout ${BENCH_TIMEOUT:-420} node "${PRE[@]}" benchmarks/web/bench_gemma_gpu.mjs "${BA[@]}" --native-from /tmp/last-gemma.json --wllama-gpu-only --cli $W/bin/webjit --out "$OUT/$DATE-$GPU-chromium-gemma-f16.json" 2>&1 >/dev/null | tee -a "$LOG"
  say "exit $?"
fi
