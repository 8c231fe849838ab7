#!/usr/bin/env bash
# On the device machine: old and new webjit builds, Gemma 3 270M pp512/tg128 on synthesized
# weights, interleaved; llama.cpp CUDA between them when built. Usage: ab.sh OUT ROUNDS [llama]
set -u
out=$1; rounds=$2
export XDG_RUNTIME_DIR=/tmp
H=.cache/llama/hdr/header.bin
for r in $(seq 1 "$rounds"); do
  for b in old new; do
    ./.bench/webjit-$b bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --json \
      >"$out/${b}_$r.json" 2>"$out/${b}_$r.err" || echo "$b $r failed"
    python3 -c "import json,sys; d=json.load(open('$out/${b}_$r.json')); print('$b', $r, round(d['prefill_tok_s']), round(d['decode_tok_s'],1), d['dispatches_per_token'])"
  done
  if [ "${3:-}" = llama ] && [ "$r" = 1 ]; then
    bash scripts/bench_llama_cpp_cuda.sh run "$out" && python3 -c "
import json; d=json.load(open('$out/llama_bench.json'))
for t in d: print('llama.cpp', t.get('n_prompt'), t.get('n_gen'), round(t['avg_ts'],1), round(t['stddev_ts'],1))"
  fi
done
