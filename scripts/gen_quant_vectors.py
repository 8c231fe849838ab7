#!/usr/bin/env python3
"""Record GGUF block-format test vectors with the reference (de)quantizers of the `gguf` package.

    pip install gguf numpy
    python3 scripts/gen_quant_vectors.py        # writes tests/data/quant/

For every format webjit supports this writes `<name>.raw` (whole GGUF blocks) and `<name>.f32`
(their little-endian f32 dequantization by `gguf.quants.dequantize`, which mirrors ggml's
`dequantize_row_*`). Blocks come from two sources:
  * where gguf can quantize the format (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): quantized random
    data at magnitudes from 1e-7 to 6e4;
  * for every format: raw random bytes whose f16 scale fields are overwritten with chosen values
    (0, -0, the smallest subnormal, the largest finite, random normals), plus blocks whose quant
    bytes are all 0x00 or all 0xff (min and max codes).
Infinite and NaN scales are excluded: they are not meaningful weights and GPUs need not keep NaN
payloads (MXFP4 keeps its largest valid E8M0 scales, whose biggest codes overflow to Inf as in
ggml). The formats of HOSTILE get separate `<name>.hostile.*` files of such blocks.
Deterministic: the seed is fixed.
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "quant")

# name -> (type, blocks of raw random bytes, byte offsets of the f16 scale fields)
FORMATS = {
    "f32": (T.F32, 64, []),
    "f16": (T.F16, 256, []),
    "bf16": (T.BF16, 256, []),
    "q4_0": (T.Q4_0, 40, [0]),
    "q4_1": (T.Q4_1, 40, [0, 2]),
    "q5_0": (T.Q5_0, 40, [0]),
    "q5_1": (T.Q5_1, 40, [0, 2]),
    "q8_0": (T.Q8_0, 40, [0]),
    "q2_k": (T.Q2_K, 12, [80, 82]),
    "q3_k": (T.Q3_K, 12, [108]),
    "q4_k": (T.Q4_K, 12, [0, 2]),
    "q5_k": (T.Q5_K, 12, [0, 2]),
    "q6_k": (T.Q6_K, 12, [208]),
    # Added later: kept after the others so the random stream of the earlier files is unchanged.
    "iq4_nl": (T.IQ4_NL, 40, [0]),
    "iq4_xs": (T.IQ4_XS, 12, [0]),
    "tq1_0": (T.TQ1_0, 12, [52]),
    "tq2_0": (T.TQ2_0, 12, [64]),
    "mxfp4": (T.MXFP4, 40, []),
}
QUANTIZABLE = {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "tq1_0", "tq2_0", "mxfp4"}
# Formats whose repacking validates scales as ggml's ggml_validate_row_data does: they also get
# `<name>.hostile.raw/.f32`, blocks with an Inf or NaN f16 scale (E8M0 0xff for MXFP4), which
# the CPU reference decodes as ggml does and the upload refuses.
HOSTILE = {"iq4_nl", "iq4_xs", "tq1_0", "tq2_0", "mxfp4"}
HOSTILE_F16 = [0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7C01]
# MXFP4 E8M0 scales: subnormal half-scales (0, 1), the smallest normal (2), 1 (128), and the
# largest valid ones, whose biggest codes overflow to Inf in ggml too (253, 254).
SPECIAL_E8M0 = [0, 1, 2, 3, 127, 128, 129, 253, 254, 252, 100, 150]
# The codebook (lattice) formats: recorded with their own random stream after every file above,
# so those stay byte-identical. gguf cannot quantize them: raw random blocks only. IQ1_M has no
# f16 field: its scale is the top nibbles of its 4 16-bit scale words (offsets 48..55).
CODEBOOK = {
    "iq2_xxs": (T.IQ2_XXS, 24, [0]),
    "iq2_xs": (T.IQ2_XS, 24, [0]),
    "iq2_s": (T.IQ2_S, 24, [0]),
    "iq3_xxs": (T.IQ3_XXS, 24, [0]),
    "iq3_s": (T.IQ3_S, 24, [0]),
    "iq1_s": (T.IQ1_S, 24, [0]),
    "iq1_m": (T.IQ1_M, 24, []),
}
SPECIAL_F16 = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x7BFF, 0xFBFF, 0x3C00, 0x0400]


def finite_f16_bits(rng, n):
    """Random f16 bit patterns that are finite (exponent field below 31)."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32)
    exp = (bits >> 10) & 0x1F
    bits = np.where(exp == 0x1F, bits & ~np.uint32(0x4000), bits)  # clear one exponent bit
    return bits.astype(np.uint16)


def finite_bf16_bits(rng, n):
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32)
    exp = (bits >> 7) & 0xFF
    bits = np.where(exp == 0xFF, bits & ~np.uint32(0x4000), bits)
    return bits.astype(np.uint16)


