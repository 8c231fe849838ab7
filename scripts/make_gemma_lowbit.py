#!/usr/bin/env python3
"""Gemma 3 270M with its 256-divisible matrices requantized to IQ3_S and IQ2_XS.

    python3 scripts/make_gemma_lowbit.py SRC.gguf OUT.gguf

SRC is the Q4_K_M file of scripts/fetch-models.sh. The codebook formats pack 256 values per
block, so only the matrices whose rows (ne[0]) are a multiple of 256 can take them: attn_output
(1024) and ffn_down (2048). attn_q/k/v, ffn_gate and ffn_up have 640-wide rows, where
llama.cpp itself falls back to another type (IQ4_NL), which gemma-3-270m-iq4_xs.gguf already
covers; they and token_embd keep their SRC types here.

One file holds both formats, each on both shapes, so one set of llama.cpp references checks
both: even blocks get IQ3_S attn_output and IQ2_XS ffn_down, odd blocks the reverse (18
tensors of each format, 9 of each width). Both are applied to the SRC tensors dequantized by
the `gguf` package (as llama.cpp dequantizes them):
  - IQ3_S blocks come from scripts/iq3s_quant.py, a numpy port of llama.cpp's own IQ3_S
    quantizer without an importance matrix: they are the bytes llama_model_quantize (ftype
    IQ3_S) writes for these tensors (scripts/check_iq3s_quant.py and
    record_gemma_lowbit_refs.py check that against llama-cpp-python);
  - IQ2_XS blocks come from scripts/lowbit_quant.py, our own deterministic quantizer, since
    llama.cpp refuses IQ2_XS without an importance matrix.
Every tensor is checked by dequantizing the written blocks with `gguf` and its relative RMS
error against the source values is printed. general.file_type is 20 (MOSTLY_IQ2_XS, the
lowest format present; llama.cpp only prints it). Deterministic for the gguf/numpy pinned in
fetch-models.sh (which checks the sha256).
"""

import os
import re
import sys
import time

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import IQ2_XS, dequantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iq3s_quant  # noqa: E402
import lowbit_quant  # noqa: E402


def quantize(x, ty):
    if ty == T.IQ3_S:
        return iq3s_quant.quantize_iq3_s(x)
    return lowbit_quant.quantize(x, IQ2_XS)


def target_type(name, k):
    """The low-bit type of this tensor, or None to keep it."""
    m = re.fullmatch(r"blk\.(\d+)\.(attn_output|ffn_down)\.weight", name)
    if not m or k % 256 != 0:
        return None
    even = int(m.group(1)) % 2 == 0
    return T.IQ3_S if even == (m.group(2) == "attn_output") else T.IQ2_XS


def copy_metadata(r, w):
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), vtype, sub_type=f.types[1])
        else:
            w.add_key_value(key, f.contents(), vtype)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_IQ2_XS)


def main():
    src, out = sys.argv[1], sys.argv[2]
    start = time.time()
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(out, r.fields["general.architecture"].contents())
    copy_metadata(r, w)
    counts, errs = {}, {}
    for t in r.tensors:
        k = int(t.shape[0])  # ne[0]: the row length
        ty = target_type(t.name, k)
        if ty is None:
            w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
            counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
            continue
        x = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1, k)
        q = quantize(x, ty)
        # The reference check: gguf's dequantizer reads the blocks back.
        y = dequantize(q, ty).reshape(x.shape)
        if not np.isfinite(y).all():
            raise SystemExit(f"{t.name}: non-finite values after dequantization")
        rel = float(np.sqrt(np.sum((y - x) ** 2, dtype=np.float64) / np.sum(x**2, dtype=np.float64)))
        errs.setdefault(ty.name, []).append(rel)
        print(f"{t.name} {src_type(t)} -> {ty.name}: relative RMS error {rel:.4f}", file=sys.stderr)
        w.add_tensor(t.name, q, raw_dtype=ty)
        counts[ty.name] = counts.get(ty.name, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for name, e in sorted(errs.items()):
        print(f"{name}: {len(e)} tensors, relative RMS error {min(e):.4f} .. {max(e):.4f} "
              f"(mean {np.mean(e):.4f})", file=sys.stderr)
    print(out, counts, f"{time.time() - start:.0f} s", file=sys.stderr)


def src_type(t):
    return t.tensor_type.name


if __name__ == "__main__":
    main()
