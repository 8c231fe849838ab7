#!/bin/bash
H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
for i in 3 4; do
  .bench/webjit $M > $OUT/f16_$i.json 2>>$OUT/err.txt
  .bench/webjit_ks $M > $OUT/ks_$i.json 2>>$OUT/err.txt
done
python3 - <<'P'
import json,os,glob
O=os.environ['OUT']
for f in sorted(glob.glob(O+'/*_[34].json')):
  r=json.loads(open(f).readline()); print(os.path.basename(f), 'prefill', round(r['prefill_tok_s']), 'decode', round(r['decode_tok_s'],1))
P