def raw_blocks(rng, name, qtype, n, scale_offsets):
    _, bsize = GGML_QUANT_SIZES[qtype]
    if name == "f32":
        vals = rng.standard_normal(n).astype(np.float32) * np.float32(10.0) ** rng.integers(-30, 30, n)
        vals[:4] = [0.0, -0.0, 3.4e38, -1.2e-38]
        return vals.astype(np.float32).view(np.uint8).reshape(n, 4)
    if name == "f16":
        b = finite_f16_bits(rng, n)
        b[: len(SPECIAL_F16)] = SPECIAL_F16
        return b.view(np.uint8).reshape(n, 2)
    if name == "bf16":
        b = finite_bf16_bits(rng, n)
        b[:4] = [0x0000, 0x8000, 0x0001, 0x7F7F]
        return b.view(np.uint8).reshape(n, 2)
    blocks = rng.integers(0, 256, size=(n, bsize), dtype=np.uint8)
    # min and max codes everywhere in two blocks
    blocks[0, :] = 0x00
    blocks[1, :] = 0xFF
    if name == "mxfp4":
        e = rng.integers(0, 255, size=n, dtype=np.uint8)  # 0..254: 0xff is invalid
        e[1 : 1 + len(SPECIAL_E8M0)] = SPECIAL_E8M0
        blocks[:, 0] = e
    if name == "iq1_m":
        for i in range(n):
            v = SPECIAL_F16[i] if i < len(SPECIAL_F16) else int(finite_f16_bits(rng, 1)[0])
            set_iq1_m_scale(blocks[i], v)
    for i in range(n):
        for j, off in enumerate(scale_offsets):
            if i < len(SPECIAL_F16) * 2:
                v = SPECIAL_F16[(i + 3 * j) % len(SPECIAL_F16)]
            else:
                v = int(finite_f16_bits(rng, 1)[0])
            blocks[i, off : off + 2] = np.array([v], dtype=np.uint16).view(np.uint8)
    return blocks


def set_iq1_m_scale(block, v):
    """Stores the f16 bits v in the top nibbles of IQ1_M's scale words (bytes 48..55)."""
    sc = block[48:56].view(np.uint16)
    for k in range(4):
        sc[k] = (sc[k] & 0x0FFF) | (((v >> (4 * k)) & 0xF) << 12)


def quantized_blocks(rng, qtype, n_elems):
    data = rng.standard_normal(n_elems).astype(np.float32)
    block = GGML_QUANT_SIZES[qtype][0]
    mags = np.float32(10.0) ** rng.uniform(-7, 4.0, size=n_elems // max(block, 32)).astype(np.float32)
    data *= np.repeat(mags, max(block, 32))[:n_elems]
    data[:4] = [0.0, -0.0, 60000.0, -60000.0]
    q = np.ascontiguousarray(quantize(data.reshape(1, -1), qtype))
    return q.view(np.uint8).reshape(-1, GGML_QUANT_SIZES[qtype][1])


def hostile_blocks(rng, name, qtype, offs):
    """Blocks of random codes whose scale is Inf or NaN (f16), or 0xff (E8M0)."""
    _, bsize = GGML_QUANT_SIZES[qtype]
    if name == "mxfp4":
        blocks = rng.integers(0, 256, size=(3, bsize), dtype=np.uint8)
        blocks[:, 0] = 0xFF
        return blocks
    blocks = rng.integers(0, 256, size=(len(HOSTILE_F16), bsize), dtype=np.uint8)
    for i, v in enumerate(HOSTILE_F16):
        if name == "iq1_m":
            set_iq1_m_scale(blocks[i], v)
            continue
        blocks[i, offs[0] : offs[0] + 2] = np.array([v], dtype=np.uint16).view(np.uint8)
    return blocks


def main():
    rng = np.random.default_rng(20261122)
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for name, (qtype, n, offs) in FORMATS.items():
        parts = [raw_blocks(rng, name, qtype, n, offs)]
        if name in QUANTIZABLE:
            parts.append(quantized_blocks(rng, qtype, 32 * 16))
        raw = np.concatenate(parts, axis=0).astype(np.uint8)
        with np.errstate(over="ignore"):  # MXFP4's largest scales overflow, as in ggml
            deq = dequantize(raw.reshape(-1), qtype).astype("<f4")
        raw.tofile(os.path.join(OUT, f"{name}.raw"))
        deq.tofile(os.path.join(OUT, f"{name}.f32"))
        total += raw.nbytes + deq.nbytes
        print(f"{name}: {raw.shape[0]} blocks, {deq.size} values")
    # After every regular file, so their random stream does not depend on this.
    for name in FORMATS:
        if name not in HOSTILE:
            continue
        qtype, _, offs = FORMATS[name]
        raw = hostile_blocks(rng, name, qtype, offs)
        with np.errstate(over="ignore", invalid="ignore"):
            deq = dequantize(raw.reshape(-1), qtype).astype("<f4")
        raw.tofile(os.path.join(OUT, f"{name}.hostile.raw"))
        deq.tofile(os.path.join(OUT, f"{name}.hostile.f32"))
        total += raw.nbytes + deq.nbytes
        print(f"{name}.hostile: {raw.shape[0]} blocks")
    # The codebook formats, regular and hostile, from their own stream.
    rng = np.random.default_rng(20261207)
    for name, (qtype, n, offs) in CODEBOOK.items():
        for suffix, raw in [
            ("", raw_blocks(rng, name, qtype, n, offs)),
            (".hostile", hostile_blocks(rng, name, qtype, offs)),
        ]:
            with np.errstate(over="ignore", invalid="ignore"):
                deq = dequantize(raw.reshape(-1), qtype).astype("<f4")
            raw.tofile(os.path.join(OUT, f"{name}{suffix}.raw"))
            deq.tofile(os.path.join(OUT, f"{name}{suffix}.f32"))
            total += raw.nbytes + deq.nbytes
            print(f"{name}{suffix}: {raw.shape[0]} blocks")
    print(f"total {total} bytes")
    if total >= 1 << 20:
        sys.exit("test vectors exceed 1 MiB")


if __name__ == "__main__":
    main()
