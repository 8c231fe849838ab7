"""IQ3_S quantization in numpy, written to give the same bytes as ggml's `quantize_iq3_s`
without an importance matrix (ggml-quants.c: the 512-entry grid set up by `iq3xs_init_impl`,
then `quantize_row_iq3_s_impl` with sub-blocks of 32), which is what llama.cpp's quantizer
calls for this type. The `gguf` package only dequantizes it; its grid table is used here.

The algorithm, per sub-block of 32 values (8 groups of 4; weights w = x^2, no imatrix):
  - the signs are stored apart, the search works on |x|;
  - 19 trial inverse scales (15 + 0.2 t) / max|x| for t = -9..9: every value is rounded to a
    level l in 0..7 (value 2l + 1); a group whose 4 levels are not one of the 512 grid points
    takes, among the grid points nearest to that off-grid point (a precomputed list: all grid
    points at the 3 smallest squared distances), the one of least weighted error (weights
    |x|) at the trial scale. Each trial's scale is refit by weighted least squares and the
    trial with the largest sum(w q x)^2 / sum(w q^2) is kept;
  - if any group of the kept trial went through the neighbour lists, all groups are matched
    once more at the kept scale and the scale is refit;
  - per super-block of 256 the 8 sub-block scales become 4-bit codes of one f16 scale
    d = 1.033 max / 31.
A quirk is kept on purpose: ggml skips an all-zero sub-block without moving its write position
in qs and signs (qh is indexed by sub-block), so the next sub-blocks' bytes move up and the
tail stays zero. Real weights rarely have such sub-blocks; the random checks include them.

Same f32 operations in the same order as the C code (libggml-base is built for baseline x86-64:
no FMA contraction), vectorized over sub-blocks. scripts/check_iq3s_quant.py checks the bytes
against llama.cpp's own quantizer, on random data and on Gemma's tensors.
"""

import numpy as np
from gguf.quants import IQ3_S

F32 = np.float32
QK = 256
SUB = 32
NWANT = 3  # distinct distances whose grid points make an off-grid point's neighbour list
CHUNK = 16384  # sub-blocks per step (bounds the neighbour arrays to a few tens of MB)


def _tables():
    """Grid levels [512, 4] (0..7), the map from a 12-bit point (3 bits per value) to its grid
    index or -1, and per point its neighbour list padded with -1, as iq3xs_init_impl orders
    it: by squared distance, then by grid index."""
    IQ3_S.init_grid()
    vals = IQ3_S.grid.reshape(512, 4).astype(np.int32)  # 2l + 1
    levels = (vals - 1) // 2
    shifts = 3 * np.arange(4)
    kmap = np.full(4096, -1, np.int64)
    kmap[(levels << shifts).sum(axis=1)] = np.arange(512)
    points = 2 * ((np.arange(4096)[:, None] >> shifts) & 7) + 1
    d2 = ((points[:, None, :] - vals[None, :, :]) ** 2).sum(axis=2)  # [4096, 512]
    lists = []
    for p in range(4096):
        if kmap[p] >= 0:
            lists.append([])
            continue
        order = np.lexsort((np.arange(512), d2[p]))
        cutoff = np.unique(d2[p])[NWANT - 1]
        lists.append([int(j) for j in order if d2[p, j] <= cutoff])
    count = np.array([len(nb) for nb in lists])
    neigh = np.full((4096, count.max()), -1, np.int64)
    for p, nb in enumerate(lists):
        neigh[p, : len(nb)] = nb
    return levels, vals.astype(F32), kmap, neigh, count


_T = None


def tables():
    global _T
    if _T is None:
        _T = _tables()
    return _T


def nearest_int(v):
    """ggml's nearest_int: the f32 sum with 1.5 * 2^23 rounds to the nearest even integer."""
    return ((v + F32(12582912.0)).view(np.int32) & 0x007FFFFF) - 0x00400000


def _codes(xv, inv):
    """Levels 0..7 of |x| [n, 32] at inverse scales inv [n], and each group's 12-bit point."""
    lv = np.clip(nearest_int(F32(0.5) * (inv[:, None] * xv - F32(1))), 0, 7)
    g = lv.reshape(-1, 8, 4)
    return lv, g[..., 0] | (g[..., 1] << 3) | (g[..., 2] << 6) | (g[..., 3] << 9)


def _best_neighbours(u, xv, wa, scale):
    """For off-grid points u [m] with values xv [m, 4], weights wa [m, 4] and scales [m], the
    grid index of least sum w (s q - x)^2 over the point's neighbour list, the first on ties
    (iq3_find_best_neighbour). Grouped by list length, so no padding is searched."""
    levels, grid, _, neigh, count = tables()
    out = np.empty(u.shape[0], np.int64)
    cnt = count[u]
    for c in np.unique(cnt):
        sel = np.nonzero(cnt == c)[0]
        cand = neigh[u[sel], :c]  # [k, c]
        q = grid[cand]  # [k, c, 4]
        x, w, s = xv[sel][:, None, :], wa[sel][:, None, :], scale[sel][:, None]
        d2 = np.zeros(cand.shape, F32)
        for i in range(4):
            diff = s * q[..., i] - x[..., i]
            d2 = d2 + (w[..., i] * diff) * diff
        out[sel] = cand[np.arange(sel.shape[0]), np.argmin(d2, axis=1)]
    return out


