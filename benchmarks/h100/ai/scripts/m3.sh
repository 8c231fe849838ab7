#!/bin/bash
B=.bench/webjit; H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
s() { python3 -c "
import json
for l in open('$1'):
    r=json.loads(l); print('$1'.split('/')[-1], 'decode', round(r['decode_tok_s'],1), 'prefill', round(r['prefill_tok_s']), 'disp', r.get('dispatches_per_token'), 'gpu_us', r.get('gpu_step_us'), 'host', round(r.get('overhead_submit_ms_per_token',0),3))
"; }
$B $M > $OUT/untuned.json 2>>$OUT/err.txt
$B $M >> $OUT/untuned.json 2>>$OUT/err.txt
$B $M --profile > $OUT/untuned_prof.json 2>>$OUT/err.txt
/usr/bin/time -f "tune wall %e s" env WEBJIT_TUNING_FILE=$OUT/tuning.json $B tune --model $H --budget-s 30 --prompt-tokens 512 --unchecked --json > $OUT/tune.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning.json $B $M > $OUT/tuned.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning.json $B $M >> $OUT/tuned.json 2>>$OUT/err.txt
$B $M >> $OUT/untuned.json 2>>$OUT/err.txt
for f in untuned untuned_prof tuned; do s $OUT/$f.json; done
tail -5 $OUT/err.txt
