//! section workgroup
// Tree reductions over the WG invocations of a workgroup (WG a power of 2) in workgroup memory
// (log2(WG) barriers); every invocation gets the result.
var<workgroup> red: array<f32, WG>;

fn reduce_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

//! section subgroup
// Subgroup reductions: subgroupAdd / subgroupMax, then one workgroup-memory pass over the
// subgroups' results (two barriers per reduction).
const MAX_SG: u32 = {{MAX_SG}}u; // most subgroups a workgroup can hold (WG / 4)
var<workgroup> red: array<f32, MAX_SG>;
var<private> sg_lane_p: u32;
var<private> sg_id_p: u32;
var<private> n_sg_p: u32;

fn reduce_sum(v: f32, lid: u32) -> f32 {
    let s = subgroupAdd(v);
    if (sg_lane_p == 0u) {
        red[sg_id_p] = s;
    }
    workgroupBarrier();
    var r = 0.0;
    for (var g = 0u; g < n_sg_p; g++) {
        r += red[g];
    }
    workgroupBarrier();
    return r;
}

fn reduce_max(v: f32, lid: u32) -> f32 {
    let s = subgroupMax(v);
    if (sg_lane_p == 0u) {
        red[sg_id_p] = s;
    }
    workgroupBarrier();
    var r = red[0];
    for (var g = 1u; g < n_sg_p; g++) {
        r = max(r, red[g]);
    }
    workgroupBarrier();
    return r;
}

//! section subgroup_builtins
        @builtin(subgroup_invocation_id) sg_lane: u32,
        @builtin(subgroup_id) sg_id: u32, @builtin(num_subgroups) n_sg: u32
//! section subgroup_init
    sg_lane_p = sg_lane;
    sg_id_p = sg_id;
    n_sg_p = n_sg;
