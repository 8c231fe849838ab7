#!/bin/bash
B=.bench/webjit; H=.bench/gemma.header
for mode in bounds,loops,div none bounds bounds,div loops div; do
  echo "== $mode" >> $OUT/err.txt
  WEBJIT_SHADER_CHECKS=$mode $B bench attention --seq 4096 --heads 8 --dim 128 --causal --json > $OUT/attn_$mode.json 2>>$OUT/err.txt
  WEBJIT_SHADER_CHECKS=$mode $B bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --json > $OUT/model_$mode.json 2>>$OUT/err.txt
done
python3 - <<'P'
import json,os,glob
O=os.environ['OUT']
for f in sorted(glob.glob(O+'/attn_*.json')):
  try:
    r=json.load(open(f)); print(os.path.basename(f), {k:v for k,v in r.items() if isinstance(v,(int,float,str))})
  except Exception as e: print(f, e)
for f in sorted(glob.glob(O+'/model_*.json')):
  try:
    r=json.load(open(f)); print(os.path.basename(f), round(r['decode_tok_s'],1), round(r['prefill_tok_s']))
  except Exception as e: print(f, e)
P
tail -5 $OUT/err.txt
