#!/bin/bash
# On the device machine, one call (carry .gl .bench3 .cache/llama .lb; .bench3/webjit = the
# stripped release CLI, .lb/hdr = scripts/write_llm_headers.py headers incl. --ftype iq2_xs): llama.cpp CUDA build in the background while the codebook matvec sweeps run;
# then Llama-3.1-8B IQ2_XS (synthesized) webjit vs llama.cpp CUDA.
set -u
for f in .gl/*.deb; do dpkg -x $f / >/dev/null; done; ldconfig; export XDG_RUNTIME_DIR=/tmp
nvidia-smi -L
(nice -n 15 bash scripts/bench_llama_cpp_cuda.sh build > /tmp/llb-build.log 2>&1; echo "build rc $?" >> /tmp/llb-build.log) &
W=.bench3/webjit
WEBJIT=$W PATHS=f32 MIN_MS=15 timeout 200 bash benchmarks/lowbit/run.sh $OUT/lowbit iq2_xs iq2_xxs iq3_s q4_0
wait; tail -2 /tmp/llb-build.log
HEADERS=.lb/hdr WEBJIT=$W WEBJIT_FLAGS="--memory-budget-gib 24" timeout 200 bash benchmarks/llm-families/run.sh $OUT/fam llama-3.1-8b-instruct-iq2_xs
