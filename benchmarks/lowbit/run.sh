#!/usr/bin/env bash
# The low-bit weight formats' decode matvec against a streaming read of the same bytes, in one run
# on one device (issue 27 item 5): for each format and N in {4096, 14336} (K = 4096), the best
# config of the f32 path and of the int8 path (`--int8`; formats without one say so), weights
# cycled over 512 MiB of copies so they come from memory. One JSON line per run in OUT/matvec.jsonl,
# failures in OUT/errors.txt, and a table on stdout.
#
#   WEBJIT=target/release/webjit bash benchmarks/lowbit/run.sh OUT [FORMAT ...]
#
# Default checks on the shaders (what users get); WEBJIT_FLAGS=--unchecked for the other view.
# PATHS="f32" skips the --int8 runs (the f32 sweep's space holds the int8 configs too, so its best
# is the best of both); MIN_MS (default 30) is each config's minimum timing.
set -u
out=${1:?usage: run.sh OUT [FORMAT ...]}
shift
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
W=${WEBJIT:-./target/release/webjit}
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(q4_0 q4_k iq4_nl iq4_xs mxfp4 tq1_0 tq2_0 iq2_xxs iq2_xs iq2_s iq3_xxs iq3_s iq1_s iq1_m)
mkdir -p "$out"
printf '%-8s %6s %-5s %10s %9s %9s\n' format n path time_us of_same of_256mib
for f in "${formats[@]}"; do
  for n in 4096 14336; do
    for path in ${PATHS:-f32 int8}; do
      flag=; [ $path = int8 ] && flag=--int8
      # shellcheck disable=SC2086
      if "$W" bench qmatmul --format "$f" --m 1 --n "$n" --k 4096 --sweep $flag --min-ms "${MIN_MS:-30}" \
          --cold-mib 512 --json ${WEBJIT_FLAGS:-} >/tmp/lowbit.json 2>/tmp/lowbit.err; then
        python3 - "$f" "$n" "$path" "$out" <<'PY'
import json, sys
f, n, path, out = sys.argv[1:]
r = json.load(open("/tmp/lowbit.json"))
open(f"{out}/matvec.jsonl", "a").write(json.dumps({"path": path, **r}) + "\n")
same = r["gbps"] / r["read_same_bytes_gbps"] if r.get("read_same_bytes_gbps") else None
print(f"{f:8s} {n:>6s} {path:5s} {r['time_ms'] * 1e3:10.1f} {same:9.1%} {r['fraction_of_read']:9.1%}")
PY
      else
        { echo "== $f n=$n $path"; tail -3 /tmp/lowbit.err; } >>"$out/errors.txt"
        printf '%-8s %6s %-5s %s\n' "$f" "$n" "$path" "failed: $(tail -1 /tmp/lowbit.err | cut -c1-90)"
      fi
    done
  done
done
