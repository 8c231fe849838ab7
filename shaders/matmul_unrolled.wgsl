// Statements of matmul.wgsl's forms that are unrolled over an invocation's tile, so that
// accumulators stay in registers on every compiler: the renderer repeats each section once per
// register (I, J: row and column of the sub-tile; ROW: the accumulator row; R, Q: lanes) and
// fills in the numbers. A section holds no comment, as it is repeated.
//
// Direct and split-K forms (B transposed, LV lanes of K per step q):
//   dot_a_row, dot_a_stat, dot_b_row: row bases (clamped at the edge), LayerNorm statistics;
//   dot_ln_step, dot_b, dot_a, dot_a_norm: the loads of one step (A through the LayerNorm);
//   fma: acc_I_J += a_I * b_J; direct_store_row / direct_store_col: the stores;
//   splitk_part: an invocation's partial sum to workgroup memory.
// Tiled form (workgroup-memory tiles As [BK, BM / V], Bs [BK, BN / V]):
//   acc_decl: one accumulator of type T;
//   load_k_major (+ put_k_major, put_k_major_lanes): a BR x BK tile of a matrix whose rows run
//   along K (A, or B transposed) into DST, transposed; read_a, read_a_norm, read_bt: its read;
//   load_n_major (+ put_n_major, put_n_major_lane, put_n_major_lanes): a BK x BN tile of plain B;
//   compute_b, compute_a, fma, fma_lane: one step kk of the tile product;
//   store_row / store_col: the stores through `put`.
//! section dot_a_row
    let ar{{I}} = a_base + min(row0 + {{I}}u, p.m - 1u) * kv;
//! section dot_a_stat
    let ls{{I}} = ln_stat[{{I}}u];
//! section dot_b_row
    let br{{J}} = b_base + min(col0 + {{J}}u, p.n - 1u) * kv;
//! section dot_ln_step
        let lg = ln_g[q];
        let lb = ln_b[q];
//! section dot_b
        let b{{J}} = b[br{{J}} + q];
//! section dot_a
        let a{{I}} = a[ar{{I}} + q];
//! section dot_a_norm
        let a{{I}} = fma((a[ar{{I}} + q] - LT(ls{{I}}.x)) * ls{{I}}.y, lg, lb);
//! section fma
        acc_{{ROW}}_{{J}} = fma(a{{I}}, b{{J}}, acc_{{ROW}}_{{J}});
//! section fma_lane
        acc_{{ROW}}_{{J}} = fma(vec4<f32>(a{{I}}[{{R}}]), b{{J}}, acc_{{ROW}}_{{J}});
//! section direct_store_row
    if (row0 + {{I}}u < p.m) {
{{COLS}}
    }
//! section direct_store_col
        if (col0 + {{J}}u < p.n) { put(c_base + (row0 + {{I}}u) * p.n + col0 + {{J}}u, row0 + {{I}}u, col0 + {{J}}u, lane_sum(acc_{{I}}_{{J}})); }
//! section splitk_part
    part[{{O}}u * WG + lid] = lane_sum(acc_{{I}}_{{J}});
//! section acc_decl
    var acc_{{I}}_{{J}} = {{T}}(0.0);
//! section load_k_major
        for (var l = 0u; l < {{ITERS}}u; l = l + 1u) {
            let idx = lid + l * {{WG}}u;
            let r = idx / {{PER_ROW}}u;
            let kq = (idx % {{PER_ROW}}u) * {{LV}}u;
            let gr = {{ORIGIN}} + r;
            let gk = k0 + kq;
            var v = LT(0.0);
            if (gr < {{ROWS}} && gk < p.k) { v = {{READ}}; }
{{PUT}}
        }
//! section read_a
a[a_base + (gr * p.k + gk) / {{LV}}u]
//! section read_a_norm
nrm(a[a_base + (gr * p.k + gk) / {{LV}}u], r, gk / {{LV}}u)
//! section read_bt
b[b_base + (gr * p.k + gk) / {{LV}}u]
//! section put_k_major
            {{DST}}[(kq + {{Q}}u) * {{STRIDE}}u + r] = {{VAL}};
//! section put_k_major_lanes
            {{DST}}[(kq + {{Q}}u) * {{STRIDE}}u + r / 4u][r % 4u] = {{VAL}};
//! section load_n_major
        for (var l = 0u; l < {{ITERS}}u; l = l + 1u) {
            let idx = lid + l * {{WG}}u;
            let kr = idx / {{PER_ROW}}u;
            let nq = (idx % {{PER_ROW}}u) * {{LV}}u;
            let gk = k0 + kr;
            let gn = col0 + nq;
            var v = LT(0.0);
            if (gk < p.k && gn < p.n) { v = b[b_base + (gk * p.n + gn) / {{LV}}u]; }
{{PUT}}
        }
//! section put_n_major
            Bs[kr * {{BNV}}u + nq / {{V}}u] = v;
//! section put_n_major_lane
            Bs[kr * {{BNV}}u + nq / 4u][nq % 4u] = v;
//! section put_n_major_lanes
            Bs[kr * {{BNV}}u + nq + {{Q}}u] = v[{{Q}}];
//! section compute_b
            let b{{J}} = Bs[kk * {{BNV}}u + tx + {{OFF}}u];
//! section compute_a
            let a{{I}} = As[kk * {{BMV}}u + ty + {{OFF}}u];
//! section store_row
    { let gr = row0 + (ty + {{OFF}}u) * {{V}}u + {{R}}u;
      if (gr < p.m) {
{{COLS}}
      }
    }
//! section store_col
        { let gc = col0 + (tx + {{OFF}}u) * {{V}}u + {{Q}}u; if (gc < p.n) { put(c_base + gr * p.n + gc, gr, gc, {{ACC}}); } }
