#!/bin/bash
B=.bench/webjit; H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
for t in none lm_i8a lm_i8b lm_i8c lm_f32w32 none lm_i8a; do
  if [ $t = none ]; then F=/tmp/none.json; else F=.bench/$t.json; fi
  WEBJIT_TUNING_FILE=$F $B $M --profile > /tmp/r.json 2>>$OUT/err.txt
  python3 -c "
import json,sys
r=json.load(open('/tmp/r.json'))
p=r['profile']
lm=[k for k in p['kernels'] if 'q8_0' in k['key'] and 'n262144' not in k['key']]
top=sorted(p['kernels'],key=lambda k:-k['us'])[:4]
print('$t', 'decode', round(r['decode_tok_s'],1), 'prefill', round(r['prefill_tok_s']), 'gpu_step', round(p['gpu_us_per_step_shared_passes'],1), 'host', r.get('overhead_submit_ms_per_token'), [(k['key'][:50],k['count'],round(k['us'],1)) for k in top])
" | tee -a $OUT/lm.txt
done
