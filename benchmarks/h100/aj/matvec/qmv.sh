#!/bin/bash
# Decode matvec sweeps (f32 and int8 paths), weights cold, with the same-bytes read probe.
B=.bench/webjit
for fmt in q4_k q6_k q8_0; do for n in 4096 14336; do
  $B bench qmatmul --format $fmt --m 1 --n $n --k 4096 --sweep --int8 --unchecked --min-ms 30 --cold-mib 512 --json >> $OUT/i8_cold512.jsonl 2>>$OUT/err.txt
  $B bench qmatmul --format $fmt --m 1 --n $n --k 4096 --sweep --unchecked --min-ms 30 --cold-mib 512 --json >> $OUT/f32_cold512.jsonl 2>>$OUT/err.txt
done; done
python3 - <<'P'
import json,os
O=os.environ['OUT']
for f in ['i8_cold512.jsonl','f32_cold512.jsonl']:
  for l in open(O+'/'+f):
    r=json.loads(l); res=[x for x in r['results'] if 'time_ms' in x]
    plain=[x for x in res if not x['config'].endswith('+quantize')]
    q=[x for x in res if x['config'].endswith('+quantize')]
    b=min(plain,key=lambda x:x['time_ms'])
    line=[f, r['format'], r['n'], b['config'].split('.m1.')[1], round(b['time_ms']*1e3,1), 'us', round(b['gbps']/r['read_gbps']*100,1), '% of', round(r['read_gbps']), '|', round(b['gbps']/r['read_same_bytes_gbps']*100,1), '% of same-bytes', round(r['read_same_bytes_gbps'])]
    if q:
      bq=min(q,key=lambda x:x['time_ms']); line+=['| +q', bq['config'].split('.m1.')[1], round(bq['time_ms']*1e3,1), round(bq['gbps']/r['read_gbps']*100,1), round(bq['gbps']/r['read_same_bytes_gbps']*100,1)]
    print(*line)
P
tail -2 $OUT/err.txt
