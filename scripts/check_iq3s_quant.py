#!/usr/bin/env python3
"""Checks scripts/iq3s_quant.py (our numpy IQ3_S quantizer) byte for byte against llama.cpp's.

Run with the reference venv of scripts/setup-llama-ref.sh:

    cd scripts && ~/.cache/webjit-llamavenv/bin/python check_iq3s_quant.py \
        [--src ~/.cache/webjit/models/gemma-3-270m-q4_k_m.gguf] [--seed 0]

1. Random data: ggml's `ggml_quantize_chunk` (IQ3_S, no importance matrix) from the
   libggml-base that llama-cpp-python ships, called through ctypes, against the port on rows
   drawn from several distributions, with the awkward cases mixed in: all-zero sub-blocks and
   super-blocks, a single nonzero value, constant runs, -0.0, values exactly on the grid
   levels, tiny values whose squares are subnormal, large values.
2. Gemma: llama-cpp-python's quantize API (llama_model_quantize, ftype IQ3_S,
   allow_requantize) on --src, then every IQ3_S tensor of its output against the port applied
   to the same --src tensor dequantized by the `gguf` package (as llama.cpp dequantizes it).
Exits non-zero on the first difference, naming the tensor, block and byte offsets.
"""

import argparse
import ctypes
import os
import sys
import tempfile
import time

import numpy as np
import llama_cpp
import gguf
from gguf.quants import dequantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iq3s_quant  # noqa: E402

CACHE = os.path.join(os.environ.get("WEBJIT_CACHE", os.path.expanduser("~/.cache/webjit")), "models")
GGML_TYPE_IQ3_S = 21
BLOCK = 110


def ggml_iq3_s(x):
    """llama.cpp's IQ3_S bytes for f32 rows x [rows, k]."""
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    f = lib.ggml_quantize_chunk
    f.restype = ctypes.c_size_t
    f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                  ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, k = x.shape
    out = np.zeros((rows, k // 256 * BLOCK), np.uint8)
    n = f(GGML_TYPE_IQ3_S, x.ctypes.data, out.ctypes.data, 0, rows, k, None)
    assert n == out.size
    return out


def compare(name, ours, ref):
    """Raises SystemExit naming the first differing block; returns the block count."""
    a, b = ours.reshape(-1, BLOCK), np.asarray(ref).reshape(-1, BLOCK)
    if a.shape != b.shape:
        raise SystemExit(f"{name}: shape {a.shape} against llama.cpp's {b.shape}")
    bad = np.nonzero((a != b).any(axis=1))[0]
    if bad.size:
        i = bad[0]
        raise SystemExit(f"{name}: {bad.size} of {a.shape[0]} blocks differ; first block {i}, "
                         f"bytes {np.nonzero(a[i] != b[i])[0].tolist()}")
    return a.shape[0]


def random_rows(rng):
    """[rows, 1024] f32 test rows: named cases, each a few rows."""
    k = 1024
    cases = {
        "normal": rng.standard_normal((64, k)),
        "uniform": rng.uniform(-1, 1, (64, k)),
        "student-t(2)": rng.standard_t(2, (64, k)),
        "positive": np.abs(rng.standard_normal((16, k))),
        "small 1e-3": 1e-3 * rng.standard_normal((16, k)),
        "tiny 1e-22 (subnormal squares)": 1e-22 * rng.standard_normal((8, k)),
        "large 1e9": 1e9 * rng.standard_normal((8, k)),
        "grid levels": rng.integers(-7, 8, (16, k)) * 2.0 + np.sign(rng.standard_normal((16, k))),
        "few levels": rng.integers(-2, 3, (16, k)).astype(np.float64),
        "constant": np.full((4, k), 0.37),
    }
    x = rng.standard_normal((32, k))
    subs = x.reshape(32, -1, 32)
    subs[:, ::3] = 0  # every third sub-block zero
    subs[::4, 5:9] = 0  # whole super-blocks zero
    subs[1::4, 2, 1:] = 0  # one nonzero value
    subs[2::4, 4, :] = -0.0
    subs[3::4, 7, :16] = 1.25
    cases["zero and single-value sub-blocks"] = x
    z = np.zeros((4, k))
    z[0, 700] = 1.0
    z[1, 3] = -2.5
    cases["almost all zero"] = z
    return {n: v.astype(np.float32) for n, v in cases.items()}


def check_random(seed):
    rng = np.random.default_rng(seed)
    total = 0
    for name, x in random_rows(rng).items():
        total += compare(f"random {name}", iq3s_quant.quantize_iq3_s(x), ggml_iq3_s(x))
    print(f"random: {total} blocks identical to ggml_quantize_chunk", file=sys.stderr)
    return total


def llama_requantize(src, dst, threads):
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_IQ3_S
    p.allow_requantize = True
    p.nthread = threads
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")


def llama_iq3_s_tensors(src, threads):
    """{name: bytes} of the IQ3_S tensors llama.cpp's quantizer writes for src."""
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "llama-iq3_s.gguf")
        llama_requantize(src, ref, threads)
        return {t.name: np.array(t.data) for t in gguf.GGUFReader(ref).tensors
                if t.tensor_type == gguf.GGMLQuantizationType.IQ3_S}


def check_gemma(src, threads):
    ref = llama_iq3_s_tensors(src, threads)
    tensors = {t.name: t for t in gguf.GGUFReader(src).tensors}
    blocks = 0
    for name, data in sorted(ref.items()):
        t = tensors[name]
        x = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1, int(t.shape[0]))
        blocks += compare(name, iq3s_quant.quantize_iq3_s(x), data)
    print(f"gemma: {len(ref)} IQ3_S tensors ({blocks} blocks) identical to "
          f"llama_model_quantize's", file=sys.stderr)
    return ref


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    start = time.time()
    check_random(args.seed)
    check_gemma(args.src, args.threads)
    print(f"llama-cpp-python {llama_cpp.__version__}: all identical ({time.time() - start:.0f} s)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
