"""IQ2_XS and IQ3_S quantization in numpy: a simple deterministic quantizer of our own, not
llama.cpp's (whose IQ2/IQ3 quantizers search neighbourhoods of the grid and want an importance
matrix). Its blocks only have to be valid, reasonably accurate blocks of the format: the
golden test compares webjit with llama.cpp on the same file, whatever its error.
make_gemma_lowbit.py uses it for IQ2_XS only; its IQ3_S blocks come from scripts/iq3s_quant.py,
a byte-exact port of llama.cpp's IQ3_S quantizer (which needs no importance matrix).

The grids are the `gguf` package's (quants.py), so the packing here and its dequantizer agree
by construction; make_gemma_lowbit.py checks every tensor by dequantizing it with `gguf`.

Per super-block of 256 values:
  1. signs: IQ3_S stores one bit per value; IQ2_XS stores 7 bits per group of 8 and the eighth
     makes the count of negatives even, so a group with an odd count flips its smallest value
     (the flipped value's target magnitude is then -|x|, so the search prefers a small grid
     value for it).
  2. per sub-block (16 values for IQ2_XS, 32 for IQ3_S) a scale: for a few trial scales
     (fractions of max|x| / the largest grid value), each group takes the grid entry nearest
     its target magnitudes, then the scale is refit by least squares; the trial with the
     smallest error wins.
  3. the sub-block scales become 4-bit codes of one f16 super-block scale d; each group is
     matched again at its stored scale, d is refit by least squares, and the groups are
     matched once more at the final d.
Every step uses elementwise f32 operations and sums in a fixed order (no BLAS, whose rounding
depends on the machine), so the output bytes are the same on every machine for pinned numpy
and gguf (the file's sha256 is checked in fetch-models.sh).
"""

import numpy as np
from gguf.quants import IQ2_XS, IQ2_XXS, IQ3_S

F32 = np.float32
QK = 256
# Trial scales: fractions of max|x| / largest grid value.
TRIALS = (0.7, 0.8, 0.9, 1.0)
CHUNK = 128  # super-blocks per step (bounds the [groups, 512] score arrays to ~32 MB)


class Fmt:
    def __init__(self, cls, group, sub, parity):
        cls.init_grid()
        self.cls = cls
        self.grid = np.ascontiguousarray(cls.grid.reshape(cls.grid_shape).astype(F32))  # [G, L]
        self.group = group  # values per grid entry
        self.sub = sub  # values per 4-bit scale
        self.parity = parity
        self.gg = ordered_sum(self.grid * self.grid)  # [G] squared norms
        self.gmax = F32(self.grid.max())


def ordered_sum(a):
    """Sum over the last axis, left to right (numpy's own reductions may pair terms
    differently on different builds)."""
    acc = a[..., 0].copy()
    for k in range(1, a.shape[-1]):
        acc = acc + a[..., k]
    return acc


def dots(t, grid):
    """[n, L] x [G, L] -> [n, G] dot products, each summed in index order."""
    acc = t[:, 0:1] * grid[None, :, 0]
    for k in range(1, grid.shape[1]):
        acc = acc + t[:, k : k + 1] * grid[None, :, k]
    return acc


def nearest(tg, scale, f):
    """Per group, the grid entry minimizing |t - scale g|^2 (argmax of 2 t.g - scale |g|^2;
    first index on ties); returns it and its t.g."""
    idx = np.argmax(F32(2) * tg - scale[:, None] * f.gg[None, :], axis=1)
    return idx, tg[np.arange(tg.shape[0]), idx]


