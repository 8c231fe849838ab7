#!/bin/bash
# f32 vs int8 matvec sweeps on the shapes, cache-resident and cold.
B=.bench/webjit
for cold in 0 512; do
for fmt in q4_k q6_k q8_0; do for n in 4096 14336; do
  $B bench qmatmul --format $fmt --m 1 --n $n --k 4096 --sweep --unchecked --min-ms 30 --cold-mib $cold --json >> $OUT/f32_cold$cold.jsonl 2>>$OUT/err.txt
  $B bench qmatmul --format $fmt --m 1 --n $n --k 4096 --sweep --int8 --unchecked --min-ms 30 --cold-mib $cold --json >> $OUT/i8_cold$cold.jsonl 2>>$OUT/err.txt
done; done; done
