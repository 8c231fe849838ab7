#!/bin/bash
B=.bench/webjit; H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
WEBJIT_TUNING_FILE=.bench/t1/tuning.json $B $M --profile > $OUT/tuned_prof.json 2>>$OUT/err.txt
python3 - <<'P'
import json,os
r=json.loads(open(os.environ['OUT']+'/tuned_prof.json').readline())
p=r['profile']; print(r['decode_tok_s'], p['gpu_us_per_step'], p['gpu_us_per_step_shared_passes'])
for k in p['kernels']: print(k)
P