def sub_sums(v, nb, f):
    """[nb * groups] per-group values -> [nb, subs] per-sub-block sums."""
    per_sub = f.sub // f.group
    return ordered_sum(v.reshape(nb, QK // f.sub, per_sub))


def signs_of(x, f):
    """x [nb, 256] -> (neg [nb, 256] bool as stored, t = x with the stored signs removed)."""
    neg = x < 0
    if f.parity:
        g = neg.reshape(-1, 8)
        odd = (g.sum(axis=1) & 1) == 1
        small = np.argmin(np.abs(x).reshape(-1, 8), axis=1)
        flip = np.zeros_like(g)
        flip[np.arange(g.shape[0]), small] = odd
        neg = (g ^ flip).reshape(x.shape)
    return neg, np.where(neg, -x, x)


def mult(q, f):
    """Sub-block scale of code q in units of d, as the gguf dequantizer computes it."""
    if f.cls is IQ2_XS:
        return (F32(0.5) + q.astype(F32)) * F32(0.25)
    return F32(1) + F32(2) * q.astype(F32)


def code_of(ratio, f):
    """The 4-bit code whose multiplier is nearest scale / d."""
    if f.cls is IQ2_XS:
        q = np.round(ratio * F32(4) - F32(0.5))
    else:
        q = np.round((ratio - F32(1)) / F32(2))
    return np.clip(q, 0, 15).astype(np.uint8)


def quantize_chunk(x, f):
    """x [nb, 256] f32 -> (grid indices [nb, groups], stored signs [nb, 256], d [nb] f16,
    codes [nb, subs])."""
    nb = x.shape[0]
    neg, t = signs_of(x, f)
    tg = dots(t.reshape(-1, f.group), f.grid)  # [nb * groups, G]
    per_sub = f.sub // f.group
    tmax = t.reshape(nb, QK // f.sub, f.sub).max(axis=2)  # [nb, subs]
    best_err = np.full(tmax.shape, np.inf, F32)
    best_s = np.zeros(tmax.shape, F32)
    for frac in TRIALS:
        s = tmax * F32(frac) / f.gmax
        idx, dot = nearest(tg, np.repeat(s.reshape(-1), per_sub), f)
        a = sub_sums(dot, nb, f)
        b = sub_sums(f.gg[idx], nb, f)
        s_fit = np.where(a > 0, a / b, F32(0))
        err = -np.where(a > 0, a * a / b, F32(0))  # |t - s g|^2 minus the constant |t|^2
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_s = np.where(better, s_fit, best_s)

    d = (best_s.max(axis=1) / mult(np.full(1, 15, np.uint8), f)).astype(np.float16).astype(F32)
    safe_d = np.where(d > 0, d, F32(1))
    codes = code_of(best_s / safe_d[:, None], f)
    m = mult(codes, f)  # [nb, subs]
    idx, dot = nearest(tg, np.repeat((d[:, None] * m).reshape(-1), per_sub), f)
    # Least-squares d for these entries and codes: sum(t.(m g)) / sum(|m g|^2) per super-block.
    num = ordered_sum(m * sub_sums(dot, nb, f))
    den = ordered_sum(m * m * sub_sums(f.gg[idx], nb, f))
    d = np.where(den > 0, num / np.where(den > 0, den, F32(1)), F32(0))
    d = np.maximum(d, F32(0)).astype(np.float16).astype(F32)
    idx, _ = nearest(tg, np.repeat((d[:, None] * m).reshape(-1), per_sub), f)
    return idx.reshape(nb, -1), neg, d.astype(np.float16), codes


def pack_nibbles(codes):
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


def pack_iq2_xs(idx, neg, d, codes):
    """Block: f16 d, u16 qs[32] = grid index | sign index << 9, u8 scales[8]."""
    nb = idx.shape[0]
    bits = neg.reshape(nb, 32, 8).astype(np.uint16) << np.arange(8, dtype=np.uint16)
    pattern = ordered_sum(bits)  # [nb, 32], even parity by construction
    ksigns = np.frombuffer(IQ2_XXS.ksigns, dtype=np.uint8)
    if not np.array_equal(ksigns[pattern & 127], pattern):
        raise AssertionError("IQ2_XS sign pattern with odd parity")
    qs = (idx.astype(np.uint16) | ((pattern & 127) << 9)).astype("<u2")
    return np.concatenate(
        [d.astype("<f2").view(np.uint8).reshape(nb, 2), qs.view(np.uint8), pack_nibbles(codes)],
        axis=1,
    )


def pack_iq3_s(idx, neg, d, codes):
    """Block: f16 d, u8 qs[64] (low index bits), u8 qh[8] (9th bits), u8 signs[32],
    u8 scales[4]."""
    nb = idx.shape[0]
    low = (idx & 255).astype(np.uint8)
    high = ((idx >> 8) & 1).astype(np.uint8).reshape(nb, 8, 8) << np.arange(8, dtype=np.uint8)
    qh = ordered_sum(high).astype(np.uint8)
    sb = neg.reshape(nb, 32, 8).astype(np.uint8) << np.arange(8, dtype=np.uint8)
    signs = ordered_sum(sb).astype(np.uint8)
    return np.concatenate(
        [d.astype("<f2").view(np.uint8).reshape(nb, 2), low, qh, signs, pack_nibbles(codes)],
        axis=1,
    )


IQ2_XS_FMT = None
IQ3_S_FMT = None


def _fmt(cls):
    global IQ2_XS_FMT, IQ3_S_FMT
    if cls is IQ2_XS:
        IQ2_XS_FMT = IQ2_XS_FMT or Fmt(IQ2_XS, 8, 16, True)
        return IQ2_XS_FMT, pack_iq2_xs
    IQ3_S_FMT = IQ3_S_FMT or Fmt(IQ3_S, 4, 32, False)
    return IQ3_S_FMT, pack_iq3_s


def quantize(x, cls):
    """x [rows, k] f32 with k % 256 == 0 -> [rows, k / 256 * type_size] uint8 blocks."""
    f, pack = _fmt(cls)
    rows, k = x.shape
    blocks = x.reshape(-1, QK).astype(F32)
    out = []
    for i in range(0, blocks.shape[0], CHUNK):
        out.append(pack(*quantize_chunk(blocks[i : i + CHUNK], f)))
    q = np.concatenate(out, axis=0)
    assert q.shape[1] == cls.type_size
    return q.reshape(rows, -1)
