#!/bin/bash
B=.bench/webjit; H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
$B $M > $OUT/untuned.json 2>>$OUT/err.txt
$B $M --profile > $OUT/prof.json 2>>$OUT/err.txt
$B $M >> $OUT/untuned.json 2>>$OUT/err.txt
python3 - <<'P'
import json,os
O=os.environ['OUT']
for l in open(O+'/untuned.json'):
  r=json.loads(l); print('untuned', r['decode_tok_s'], r['prefill_tok_s'], r['dispatches_per_token'])
r=json.loads(open(O+'/prof.json').readline()); p=r['profile']
print('prof', r['decode_tok_s'], p['gpu_us_per_step'], p['gpu_us_per_step_shared_passes'])
for k in p['kernels']: print(k)
P
tail -3 $OUT/err.txt
