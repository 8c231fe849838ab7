#!/bin/bash
# On the device machine (see README.md here): reassemble Gemma from the chunks in /tmp/g, time
# kivi2 and f16 decode attention, score the whole corpus with webjit perplexity. Writes $OUT.
set -u
for f in .gl/*.deb; do dpkg -x $f / >/dev/null; done; ldconfig; export XDG_RUNTIME_DIR=/tmp
G=/tmp/g; W=$G/webjit; T=$G/sotu-2014-2016.txt; M=$G/gemma.gguf
cat $G/xa $G/xb $G/xc $G/xd $G/xe $G/xf > $M && sha256sum $M | tee $OUT/sha.txt
nvidia-smi -L > $OUT/gpu.txt 2>&1
$W bench read --mib 256 --json > $OUT/read.json 2>>$OUT/err.txt
for L in 8192 32768; do for D in f16 kivi2; do
  timeout 60 $W bench attention --decode --cache-len $L --heads 32 --kv-heads 8 --dim 128 --kv-dtype $D --sweep --min-ms 40 --json > $OUT/attn_${D}_$L.json 2>>$OUT/err.txt
  echo "attn $D $L: $(python3 -c "import json;d=json.load(open('$OUT/attn_${D}_$L.json'));print({k:v for k,v in d.items() if not isinstance(v,(list,dict))})" 2>&1)"
done; done
pp() { name=$1; shift; s=$(date +%s); timeout ${TO:-120} $W perplexity --model $M --text $T --json "$@" > $OUT/ppl_$name.json 2>>$OUT/err.txt; echo "ppl $name ($(( $(date +%s) - s )) s): $(python3 -c "import json;d=json.load(open('$OUT/ppl_$name.json'));print(d['ppl'],d['ppl_err'],d['chunks'],d['kv_cache'])" 2>&1)"; }
pp f16_512 --ctx 512
pp f16_2048 --ctx 2048
pp q8_0_512 --ctx 512 --kv-cache q8_0
pp q4_0_512 --ctx 512 --kv-cache q4_0
TO=200 pp kivi2_512 --ctx 512 --kv-cache kivi2
TO=200 pp f16dec_512 --ctx 512 --score-by-decode
tail -5 $OUT/err.txt
