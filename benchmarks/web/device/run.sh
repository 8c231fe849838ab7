#!/bin/bash
# On the GPU machine, from the repo root, once bundle.sh's chunks have arrived (.dev1, .dev2, ...
# carried one a call and each copied to /tmp/chunks, since ignored folders do not stay between
# calls; .gl and web/pkg carried with the last one): unpack the bundle into /tmp/wb, rebuild the
# ONNX file, point Vulkan at the NVIDIA ICD, then
#   1. probe.mjs once for each candidate flag set (WEBJIT_CHROMIUM_EXTRA_ARGS), scored by
#      whether requestAdapter() gives NVIDIA and a compute dispatch runs on it; the best set wins
#   2. bench_minilm.mjs with that set (preloaded with gpu_warmup.mjs unless GPU_WARMUP=0),
#      cross-origin isolated and with --no-isolation
# What it keeps goes to $OUT: run.log, probes.txt, chromium-stderr.txt, gpu.txt (chrome://gpu of
# each set), gpu-warmup.jsonl and $DATE-$GPU-chromium-{isolated,no-isolation}.json
# (DATE default 2026-11-23; GPU from nvidia-smi's name, e.g. h100, or GPU_TAG).
#   benchmarks/web/device/run.sh [probe|bench|all (default)] [bench_minilm.mjs args...]
#   benchmarks/web/device/run.sh floor [floor.mjs args...]   (CHOSEN_ARGS set: the latency floor only)
# Env: CHOSEN_ARGS (skip the probes, use these flags), EXTRA_SETS ('|'-separated flag sets),
# WB + SKIP_GL=1 (a dry run here, the bundle unpacked into WB, which must end in /wb).
set -u
MODE=${1:-all}
shift || true
R=$(pwd)
OUT=${OUT:-/tmp/out}
DATE=${DATE:-2026-11-23}
W=${WB:-/tmp/wb}   # WB and SKIP_GL=1: a local dry run (the bundle unpacked elsewhere)
mkdir -p "$OUT"
LOG=$OUT/run.log
say() { echo "run.sh: $*" | tee -a "$LOG"; }

