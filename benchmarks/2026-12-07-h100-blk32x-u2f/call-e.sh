#!/bin/bash
set -u
for f in .gl/*.deb; do dpkg -x $f / >/dev/null; done; ldconfig; export XDG_RUNTIME_DIR=/tmp
R=$OUT/results.txt
sw() { local b=$1; shift; timeout 45 $b/webjit bench qmatmul --format $1 --m 1 --n $2 --k $3 --sweep --min-ms 6 --cold-mib 512 --json > /tmp/s.json 2>&1; python3 - $b $1 $2 $3 >> $R <<'PY'
import json,sys
r=json.load(open('/tmp/s.json')); res=sorted(r['results'],key=lambda x:x['time_ms'])
out=[f"{c['config'].split('.m1.')[1]} {c['time_ms']*1e3:.1f}" for p in ('blk32.','f32mul','dot4i8') for c in [x for x in res if p in x['config']][:2]]
print(sys.argv[1:], 'read_same_us', round(r['weight_bytes']/r['read_same_bytes_gbps']/1e3,1), '|', ' | '.join(out))
PY
cat /tmp/s.json >> $OUT/sweeps.jsonl; echo >> $OUT/sweeps.jsonl; }
for s in "q4_k 14336 4096" "q5_0 2048 640" "q6_k 4096 14336"; do sw .bench5 $s; sw .bench6 $s; done
ls /tmp/llb/llama.cpp/build/bin/llama-bench && cat $R
