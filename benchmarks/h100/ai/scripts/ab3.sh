#!/bin/bash
H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
for i in 1 2; do
  .bench/webjit_ks $M > $OUT/ks_$i.json 2>>$OUT/err.txt
  .bench/webjit $M > $OUT/f16_$i.json 2>>$OUT/err.txt
done
/usr/bin/time -f "tune wall %e s" env WEBJIT_TUNING_FILE=$OUT/tuning.json .bench/webjit tune --model $H --budget-s 30 --prompt-tokens 512 --unchecked --json > $OUT/tune.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning.json .bench/webjit $M > $OUT/f16tuned_1.json 2>>$OUT/err.txt
.bench/webjit bench model --synthetic-from $H --prompt-tokens 128 --gen-tokens 32 --unchecked --json > $OUT/f16_pp128.json 2>>$OUT/err.txt
.bench/webjit_ks bench model --synthetic-from $H --prompt-tokens 128 --gen-tokens 32 --unchecked --json > $OUT/ks_pp128.json 2>>$OUT/err.txt
python3 - <<'P'
import json,os,glob
O=os.environ['OUT']
t=json.load(open(O+'/tune.json')); print('tune', t['total_s'], t['geomean_speedup'])
for k in t['kernels']:
  if k['winner_key']!=k['default_key'] or 'qmatmul' in k['tune_key']: print(' ', k['tune_key'], k['default_key'].split('.',2)[-1], round(k['default_us'],1), k['winner_key'].split('.',2)[-1], round(k['tuned_us'],1), 'tried', k['tried'], 'rej', k['rejected'], 'skip', k['skipped'])
for f in sorted(glob.glob(O+'/*_[12].json'))+sorted(glob.glob(O+'/*pp128.json')):
  r=json.loads(open(f).readline()); print(os.path.basename(f), 'prefill', round(r['prefill_tok_s']), 'decode', round(r['decode_tok_s'],1))
P
grep wall $OUT/err.txt; tail -2 $OUT/err.txt
