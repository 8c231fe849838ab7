#!/bin/bash
B=.bench/webjit
for s in "q4_k 640 2048" "q6_k 640 2048" "q4_k 640 1024" "q5_0 256 640" "q5_0 1024 640" "q5_0 2048 640" "q8_0 256 640"; do
  set -- $s
  $B bench qmatmul --format $1 --m 512 --n $2 --k $3 --sweep --unchecked --min-ms 10 --json > $OUT/sweep_$1_$2_$3.json 2>>$OUT/err.txt
done
python3 - <<'P'
import json,os,glob
O=os.environ['OUT']
for f in sorted(glob.glob(O+'/sweep_*.json')):
  r=json.loads(open(f).read())
  rows=sorted(r['results'],key=lambda x:x['time_ms'])
  by={x['config'].split('f32acc.')[-1] if 'f32mul' in x['config'] else 'h'+x['config'].split('f32acc.')[-1]:x['time_ms']*1000 for x in rows}
  print(os.path.basename(f), 'fma', round(r['fma_gflops']), 'top:', [(x['config'].split('.',2)[-1].replace('f32acc.',''), round(x['time_ms']*1000,1)) for x in rows[:4]])
  print('    t32.r4x4', round(by.get('t32x32x16.r4x4',0),1), 't16.r2x2', round(by.get('t16x16x16.r2x2',0),1), 'ks2 t32 r4x4', round(by.get('t32x32x16.r4x4.ks2',0),1), 'ks4 t32 r4x4', round(by.get('t32x32x16.r4x4.ks4',0),1), 'ks4 t16 r2x2', round(by.get('t16x16x16.r2x2.ks4',0),1))
P
tail -3 $OUT/err.txt
