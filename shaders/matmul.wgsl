//! section main
// {{KEY}}
// Tiled f32 matmul: C[b] = A[b] x op(B[b]), A: [M, K], B: [K, N] or, transposed, [N, K].
// A workgroup computes a BM x BN tile of C; each invocation a TM x TN sub-tile held in
// registers, with rows ty + i * WG_Y and columns tx + j * WG_X (in units of V) so that
// neighbouring invocations read neighbouring workgroup-memory words. K advances BK at a time
// through workgroup-memory tiles stored k-major (As[k][m], Bs[k][n]).
{{HEAD}}
alias VT = {{VT}};   // workgroup-memory and accumulator vector type (V lanes)
const BM: u32 = {{BM}}u;
const BN: u32 = {{BN}}u;
const BK: u32 = {{BK}}u;
const V: u32 = {{V}}u;
const LV: u32 = {{LV}}u;
const WG_X: u32 = {{WG_X}}u;
const WG_Y: u32 = {{WG_Y}}u;
const WG: u32 = WG_X * WG_Y;
const BMV: u32 = BM / V;
const BNV: u32 = BN / V;

var<workgroup> As: array<VT, {{AS_LEN}}>; // [BK, BM / V]
var<workgroup> Bs: array<VT, {{BS_LEN}}>; // [BK, BN / V]

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = lid % WG_X;
    let ty = lid / WG_X;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let a_base = wid.z * p.sa;
    let b_base = wid.z * p.sb;
    let c_base = wid.z * p.sc;
{{NORM_PRE}}
{{ACC_DECL}}
    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
{{LOAD_A}}
{{LOAD_B}}
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
{{COMPUTE}}
        }
        workgroupBarrier();
    }
{{STORE}}
}

//! section direct
// {{KEY}}
// Barrier-free f32 matmul for B stored transposed ([N, K]): each invocation multiplies TM
// rows of A by TN rows of B straight from global memory, TM x TN dot products over K, with
// no workgroup memory and no barrier. For CPU adapters, where every barrier switches the
// context of each invocation, and for the few rows of an encoder at small batch. Rows and
// columns past the edge read the last one (clamped) and are not stored. LT is also the
// accumulator type.
{{HEAD}}
const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const LV: u32 = {{LV}}u;

@compute @workgroup_size({{WG}})
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let col0 = gid.x * TN;
    let row0 = wid.y * TM;
    let a_base = wid.z * p.sa;
{{NORM_PRE}}
    if (col0 >= p.n) {
        return;
    }
    let kv = p.k / LV;
    let b_base = wid.z * p.sb;
    let c_base = wid.z * p.sc;
{{ROWS}}
{{ACC_DECL}}
    for (var q = 0u; q < kv; q = q + 1u) {
{{BODY}}
    }
{{STORE}}
}

//! section splitk
// {{KEY}}
// Split-K f32 matmul for B stored transposed ([N, K]): one workgroup per TM x TN tile of C;
// its WG invocations take every WG-th LV-wide step of K, each keeping TM x TN partial dot
// products, and add them up in workgroup memory by halving (log2 WG barriers at the end,
// none in the K loop). Many workgroups with short K walks instead of a few with long ones:
// for the handful of rows of an encoder at batch 1 on a GPU. Rows and columns past the edge
// read the last one (clamped) and are not stored. LT is also the accumulator type.
{{HEAD}}
const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const LV: u32 = {{LV}}u;
const WG: u32 = {{WG}}u;

var<workgroup> part: array<f32, {{PART_LEN}}>; // [TM * TN, WG]

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let col0 = wid.x * TN;
    let row0 = wid.y * TM;
    let kv = p.k / LV;
    let a_base = wid.z * p.sa;
    let b_base = wid.z * p.sb;
    let c_base = wid.z * p.sc;
{{NORM_PRE}}
{{ROWS}}
{{ACC_DECL}}
    for (var q = lid; q < kv; q = q + WG) {
{{BODY}}
    }
{{PARTS}}
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            for (var o = 0u; o < TM * TN; o = o + 1u) {
                part[o * WG + lid] = part[o * WG + lid] + part[o * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (lid < TM * TN) {
        let r = row0 + lid / TN;
        let cc = col0 + lid % TN;
        if (r < p.m && cc < p.n) {
            put(c_base + r * p.n + cc, r, cc, part[lid * WG]);
        }
    }
}

//! section head
// A: [batch, M, K]; B: [batch, K, N] or, transposed, [batch, N, K]; C: [batch, M, N].
{{PARAMS}}
alias LT = {{LT}};   // global load type (LV lanes along K, or along N for plain B)
{{LANES}}
@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<LT>;
@group(0) @binding(2) var<storage, read> b: array<LT>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
{{EPILOGUE}}
//! section lanes_1
fn lane_sum(v: LT) -> f32 {
    return v;
}
fn first_lane(v: LT) -> f32 {
    return v;
}
//! section lanes_4
fn lane_sum(v: LT) -> f32 {
    return dot(v, vec4<f32>(1.0));
}
fn first_lane(v: LT) -> f32 {
    return v.x;
}