# --- Vulkan loader + NVIDIA ICD ------------------------------------------------------------
if [ -z "${SKIP_GL:-}" ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export XDG_RUNTIME_DIR=/tmp
for j in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$j" ]; then export VK_DRIVER_FILES=$j VK_ICD_FILENAMES=$j; break; fi
done
[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
say "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
[ -n "${VK_DRIVER_FILES:-}" ] && cat "$VK_DRIVER_FILES" >> "$LOG"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$LOG"
# The result files are named by the GPU the machine really has (h100, h200, ...).
GPU=${GPU_TAG:-$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr 'A-Z' 'a-z' | grep -o 'h[0-9][0-9]*' | head -1)}
GPU=${GPU:-gpu}

# --- unpack ----------------------------------------------------------------------------------
if [ ! -f $W/.unpacked ]; then
  # Ignored folders do not stay between device calls: each call's chunk is copied to
  # $CHUNKS (default /tmp/chunks, outside the tree) as it arrives, e.g. with
  #   mkdir -p /tmp/chunks && cp .dev*/* /tmp/chunks/
  CHUNKS=${CHUNKS:-/tmp/chunks}
  mkdir -p "$CHUNKS"
  for d in .dev*; do [ -d "$d" ] && cp "$d"/* "$CHUNKS"/; done
  parts=$(ls "$CHUNKS"/part-* | sort)
  say "parts: $(echo $parts)"
  want=$(cut -d' ' -f1 "$CHUNKS"/SHA256SUMS)
  got=$(cat $parts | sha256sum | cut -d' ' -f1)
  [ "$want" = "$got" ] || { say "FAIL: bundle sha256 $got, want $want (a chunk is missing?)"; exit 1; }
  rm -rf $W
  if command -v xz >/dev/null; then
    cat $parts | xz -dc | tar -C "$(dirname $W)" -xf - || { say "FAIL: unpack"; exit 1; }
  else
    cat $parts | python3 -c 'import lzma,sys,tarfile; tarfile.open(fileobj=lzma.open(sys.stdin.buffer), mode="r|").extractall(sys.argv[1])' "$(dirname $W)" || { say "FAIL: unpack"; exit 1; }
  fi
  python3 benchmarks/web/device/onnx_skeleton.py join $W/cache/onnx/all-MiniLM-L6-v2.onnx.skel \
    $W/cache/models/all-MiniLM-L6-v2/model.safetensors $W/cache/onnx/all-MiniLM-L6-v2.onnx 2>&1 | tee -a "$LOG"
  [ -f $W/cache/onnx/all-MiniLM-L6-v2.onnx ] || { say "FAIL: onnx join"; exit 1; }
  touch $W/.unpacked
fi

export LD_LIBRARY_PATH=$W/chromium/lib
if [ ! -e /usr/lib/x86_64-linux-gnu/libstdc++.so.6 ] && [ ! -e /lib/x86_64-linux-gnu/libstdc++.so.6 ]; then LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$W/chromium/lib-cxx; say "using the bundle's libstdc++"; fi
export PATH=$W/node:$PATH
export WEBJIT_CHROMIUM=$W/chromium/chromium WEBJIT_WEB_TOOLS=$W/web-tools WEBJIT_BENCH_TOOLS=$W/bench-tools WEBJIT_CACHE=$W/cache
say "node $(node --version); $(ldd $WEBJIT_CHROMIUM | grep -c 'not found') unresolved libs; $($WEBJIT_CHROMIUM --version 2>&1 | tail -1)"
ldd $WEBJIT_CHROMIUM | grep 'not found' | tee -a "$LOG"

# --- probes ----------------------------------------------------------------------------------
# Seen on an H200 (gVisor): without --enable-features=Vulkan Dawn offers SwiftShader only (even
# though chrome://gpu lists the H200 as a Vulkan adapter); with it (set 1) every request but the
# browser's first gets the NVIDIA adapter. force-low-power (set 4) got null throughout.
A="--use-angle=vulkan --enable-features=Vulkan --disable-vulkan-surface --ignore-gpu-blocklist"
SETS=(
  "$A"
  "--enable-features=Vulkan --ignore-gpu-blocklist"
  "$A --use-webgpu-power-preference=force-high-performance"
  "$A --use-webgpu-power-preference=force-low-power"
)
if [ -n "${EXTRA_SETS:-}" ]; then IFS='|' read -r -a SETS <<< "$EXTRA_SETS"; fi
# Score of a probe: 4 if a 'high-performance' request (webjit's) got NVIDIA, 2 if a plain
# request (bench_page.js's) did, 1 if the compute dispatch ran right on NVIDIA.
SCORE='const p=(()=>{try{return require(process.argv[1]).page||{}}catch(e){return {}}})();
const nv=(pref)=>(p.requests||[]).some((q)=>q.pref===pref&&q.adapter&&/nvidia/i.test(q.adapter.vendor));
const d=/nvidia/i.test(p.dispatch_on||"")&&Array.isArray(p.dispatch)&&p.dispatch[3]===22;
console.log((nv("high-performance")?4:0)+(nv("default")?2:0)+(d?1:0));'
CHOSEN=${CHOSEN_ARGS:-}
if [ "$MODE" != bench ] && [ -z "$CHOSEN" ]; then
  i=0
  best=0
  for s in "${SETS[@]}"; do
    i=$((i + 1))
    say "probe $i: $s"
    WEBJIT_CHROMIUM_EXTRA_ARGS="$s" DEBUG=pw:browser PROBE_TIMEOUT_S=30 timeout 90 node benchmarks/web/device/probe.mjs \
      --gpu-txt /tmp/gpu-$i.txt --out /tmp/probe-$i.json > /dev/null 2> /tmp/probe-$i.err
    { echo "=== probe $i: $s"; cat /tmp/probe-$i.json 2>/dev/null; } >> "$OUT/probes.txt"
    { echo "=== probe $i: $s"; grep -a -v -e 'dbus' -e 'DBus' -e 'DevTools listening' -e 'TextRunHarfBuzz' -e 'find any font' /tmp/probe-$i.err | sed 's/^.*\[err\] //' | cut -c1-400 | tail -80; } >> "$OUT/chromium-stderr.txt"
    { echo "=== probe $i: $s"; grep -a -v -e '^(Vulkan' /tmp/gpu-$i.txt 2>/dev/null | head -400; } >> "$OUT/gpu.txt"
    sc=$(node -e "$SCORE" /tmp/probe-$i.json)
    say "probe $i: score $sc (4: high-performance NVIDIA, 2: default NVIDIA, 1: dispatch on NVIDIA ok)"
    if [ "$sc" -gt "$best" ]; then best=$sc; CHOSEN=$s; fi
  done
  if [ $((best % 2)) -ne 1 ]; then say "no flag set ran a dispatch on an NVIDIA adapter"; CHOSEN=; fi
fi
[ "$MODE" = probe ] && exit 0
if [ "$MODE" = floor ]; then
  # The browser's latency floor for a small GPU job (floor.mjs), with the chosen flags.
  WEBJIT_CHROMIUM_EXTRA_ARGS="$CHOSEN" timeout 240 node benchmarks/web/device/floor.mjs "$@" --out "$OUT/$DATE-$GPU-chromium-floor.json" 2>&1 | tail -40 | tee -a "$LOG"
  exit 0
fi
[ -z "$CHOSEN" ] && { say "FAIL: no flag set gave an NVIDIA WebGPU adapter; not benchmarking"; exit 1; }

# --- bench -----------------------------------------------------------------------------------
export WEBJIT_CHROMIUM_EXTRA_ARGS="$CHOSEN"
say "bench with WEBJIT_CHROMIUM_EXTRA_ARGS='$CHOSEN'"
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--engines webjit,ort-wasm,ort-webgpu --batch 1 32 --min-s 5)
set -o pipefail
# gpu_warmup.mjs: one throw-away requestAdapter() page first (the first request of a fresh
# browser answered null on the H200); GPU_WARMUP=0 leaves it out.
NODE_PRE=()
[ "${GPU_WARMUP:-1}" != 0 ] && NODE_PRE=(--import ./benchmarks/web/device/gpu_warmup.mjs) && export GPU_WARMUP_LOG=$OUT/gpu-warmup.jsonl
say "bench isolated: ${ARGS[*]}"
timeout 240 node "${NODE_PRE[@]}" benchmarks/web/bench_minilm.mjs "${ARGS[@]}" --out "$OUT/$DATE-$GPU-chromium-isolated.json" 2>&1 >/dev/null | tee -a "$LOG"
say "exit $?"
say "bench no-isolation: ${ARGS[*]} --no-isolation"
timeout 240 node "${NODE_PRE[@]}" benchmarks/web/bench_minilm.mjs "${ARGS[@]}" --no-isolation --out "$OUT/$DATE-$GPU-chromium-no-isolation.json" 2>&1 >/dev/null | tee -a "$LOG"
say "exit $?"