def _match(xv, wa, inv, scale):
    """Levels [n, 32] after snapping every group to the grid at inverse scale inv (search
    scale `scale` for the off-grid ones), and the [n, 8] mask of groups that were on it."""
    levels, _, kmap, _, _ = tables()
    lv, u = _codes(xv, inv)
    on = kmap[u] >= 0
    off = np.nonzero(~on.reshape(-1))[0]
    if off.size:
        rows = off // 8
        gx = xv.reshape(-1, 4)[off]
        gw = wa.reshape(-1, 4)[off]
        best = _best_neighbours(u.reshape(-1)[off], gx, gw, scale[rows])
        lv = lv.reshape(-1, 4).copy()
        lv[off] = levels[best]
        lv = lv.reshape(xv.shape)
    return lv, on


def _fit(xv, w, lv):
    """sum w x q and sum w q^2 over the 32 values in order (q = 2l + 1), f32."""
    sqx = np.zeros(xv.shape[0], F32)
    sq2 = np.zeros(xv.shape[0], F32)
    q = (2 * lv + 1).astype(F32)
    for i in range(SUB):
        sqx = sqx + (w[:, i] * xv[:, i]) * q[:, i]
        sq2 = sq2 + (w[:, i] * q[:, i]) * q[:, i]
    return sqx, sq2


def _sub_blocks(x):
    """x [n, 32] f32 -> (levels [n, 32], sign bytes [n, 4], scales [n], nonzero [n])."""
    n = x.shape[0]
    neg = ~(x >= 0)
    xv = np.where(neg, -x, x)
    w = x * x
    wa = np.sqrt(w)
    mx = xv.max(axis=1)
    nz = mx != 0
    mx = np.where(nz, mx, F32(1))  # zero sub-blocks are computed on 1 and dropped below
    best = np.zeros(n, F32)
    scale = mx / F32(15)
    lbest = np.zeros((n, SUB), np.int64)
    on_best = np.zeros((n, 8), bool)
    for t in range(-9, 10):
        inv = (F32(15) + F32(t) * F32(0.2)) / mx
        lv, on = _match(xv, wa, inv, F32(1) / inv)
        sqx, sq2 = _fit(xv, w, lv)
        with np.errstate(divide="ignore", invalid="ignore"):
            better = (sq2 > 0) & (sqx * sqx > best * sq2)
            scale = np.where(better, sqx / sq2, scale)
        best = np.where(better, scale * sqx, best)
        lbest = np.where(better[:, None], lv, lbest)
        on_best = np.where(better[:, None], on, on_best)

    again = (~on_best).any(axis=1) & (scale > 0)
    if again.any():
        r = np.nonzero(again)[0]
        lv, _ = _match(xv[r], wa[r], F32(1) / scale[r], scale[r])
        sqx, sq2 = _fit(xv[r], w[r], lv)
        lbest[r] = lv
        with np.errstate(divide="ignore", invalid="ignore"):
            scale[r] = np.where(sq2 > 0, sqx / sq2, scale[r])
    # sum w q x >= 0, so ggml's branch for a negative scale (flip the signs) never runs.
    assert not (scale < 0).any()
    bits = neg.reshape(n, 4, 8).astype(np.uint8) << np.arange(8, dtype=np.uint8)
    signs = np.bitwise_or.reduce(bits, axis=2)
    return lbest, signs, np.where(nz, scale, F32(0)), nz


def quantize_iq3_s(x):
    """f32 [..., k] (k a multiple of 256) to IQ3_S bytes [..., k / 256 * 110]."""
    x = np.ascontiguousarray(x, dtype=F32)
    subs = x.reshape(-1, SUB)
    # Huge inputs overflow f32 products to inf in ggml too; the port follows it silently.
    with np.errstate(over="ignore"):
        parts = [_sub_blocks(subs[i : i + CHUNK]) for i in range(0, subs.shape[0], CHUNK)]
    lv, signs, scales, nz = (np.concatenate(p, axis=0) for p in zip(*parts))
    _, _, kmap, _, _ = tables()
    g = lv.reshape(-1, 8, 4)
    idx = kmap[g[..., 0] | (g[..., 1] << 3) | (g[..., 2] << 6) | (g[..., 3] << 9)]
    assert (idx >= 0).all(), "a group ended off the grid"
    nb = x.size // QK
    idx = idx.reshape(nb, 8, 8)
    nz = nz.reshape(nb, 8)
    signs = signs.reshape(nb, 8, 4)
    scales = scales.reshape(nb, 8)

    # qs and signs: the nonzero sub-blocks' bytes in order, the rest zero (see the docstring).
    slot = np.cumsum(nz, axis=1) - 1
    b, s = np.nonzero(nz)
    qs = np.zeros((nb, 8, 8), np.uint8)
    qs[b, slot[b, s]] = (idx[b, s] & 255).astype(np.uint8)
    sg = np.zeros((nb, 8, 4), np.uint8)
    sg[b, slot[b, s]] = signs[b, s]
    high = ((idx >> 8) & 1).astype(np.uint8) << np.arange(8, dtype=np.uint8)
    qh = np.where(nz, np.bitwise_or.reduce(high, axis=2), 0).astype(np.uint8)

    max_scale = scales.max(axis=1)
    d = max_scale / F32(31)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dh = np.where(max_scale != 0, d * F32(1.033), F32(0)).astype(np.float16)
        inv = F32(1) / d
        code = np.clip(nearest_int(F32(0.5) * (inv[:, None] * scales - F32(1))), 0, 15)
    code = np.where(max_scale[:, None] != 0, code, 0).astype(np.uint8)
    out = np.concatenate(
        [
            dh.astype("<f2").view(np.uint8).reshape(nb, 2),
            qs.reshape(nb, 64),
            qh,
            sg.reshape(nb, 32),
            code[:, 0::2] | (code[:, 1::2] << 4),
        ],
        axis=1,
    )
    return out.reshape(*x.shape[:-1], -1)
