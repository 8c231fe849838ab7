#!/bin/bash
# usage: matvec_configs.sh FORMAT N K  -> times default + rowthread/wgred configs on the current Vulkan ICD
# (WEBJIT: the webjit binary; default ${CARGO_TARGET_DIR:-target}/release/webjit, run from the repository root)
B=${WEBJIT:-${CARGO_TARGET_DIR:-target}/release/webjit}
F=$1; N=$2; K=$3; shift 3
for cfg in "" wg128.r2.wgred wg32.r1.wgred wg32.r4.wgred wg32.r1.rowthread wg32.r4.rowthread wg32.r8.rowthread wg64.r1.rowthread wg64.r4.rowthread wg128.r1.rowthread wg256.r1.rowthread; do
  if [ -z "$cfg" ]; then a=""; else a="--config qmatvec.$F.m1.f32mul.f32acc.$cfg"; fi
  timeout 300 $B bench qmatmul --format $F --m 1 --n $N --k $K $a --min-ms 200 --json 2>&1 | python3 -c "
import json,sys
t=sys.stdin.read()
try:
  r=json.loads(t); print('$F $N x $K', r['config'], round(r['time_ms'],3), 'ms')
except Exception: print('$cfg', t[-200:])"
done
