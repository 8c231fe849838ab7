//! section main
// {{KEY}}
// FMA throughput probe: independent fma chains per invocation, operands from a uniform so
// nothing folds. Each iteration is 8 chains x 4 lanes = 32 FMAs = 64 flops.
struct ProbeParams {
    iters: u32,
    a: f32,
    b: f32,
    pad: u32,
}
@group(0) @binding(0) var<uniform> p: ProbeParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>; // [invocations]

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let a = vec4<f32>(p.a);
    let b = vec4<f32>(p.b);
    var c0 = vec4<f32>(f32(i)); var c1 = c0 + 1.0; var c2 = c0 + 2.0; var c3 = c0 + 3.0;
    var c4 = c0 + 4.0; var c5 = c0 + 5.0; var c6 = c0 + 6.0; var c7 = c0 + 7.0;
    for (var k = 0u; k < p.iters; k++) {
        c0 = fma(c0, a, b); c1 = fma(c1, a, b); c2 = fma(c2, a, b); c3 = fma(c3, a, b);
        c4 = fma(c4, a, b); c5 = fma(c5, a, b); c6 = fma(c6, a, b); c7 = fma(c7, a, b);
    }
    let s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
    out[i] = s.x + s.y + s.z + s.w;
}
