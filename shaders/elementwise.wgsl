//! section main
// {{KEY}}
// Elementwise ops over flat arrays. One invocation per element (or per vec4 when VEC = 4).
{{PARAMS}}
alias T = {{T}};

@group(0) @binding(0) var<uniform> p: EwParams;
@group(0) @binding(1) var<storage, read> x: array<T>;        // [len]
{{Y_DECL}}
@group(0) @binding({{OUT_BINDING}}) var<storage, read_write> out: array<T>; // [len]

override WG: u32 = 64u;

{{FUNCS}}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.len) {
        return;
    }
    let a = x[i];
    out[i] = {{EXPR}};
}

//! section y_decl
@group(0) @binding(2) var<storage, read> y: array<T>;        // [b_len], repeated over x

//! section math
// erfc with fractional error below 1.2e-7 everywhere (Chebyshev fit, Numerical Recipes 6.2).
fn erfc_pos(z: T) -> T {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
        t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
        t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(poly);
}

// GELU, exact form: x * Phi(x) = 0.5 x erfc(-x / sqrt 2).
fn gelu_erf(v: T) -> T {
    let z = -v * 0.70710678118654752;
    let e = erfc_pos(abs(z));
    let erfc_z = select(2.0 - e, e, z >= T(0.0));
    return 0.5 * v * erfc_z;
}

// GELU, tanh form: 0.5 x (1 + tanh(u)) = x * sigmoid(2u), which cannot overflow to NaN.
fn gelu_tanh(v: T) -> T {
    let u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
    return v / (1.0 + exp(-2.0 * u));
}

fn silu(v: T) -> T {
    return v / (1.0 + exp(-v));
}

// c * tanh(v / c), with tanh(u) = 1 - 2 / (1 + e^2u): saturates to +-c, never NaN.
fn softcap(v: T, c: T) -> T {
    return c * (1.0 - 2.0 / (1.0 + exp(2.0 * v / c)));
}
