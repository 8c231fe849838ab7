#!/bin/bash
# device call D: u2f (no int-to-float conversions) binary .bench6 vs .bench5; sweeps incl. blk32x; llama.cpp build in bg
set -u
for f in .gl/*.deb; do dpkg -x $f / >/dev/null; done; ldconfig; export XDG_RUNTIME_DIR=/tmp
nvidia-smi -L
[ -x /tmp/llb/llama.cpp/build/bin/llama-bench ] || (nice -n 15 bash scripts/bench_llama_cpp_cuda.sh build > /tmp/llb-build.log 2>&1; echo "build rc $?" >> /tmp/llb-build.log) &
R=$OUT/results.txt
H8=.lb/hdr/llama-3.1-8b-instruct/header.bin
HG=.cache/llama/hdr/header.bin
bm() { local n=$1 b=$2 h=$3; shift 3
  timeout 100 $b bench model --synthetic-from $h --prompt-tokens 512 --gen-tokens 128 --json "$@" > /tmp/bm.json 2>/tmp/bm.err
  echo "$n $(python3 -c "import json;r=json.load(open('/tmp/bm.json'));print('pp',round(r['prefill_tok_s'],1),'tg',round(r['decode_tok_s'],1),r['run']['revision'])" 2>&1 | tail -1)" >> $R
  cat /tmp/bm.json >> $OUT/model.jsonl; echo >> $OUT/model.jsonl; tail -2 /tmp/bm.err >> $R; }
sw() { timeout 45 .bench6/webjit bench qmatmul --format $1 --m 1 --n $2 --k $3 --sweep --min-ms 6 --cold-mib 512 --json > /tmp/s.json 2>&1; python3 - $1 $2 $3 >> $R <<'PY'
import json,sys
r=json.load(open('/tmp/s.json')); res=sorted(r['results'],key=lambda x:x['time_ms'])
out=[f"{c['config'].split('.m1.')[1]} {c['time_ms']*1e3:.1f}" for p in ('blk32.','blk32x','f32mul','dot4i8') for c in [x for x in res if p in x['config']][:2]]
d=[f"{x['time_ms']*1e3:.1f}" for x in res if x['config']==r.get('default_config')]
print(sys.argv[1:], 'read_same_us', round(r['weight_bytes']/r['read_same_bytes_gbps']/1e3,1), 'default', r.get('default_config','?').split('.m1.')[-1], d, '|', ' | '.join(out))
PY
cat /tmp/s.json >> $OUT/sweeps.jsonl; echo >> $OUT/sweeps.jsonl; }
bm gemma-new .bench6/webjit $HG
bm gemma-old .bench5/webjit $HG
bm 8b-new .bench6/webjit $H8 --reps 2
bm 8b-old .bench5/webjit $H8 --reps 2
bm gemma-new2 .bench6/webjit $HG
for s in "q4_k 14336 4096" "q6_k 4096 14336" "q4_k 4096 4096" "iq2_xs 4096 4096" "iq2_xs 14336 4096" "q5_0 2048 640" "q4_k 2048 1024" "q8_0 262144 640"; do sw $s; done
timeout 100 .bench6/webjit bench model --synthetic-from $H8 --prompt-tokens 16 --gen-tokens 16 --reps 1 --profile > $OUT/8b-profile-new.txt 2>&1
timeout 60 .bench6/webjit bench model --synthetic-from $HG --prompt-tokens 16 --gen-tokens 16 --reps 1 --profile > $OUT/gemma-profile-new.txt 2>&1
wait; tail -2 /tmp/llb-build.log >> $R
cat $R
