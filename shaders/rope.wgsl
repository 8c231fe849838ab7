//! section main
// {{KEY}}
// Rotary position embedding. The host computes cos/sin in f64 per (token, pair), so angles
// of large positions keep full f32 accuracy. Pairs are (i, i + rot/2) in the NeoX layout and
// (2i, 2i + 1) in the normal (GPT-J / llama.cpp "norm") layout. Dims past `rot` pass through.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [tokens, heads, head_dim]
@group(0) @binding(2) var<storage, read> cs: array<vec2<f32>>; // [tokens, rot / 2] (cos, sin)
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [tokens, heads, head_dim]

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half_dim = p.head_dim / 2u;
    let idx = gid.x + gid.y * nwg.x * WG;  // over [tokens, heads, head_dim / 2]
    if (idx >= p.tokens * p.heads * half_dim) {
        return;
    }
    let j = idx % half_dim;
    let row = idx / half_dim;          // token * heads + head
    let token = row / p.heads;
    let base = row * p.head_dim;
    let half_rot = p.rot / 2u;
    if (j >= half_rot) {
        let d = p.rot + 2u * (j - half_rot);
        out[base + d] = x[base + d];
        out[base + d + 1u] = x[base + d + 1u];
        return;
    }
    let c = cs[token * half_rot + j];
    let i0 = base + {{I0}};
    let i1 = base + {{I1}};
    let a = x[i0];
    let b = x[i1];
    out[i0] = a * c.x - b * c.y;
    out[i1] = b * c.x + a * c.y;
}
