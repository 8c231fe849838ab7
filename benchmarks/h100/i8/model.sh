#!/bin/bash
# Gemma decode/prefill untuned, tuned with int8 candidates, tuned exact-only.
B=.bench/webjit; H=.bench/gemma.header
M="bench model --synthetic-from $H --prompt-tokens 512 --gen-tokens 128 --unchecked --json"
$B $M > $OUT/untuned.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning_i8.json $B tune --model $H --budget-s 30 --prompt-tokens 512 --unchecked --json > $OUT/tune_i8.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning_i8.json $B $M > $OUT/tuned_i8.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=/tmp/exact.json $B tune --model $H --budget-s 30 --prompt-tokens 512 --unchecked --exact --json > $OUT/tune_exact.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=/tmp/exact.json $B $M > $OUT/tuned_exact.json 2>>$OUT/err.txt
WEBJIT_TUNING_FILE=$OUT/tuning_i8.json $B $M >> $OUT/tuned_i8.json 2>>$OUT/err.txt
$B $M >> $OUT/untuned.json 2>>$OUT/err.txt
