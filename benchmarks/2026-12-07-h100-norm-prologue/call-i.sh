#!/bin/bash
# device call I (lean F+G): webjit norm prologue on/off (WEBJIT_NORM_PROLOGUE) while llama.cpp builds, then llama.cpp CUDA on the same headers
set -u
T0=$(date +%s)
for f in .gl/*.deb; do dpkg -x $f / >/dev/null; done; ldconfig; export XDG_RUNTIME_DIR=/tmp
nvidia-smi -L > $OUT/results.txt
[ -x /tmp/llb/llama.cpp/build/bin/llama-bench ] || (nice -n 15 bash scripts/bench_llama_cpp_cuda.sh build > /tmp/llb-build.log 2>&1; echo "build rc $?" >> /tmp/llb-build.log) &
R=$OUT/results.txt
HG=.cache/llama/hdr/header.bin
bm() { local n=$1 v=$2 h=$3; shift 3
  WEBJIT_NORM_PROLOGUE=$v timeout 60 .bench7/webjit bench model --synthetic-from $h --prompt-tokens 512 --gen-tokens 128 --json "$@" > /tmp/bm.json 2>/tmp/bm.err
  echo "$n prologue=$v $(python3 -c "import json;r=json.load(open('/tmp/bm.json'));print('pp',round(r['prefill_tok_s'],1),'tg',round(r['decode_tok_s'],1),'disp',r.get('dispatches_per_token'),r['run']['revision'])" 2>&1 | tail -1)" >> $R
  cat /tmp/bm.json >> $OUT/model.jsonl; echo >> $OUT/model.jsonl; tail -2 /tmp/bm.err >> $R; }
bm gemma 1 $HG; bm gemma 0 $HG; bm gemma 1 $HG; bm gemma 0 $HG
for m in qwen2.5-0.5b-instruct llama-3.2-1b-instruct; do
  bm $m 1 .cache/llm-headers/$m/header.bin; bm $m 0 .cache/llm-headers/$m/header.bin
done
timeout 40 .bench7/webjit bench model --synthetic-from $HG --prompt-tokens 16 --gen-tokens 16 --reps 1 --profile > $OUT/gemma-profile-on.txt 2>&1
WEBJIT_NORM_PROLOGUE=0 timeout 40 .bench7/webjit bench model --synthetic-from $HG --prompt-tokens 16 --gen-tokens 16 --reps 1 --profile > $OUT/gemma-profile-off.txt 2>&1
echo "webjit done at $(( $(date +%s) - T0 )) s" >> $R
while [ ! -x /tmp/llb/llama.cpp/build/bin/llama-bench ] && [ $(( $(date +%s) - T0 )) -lt 330 ]; do sleep 5; done
tail -2 /tmp/llb-build.log >> $R; echo "build done at $(( $(date +%s) - T0 )) s" >> $R
timeout 60 bash scripts/bench_llama_cpp_cuda.sh run $OUT >> $R 2>&1
for m in qwen2.5-0.5b-instruct llama-3.2-1b-instruct; do
  [ $(( $(date +%s) - T0 )) -lt 420 ] && timeout 50 bash scripts/bench_llama_cpp_cuda.sh run $OUT .cache/llm-headers/$m llama-$m.json >> $R 2>&1
done
python3 - $OUT >> $R <<'PY'
import json,sys,glob,os
for f in sorted(glob.glob(sys.argv[1]+'/*.json')):
    try: d=json.load(open(f))
    except Exception as e: print(f, 'unreadable', e); continue
    if isinstance(d,list): print(os.path.basename(f), [(x.get('n_prompt'),x.get('n_gen'),round(x.get('avg_ts',0),1)) for x in d])
PY
echo "all done at $(( $(date +%s) - T0 )) s" >> $R
cat $R; head -3 $OUT/gemma-profile-on.txt $OUT/gemma-profile-off.txt
