//! section main
// {{KEY}}
// Rows of x times the orthonormal Walsh-Hadamard matrix of HW dims, in blocks of HW along
// each row of HD values (Sylvester's order, H_2n = [[H_n, H_n], [H_n, -H_n]] / sqrt 2:
// symmetric and its own inverse). A quantized KV cache's keys go through it before they are
// rounded, and the queries that meet them alike, so q.k is unchanged while the keys' blocks
// of 32 lose their outliers (`KvCache::key_rotation`). One workgroup a row.
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: HadamardParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [rows, HD]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // [rows, HD]

const WG: u32 = {{WG}}u;
const HD: u32 = {{HD}}u;
{{CONSTS}}
var<workgroup> row: array<f32, HD>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    for (var i = lid; i < HD; i += WG) {
        row[i] = x[r * HD + i];
    }
    workgroupBarrier();
{{BUTTERFLIES}}
    for (var i = lid; i < HD; i += WG) {
        y[r * HD + i] = row[i];
    }
}

//! section consts
const HW: u32 = {{HW}}u;        // the rotation's width (a power of two dividing HD)
const HW_SCALE: f32 = {{HW_SCALE}}; // 1 / sqrt(HW)

//! section butterflies
    // The rotation of `row` (HD values in workgroup memory, after a barrier): butterflies of
    // span 1, 2, .. HW / 2 within blocks of HW, a barrier after each, then the 1/sqrt(HW)
    // scale.
    for (var s = 1u; s < HW; s <<= 1u) {
        for (var j = lid; j < HD / 2u; j += WG) {
            let i0 = (j / s) * 2u * s + j % s;
            let a = row[i0];
            let b = row[i0 + s];
            row[i0] = a + b;
            row[i0 + s] = a - b;
        }
        workgroupBarrier();
    }
    for (var i = lid; i < HD; i += WG) {
        row[i] = row[i] * HW_SCALE;
    }
    workgroupBarrier();
