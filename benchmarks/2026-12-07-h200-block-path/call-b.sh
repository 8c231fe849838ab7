#!/bin/bash
# device call B: llama.cpp 8B Q4_K_M and IQ2_XS beside webjit (new); qmatvec sweeps; kivi2 attention
set -u
for f in .gl/*.deb; do dpkg -x $f / >/dev/null; done; ldconfig; export XDG_RUNTIME_DIR=/tmp
nvidia-smi -L; ls /tmp/llb/llama.cpp/build/bin/llama-bench || { echo NO LLAMA BUILD; }
R=$OUT/results.txt
HEADERS=.lb/hdr WEBJIT=.bench4/webjit WEBJIT_FLAGS="--memory-budget-gib 24" timeout 330 bash benchmarks/llm-families/run.sh $OUT/fam llama-3.1-8b-instruct-iq2_xs llama-3.1-8b-instruct >> $R 2>&1
W=.bench4/webjit
sw() { timeout 40 $W bench qmatmul --format $1 --m 1 --n $2 --k $3 --sweep --min-ms 8 --cold-mib 512 --json > /tmp/s.json 2>&1 && python3 - $1 $2 $3 >> $R <<'PY'
import json,sys
r=json.load(open('/tmp/s.json')); res=sorted(r['results'],key=lambda x:x['time_ms'])
best=lambda p:[x for x in res if p in x['config']][:1]
out=[f"{c['config'].split('.m1.')[1]} {c['time_ms']*1e3:.1f}" for p in ('blk32','f32mul','dot4i8') for c in best(p)]
d=[x for x in res if x['config']==r.get('default_config')]
print(sys.argv[1:], 'read_same_us', round(r['weight_bytes']/r['read_same_bytes_gbps']/1e3,1), '|', ' | '.join(out))
PY
cat /tmp/s.json >> $OUT/sweeps.jsonl; echo >> $OUT/sweeps.jsonl; }
for s in "q4_k 4096 4096" "q4_k 14336 4096" "q4_k 1024 4096" "q6_k 4096 14336" "q6_k 1024 4096" "q6_k 128256 4096" "iq2_xs 4096 4096" "iq2_xs 14336 4096" "iq3_s 4096 4096" "q4_0 4096 4096" "q8_0 2048 640" "q4_k 2048 1024" ; do sw $s; done
for n in 8192 32768; do for kv in f16 kivi2; do
  timeout 60 $W bench attention --decode --cache-len $n --heads 32 --kv-heads 8 --dim 128 --kv-dtype $kv --sweep --min-ms 30 --json > /tmp/a.json 2>&1
  echo "attn $kv $n $(python3 -c "import json;r=json.load(open('/tmp/a.json'));print(r.get('config'),round(r['time_ms']*1e3,1))" 2>&1|tail -1)" >> $R
  cat /tmp/a.json >> $OUT/attn.jsonl; echo >> $OUT/attn.jsonl
done; done
cat $R
