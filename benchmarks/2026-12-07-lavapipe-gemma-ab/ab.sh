#!/usr/bin/env bash
# Interleaved old/new webjit builds (.bench/webjit-old, .bench/webjit-new), Gemma 3 270M pp64/tg16
# on weights synthesized from the header, 3 rounds. Usage: ab.sh OUT
OUT=${1:?out dir}
export XDG_RUNTIME_DIR=/tmp
H=.cache/llama/hdr/header.bin
for r in 1 2 3; do for b in old new; do
 ./.bench/webjit-$b bench model --synthetic-from $H --prompt-tokens 64 --gen-tokens 16 --json >"$OUT"/${b}_$r.json 2>"$OUT"/${b}_$r.err
 python3 -c "import json; d=json.load(open('$OUT/${b}_$r.json')); print('$b', $r, round(d['prefill_tok_s'],1), round(d['decode_tok_s'],2), d['dispatches_per_token'])"
done; done
