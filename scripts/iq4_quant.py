"""IQ4_NL and IQ4_XS quantization in numpy, written to give the same bytes as ggml's
`quantize_iq4_nl` / `quantize_iq4_xs` without an importance matrix (ggml-quants.c,
`quantize_row_iq4_nl_impl` with ntry = 7), which is what llama.cpp's quantizer calls for these
types. The `gguf` package only dequantizes them.

Same f32 operations in the same order as the C code (libggml-base is built for baseline x86-64:
no FMA contraction), vectorized over blocks: per block of 32, the scale is first max / 127 and
then the best of 15 trial scales by the weighted least-squares criterion (weights x^2); IQ4_XS
then stores one f16 super-block scale and a 6-bit scale per block of 32.
scripts/record_gemma_iq4_refs.py checks the bytes against llama.cpp's own quantizer.
"""

import numpy as np

KVALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                   dtype=np.float32)
NTRY = 7
GROUP_MAX_EPS = np.float32(1e-15)
F32 = np.float32


def best_index(x):
    """ggml's best_index_int8 over KVALUES for an f32 array: the nearest value, the upper one
    on a tie (its `x - v[mu-1] < v[mu] - x` test)."""
    mu = np.searchsorted(KVALUES, x, side="right").clip(1, 15)
    lower = (x - KVALUES[mu - 1]) < (KVALUES[mu] - x)
    idx = np.where(lower, mu - 1, mu)
    idx = np.where(x <= KVALUES[0], 0, idx)
    return np.where(x >= KVALUES[15], 15, idx)


def _sums(xb, w, idscale):
    """Weighted sums of one trial: sum w q x and sum w q^2 over j in order, f32."""
    sqx = np.zeros(xb.shape[0], F32)
    sq2 = np.zeros(xb.shape[0], F32)
    for j in range(xb.shape[1]):
        q = KVALUES[best_index(idscale * xb[:, j])]
        wq = w[:, j] * q
        sqx = sqx + wq * xb[:, j]
        sq2 = sq2 + wq * q
    return sqx, sq2


def block_scales(xb):
    """The per-block scale search of quantize_row_iq4_nl_impl for blocks xb [n, 32] f32."""
    w = xb * xb
    ax = np.abs(xb)
    first = np.argmax(ax, axis=1)  # the first largest |x|, as the strict `>` keeps
    rows = np.arange(xb.shape[0])
    amax = ax[rows, first]
    mx = xb[rows, first]
    small = amax < GROUP_MAX_EPS
    mx_safe = np.where(small, F32(1), mx)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = -mx_safe / KVALUES[0]
        sqx, sq2 = _sums(xb, w, F32(1) / d)
        d = np.where(sq2 > 0, sqx / sq2, F32(0))
        best = d * sqx
        for itry in range(-NTRY, NTRY + 1):
            idscale = F32(itry + int(KVALUES[0])) / mx_safe
            sqx, sq2 = _sums(xb, w, idscale)
            better = (sq2 > 0) & (sqx * sqx > best * sq2)
            nd = np.where(better, sqx / sq2, d)
            best = np.where(better, nd * sqx, best)
            d = nd
    return np.where(small, F32(0), d).astype(F32)


def _pack(L):
    """Codes [n, 32 * k] to bytes: element j < 16 of each 32 in the low nibble, j + 16 high."""
    L = L.reshape(L.shape[0], -1, 2, 16).astype(np.uint8)
    return (L[:, :, 0, :] | (L[:, :, 1, :] << 4)).reshape(L.shape[0], -1)


def quantize_iq4_nl(x):
    """f32 [..., k] (k a multiple of 32) to IQ4_NL bytes [..., k / 32 * 18]."""
    x = np.ascontiguousarray(x, dtype=F32)
    xb = x.reshape(-1, 32)
    d = block_scales(xb)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0))
    L = best_index(inv[:, None] * xb)
    out = np.concatenate([d.astype("<f2").view(np.uint8).reshape(-1, 2), _pack(L)], axis=1)
    return out.reshape(*x.shape[:-1], -1)


def _nearest_int(v):
    """ggml's nearest_int: the f32 sum with 1.5 * 2^23 rounds to the nearest even integer."""
    return ((v + F32(12582912.0)).view(np.int32) & 0x007FFFFF) - 0x00400000


def quantize_iq4_xs(x):
    """f32 [..., k] (k a multiple of 256) to IQ4_XS bytes [..., k / 256 * 136]."""
    x = np.ascontiguousarray(x, dtype=F32)
    xs = x.reshape(-1, 8, 32)
    n = xs.shape[0]
    scales = block_scales(xs.reshape(-1, 32)).reshape(n, 8)
    # The largest |scale| of the super-block, the first of equals (strict `>` from 0).
    first = np.argmax(np.abs(scales), axis=1)
    max_scale = scales[np.arange(n), first]
    d = -max_scale / F32(32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0))
    ls = np.clip(_nearest_int(inv[:, None] * scales), -32, 31)
    dl = d[:, None] * ls.astype(F32)
    with np.errstate(divide="ignore"):
        idl = np.where(dl != 0, F32(1) / dl, F32(0))
    L = best_index(idl[:, :, None] * xs).reshape(n, 256)
    lsu = (ls + 32).astype(np.uint32)
    scales_l = (lsu[:, 0::2] & 0xF) | ((lsu[:, 1::2] & 0xF) << 4)
    scales_h = np.zeros(n, np.uint32)
    for ib in range(8):
        scales_h |= (lsu[:, ib] >> 4) << (2 * ib)
    out = np.concatenate(
        [
            d.astype("<f2").view(np.uint8).reshape(-1, 2),
            scales_h.astype("<u2").view(np.uint8).reshape(-1, 2),
            scales_l.astype(np.uint8),
            _pack(L),
        ],
        axis=1,
    )
    return out.reshape(*x.shape[:-1], -1)
