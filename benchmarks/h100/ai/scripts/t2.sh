#!/bin/bash
B=.bench/webjit; H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
/usr/bin/time -f "tune wall %e s" env WEBJIT_TUNING_FILE=$OUT/tuning.json $B tune --model $H --budget-s 30 --prompt-tokens 512 --unchecked --json > $OUT/tune.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning.json $B $M --profile > $OUT/tuned_prof.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning.json $B $M > $OUT/tuned.json 2>>$OUT/err.txt
$B $M > $OUT/untuned.json 2>>$OUT/err.txt
python3 - <<'P'
import json,os
O=os.environ['OUT']
t=json.load(open(O+'/tune.json')); print('tune', t['total_s'], t['geomean_speedup'])
for k in t['kernels']: print(k['tune_key'], k['default_key'].split('.')[-3:], round(k['default_us'],1), k['winner_key'].split('.')[-3:], round(k['tuned_us'],1))
for f in ['tuned_prof','tuned','untuned']:
  r=json.loads(open(O+'/'+f+'.json').readline()); print(f, r['decode_tok_s'], r['prefill_tok_s'])
p=json.loads(open(O+'/tuned_prof.json').readline())['profile']
print(p['gpu_us_per_step'], p['gpu_us_per_step_shared_passes'])
for k in p['kernels']: print(k)
P
tail -3 $OUT/err.txt
