#!/bin/bash
B=.bench/webjit; H=.bench/gemma.header
A="bench attention --seq 4096 --heads 8 --dim 128 --causal --fma --json"
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --json"
for rep in 1 2; do
  $B $A > $OUT/attn_default_$rep.json 2>>$OUT/err.txt
  WEBJIT_LOOP_BOUNDING=1 $B $A > $OUT/attn_loopb_$rep.json 2>>$OUT/err.txt
  $B $A --unchecked > $OUT/attn_unchecked_$rep.json 2>>$OUT/err.txt
  $B $M >> $OUT/model_default.json 2>>$OUT/err.txt
  WEBJIT_LOOP_BOUNDING=1 $B $M >> $OUT/model_loopb.json 2>>$OUT/err.txt
  $B $M --unchecked >> $OUT/model_unchecked.json 2>>$OUT/err.txt
done
python3 - <<'P'
import json,os,glob
O=os.environ['OUT']
for f in sorted(glob.glob(O+'/attn_*.json')):
    r=json.load(open(f)); print(os.path.basename(f), r['config'], round(r['time_ms'],3), round(r['gflops']), r.get('fma_gflops'), r.get('fraction_of_fma'))
for f in sorted(glob.glob(O+'/model_*.json')):
  for l in open(f):
    r=json.loads(l); print(os.path.basename(f), round(r['decode_tok_s'],1), round(r['prefill_tok_s']))
P
tail -3 $OUT/err.txt
