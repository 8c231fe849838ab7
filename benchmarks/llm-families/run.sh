#!/usr/bin/env bash
# On the GPU machine: for each model header written by scripts/write_llm_headers.py
# (.cache/llm-headers/<model>/), webjit `bench model` pp512/tg128 on weights synthesized from the
# header, then llama.cpp's CUDA llama-bench (pp512, tg128, -r 3) on a full file synthesized from
# the same header, in the same run. Prints one line per model; the JSONs go to
# OUT/webjit.jsonl and OUT/llama.jsonl (one line per model each: the device returns few files).
#
#   WEBJIT=.bench/webjit bash benchmarks/llm-families/run.sh OUT [MODEL ...]   # default: all
#
# llama.cpp must be built first (bash scripts/bench_llama_cpp_cuda.sh build); without it, or
# with LLAMA=0, only webjit runs. Extra webjit flags: WEBJIT_FLAGS (e.g. --unchecked).
set -u
out=${1:?usage: run.sh OUT [MODEL ...]}
shift
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
W=${WEBJIT:-./target/release/webjit}
H=${HEADERS:-.cache/llm-headers}
LB=/tmp/llb/llama.cpp/build/bin/llama-bench
models=("$@")
[ ${#models[@]} -gt 0 ] || models=($(ls "$H"))
mkdir -p "$out"
printf '%-24s %-7s %10s %10s %10s %10s %8s\n' model arch webjit_pp webjit_tg llama_pp llama_tg tg_ratio
for m in "${models[@]}"; do
  wj=/tmp/llmfam-webjit.json; lj=/tmp/llmfam-llama.json
  rm -f "$wj" "$lj"
  # shellcheck disable=SC2086
  if ! "$W" bench model --synthetic-from "$H/$m/header.bin" --prompt-tokens 512 --gen-tokens 128 \
      --json ${WEBJIT_FLAGS:-} >"$wj" 2>/tmp/llmfam-webjit.err; then
    { echo "== $m webjit"; tail -5 /tmp/llmfam-webjit.err; } >>"$out/errors.txt"
    rm -f "$wj"
  fi
  if [ "${LLAMA:-1}" = 1 ] && [ -x "$LB" ]; then
    bash scripts/bench_llama_cpp_cuda.sh run /tmp "$H/$m" "$(basename "$lj")" 2>/tmp/llmfam-llama.err ||
      { { echo "== $m llama.cpp"; tail -5 /tmp/llmfam-llama.err; } >>"$out/errors.txt"; rm -f "$lj"; }
  fi
  python3 - "$m" "$wj" "$lj" "$out" <<'PY'
import json, os, sys
m, wj, lj, out = sys.argv[1:]
w = json.load(open(wj)) if os.path.exists(wj) else None
l = json.load(open(lj)) if os.path.exists(lj) else None
if w:
    open(os.path.join(out, "webjit.jsonl"), "a").write(json.dumps({"name": m, **w}) + "\n")
if l:
    open(os.path.join(out, "llama.jsonl"), "a").write(json.dumps({"name": m, "runs": l}) + "\n")
lp = next((t["avg_ts"] for t in l or [] if t.get("n_prompt") == 512 and t.get("n_gen") == 0), None)
lt = next((t["avg_ts"] for t in l or [] if t.get("n_gen") == 128 and t.get("n_prompt") == 0), None)
f = lambda v: f"{v:10.1f}" if v else f"{'-':>10s}"
wp, wt = (w["prefill_tok_s"], w["decode_tok_s"]) if w else (None, None)
r = f"{wt / lt:8.2f}" if wt and lt else f"{'-':>8s}"
print(f"{m:24s} {(w or {}).get('architecture', 'failed'):7s} {f(wp)} {f(wt)} {f(lp)} {f(lt)} {r}")
PY
done
