#!/bin/bash
B=.bench/webjit
$B bench attention --seq 4096 --heads 8 --dim 128 --causal --sweep --fma --min-ms 40 --json > $OUT/prefill_causal_sweep_checked.json 2>>$OUT/err.txt
$B bench attention --decode --cache-len 32768 --heads 8 --dim 128 --sweep --min-ms 40 --json > $OUT/decode_f16_sweep_checked.json 2>>$OUT/err.txt
$B bench attention --decode --cache-len 32768 --heads 8 --dim 128 --sweep --unchecked --min-ms 40 --json > $OUT/decode_f16_sweep_unchecked.json 2>>$OUT/err.txt
$B bench attention --decode --cache-len 32768 --heads 8 --dim 128 --kv-dtype f32 --sweep --min-ms 40 --json > $OUT/decode_f32_sweep_checked.json 2>>$OUT/err.txt
$B bench attention --seq 32768 --heads 8 --dim 128 --causal --window 512 --json > $OUT/window_checked.json 2>>$OUT/err.txt
$B bench attention --seq 32768 --heads 8 --dim 128 --causal --json > $OUT/full_checked.json 2>>$OUT/err.txt
$B bench read --mib 256 --json > $OUT/read.json 2>>$OUT/err.txt
tail -3 $OUT/err.txt
