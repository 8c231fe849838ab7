#!/usr/bin/env bash
# The decode matvec's exact paths side by side at Llama-3.1-8B's shapes, in one process per
# shape: the best config of each path (f32mul, f16mul, blk32, blk32x, lanes8) from one
# `bench qmatmul --m 1 --sweep --cold-mib 512` (weights cycled over 512 MiB of copies, so they
# come from memory), with a 256 MiB streaming read first. Written for the lane path
# (`Path::Lanes`, 2026-12-08), which has not been timed on a GPU yet: if it beats blk32 here,
# make it the default for Q4_K and Q6_K (QMatvecSpec::default_config) and rerun
# benchmarks/llm-families/run.sh.
#
#   WEBJIT=target/release/webjit bash benchmarks/qmatvec-paths/run.sh OUT
#
# OUT gets read.json, sweep-<format>-<n>x<k>.json (every config's time) and a table on stdout.
set -u
out=${1:?usage: run.sh OUT}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
W=${WEBJIT:-./target/release/webjit}
mkdir -p "$out"
"$W" bench read --mib 256 --json >"$out/read.json" 2>&1
for shape in "q4_k 14336 4096" "q6_k 4096 14336" "q4_k 4096 4096" "q6_k 128256 4096"; do
  set -- $shape
  f="$out/sweep-$1-$2x$3.json"
  if ! timeout 200 "$W" bench qmatmul --format "$1" --n "$2" --k "$3" --m 1 --sweep \
      --cold-mib 512 --min-ms "${MIN_MS:-30}" --json >"$f" 2>"$f.err"; then
    echo "$1 $2x$3: failed: $(tail -1 "$f.err" | cut -c1-100)"
    continue
  fi
  python3 - "$f" "$1 $2x$3" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
best = {}
for r in sorted((r for r in d["results"] if "time_ms" in r), key=lambda r: r["time_ms"]):
    best.setdefault(r["config"].split(".")[3], r)
print(sys.argv[2] + ": " + ", ".join(
    f"{p} {r['time_ms'] * 1e3:.1f} us ({r['config'].split('f32acc.')[-1]})" for p, r in best.items()))
PY
done
