#!/bin/bash
B=.bench/webjit; H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
$B $M > $OUT/untuned.json 2>>$OUT/err.txt
/usr/bin/time -f "tune wall %e s" env WEBJIT_TUNING_FILE=$OUT/tuning.json $B tune --model $H --budget-s 30 --prompt-tokens 512 --unchecked --json > $OUT/tune.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning.json $B $M > $OUT/tuned.json 2>>$OUT/err.txt
$B $M >> $OUT/untuned.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning.json $B $M >> $OUT/tuned.json 2>>$OUT/err.txt
python3 - <<'P'
import json,os
O=os.environ['OUT']
t=json.load(open(O+'/tune.json')); print('tune', t['total_s'], t['geomean_speedup'])
for k in t['kernels']:
  print(' ', k['tune_key'], k['default_key'].split('.',2)[-1], round(k['default_us'],1), k['winner_key'].split('.',2)[-1], round(k['tuned_us'],1), 'tried', k['tried'], 'rej', k['rejected'], 'skip', k['skipped'])
for f in ['untuned','tuned']:
  for l in open(O+'/'+f+'.json'):
    r=json.loads(l); print(f, 'prefill', round(r['prefill_tok_s']), 'decode', round(r['decode_tok_s'],1))
P
grep wall $OUT/err.txt; tail -2 $OUT/err.txt
