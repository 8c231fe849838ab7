#!/bin/bash
H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
for i in 1 2 3; do
  .bench/webjit_nofuse $M > $OUT/nofuse_$i.json 2>>$OUT/err.txt
  .bench/webjit $M > $OUT/fuse_$i.json 2>>$OUT/err.txt
done
python3 - <<'P'
import json,os,glob
O=os.environ['OUT']
for f in sorted(glob.glob(O+'/*fuse_*.json')):
  r=json.loads(open(f).readline()); print(os.path.basename(f), round(r['decode_tok_s'],1), round(r['prefill_tok_s']), r['dispatches_per_token'], round(r['decode_ms_per_token'],4))
P
tail -3 $OUT/err.txt
