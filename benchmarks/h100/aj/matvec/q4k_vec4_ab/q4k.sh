#!/bin/bash
# Q4_K int8 matvec: before (one sub-block per step) vs after (nibble pairs), weights cold.
for round in 1 2; do
for bin in webjit_old webjit; do for n in 14336 4096; do
  .bench/$bin bench qmatmul --format q4_k --m 1 --n $n --k 4096 --sweep --int8 --unchecked --min-ms 30 --cold-mib 512 --json >> $OUT/${bin}_unchecked.jsonl 2>>$OUT/err.txt
done; done
for n in 14336 4096; do
  .bench/webjit bench qmatmul --format q4_k --m 1 --n $n --k 4096 --sweep --int8 --min-ms 30 --cold-mib 512 --json >> $OUT/webjit_default.jsonl 2>>$OUT/err.txt
done
done
python3 - <<'P'
import json,os,glob
O=os.environ['OUT']
for f in sorted(glob.glob(O+'/*.jsonl')):
  for l in open(f):
    r=json.loads(l)
    res=r['results']
    plain=[x for x in res if not x['config'].endswith('+quantize') and 'i8' in x['config']]
    q=[x for x in res if x['config'].endswith('+quantize')]
    b=min(plain,key=lambda x:x['time_ms']); bq=min(q,key=lambda x:x['time_ms'])
    rd=r['read_gbps']
    print(os.path.basename(f), r['n'], b['config'].split('dot4i8.')[1], round(b['time_ms']*1e3,1), 'us', round(b['gbps']/rd*100,1), '%', '| +quant', bq['config'].split('dot4i8.')[1], round(bq['time_ms']*1e3,1), round(bq['gbps']/rd*100,1), '% read', round(rd))
P
tail -2 $OUT/err.txt
