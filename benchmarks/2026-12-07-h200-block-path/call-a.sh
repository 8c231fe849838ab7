#!/bin/bash
# device call A: llama.cpp build (bg); 8B Q4_K_M and Gemma decode, old (.bench3) vs new (.bench4)
set -u
for f in .gl/*.deb; do dpkg -x $f / >/dev/null; done; ldconfig; export XDG_RUNTIME_DIR=/tmp
nvidia-smi -L
[ -x /tmp/llb/llama.cpp/build/bin/llama-bench ] || (nice -n 15 bash scripts/bench_llama_cpp_cuda.sh build > /tmp/llb-build.log 2>&1; echo "build rc $?" >> /tmp/llb-build.log) &
R=$OUT/results.txt
H8=.lb/hdr/llama-3.1-8b-instruct/header.bin
HG=.cache/llama/hdr/header.bin
bm() { # name bin header extra...
  local n=$1 b=$2 h=$3; shift 3
  timeout 200 $b bench model --synthetic-from $h --prompt-tokens 512 --gen-tokens 128 --json "$@" > /tmp/bm.json 2>/tmp/bm.err
  echo "$n $(python3 -c "import json;r=json.load(open('/tmp/bm.json'));print('pp',round(r['prefill_tok_s'],1),'tg',round(r['decode_tok_s'],1),'disp',r.get('dispatches_per_token'),r.get('run',{}).get('revision'))" 2>&1 | tail -1)" >> $R
  cat /tmp/bm.json >> $OUT/model.jsonl; echo >> $OUT/model.jsonl; tail -2 /tmp/bm.err >> $OUT/errors.txt
}
bm gemma-new .bench4/webjit $HG
bm gemma-old .bench3/webjit $HG
bm 8b-new .bench4/webjit $H8 --memory-budget-gib 24 --reps 2
bm 8b-old .bench3/webjit $H8 --memory-budget-gib 24 --reps 2
bm gemma-new2 .bench4/webjit $HG
timeout 150 .bench4/webjit bench model --synthetic-from $H8 --prompt-tokens 16 --gen-tokens 16 --reps 1 --memory-budget-gib 24 --profile > $OUT/8b-profile-new.txt 2>&1
timeout 120 .bench4/webjit bench model --synthetic-from $HG --prompt-tokens 16 --gen-tokens 16 --reps 1 --profile > $OUT/gemma-profile-new.txt 2>&1
wait; tail -2 /tmp/llb-build.log >> $R
cat $R; head -30 $OUT/8b-profile-new.txt
