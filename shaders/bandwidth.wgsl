//! section main
// {{KEY}}
// Streaming-read probe: a grid-stride loop of coalesced vec4<u32> loads, XOR-folded so the
// loads cannot be removed; one word out per invocation.
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: ReadParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;   // [len]
@group(0) @binding(2) var<storage, read_write> out: array<u32>;   // [invocations]

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * {{WG}}u;
    let stride = nwg.x * nwg.y * {{WG}}u;
    var acc = vec4<u32>(0u);
    for (var j = i; j < p.len; j += stride) {
        acc ^= src[j];
    }
    out[i] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
