#!/usr/bin/env python3
"""Gemma 3 270M requantized to IQ4_XS the way llama.cpp's quantizer does it, without llama.cpp.

    python3 scripts/make_gemma_iq4.py SRC.gguf OUT.gguf

SRC is the Q4_K_M file of scripts/fetch-models.sh. llama.cpp's `llama_model_quantize` with
ftype IQ4_XS (llama-cpp-python 0.3.36, no importance matrix) turns this model's weights into:
  - IQ4_NL for the 640-wide rows (attn_q, attn_k, ffn_gate, ffn_up: IQ4_XS needs rows of 256,
    so llama.cpp falls back to IQ4_NL),
  - IQ4_XS for attn_output (1024 wide) and ffn_down (2048 wide) from block 2 on,
  - more bits where its recipe asks for them: Q5_1 for attn_v, Q5_K for ffn_down of blocks 0-1,
    Q8_0 for token_embd.
This script writes the same IQ4_NL and IQ4_XS tensors, byte for byte (scripts/iq4_quant.py, a
numpy port of ggml's quantizer, applied to the source tensors dequantized by the `gguf`
package as llama.cpp dequantizes them), and keeps every other tensor as it is in SRC. The
metadata is SRC's with general.file_type = 30 (MOSTLY_IQ4_XS). Deterministic (pinned gguf and
numpy in fetch-models.sh, sha256-checked there); scripts/record_gemma_iq4_refs.py checks the
IQ4 tensors against llama.cpp's own quantizer output and records llama.cpp's logits on this
file.
"""

import os
import re
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iq4_quant  # noqa: E402

FILE_TYPE_IQ4_XS = 30


def target_type(name, k):
    """The IQ4 type llama.cpp gives this tensor, or None to keep it."""
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", name)
    if not m:
        return None
    layer, kind = int(m.group(1)), m.group(2)
    if kind in ("attn_q", "attn_k", "ffn_gate", "ffn_up"):
        return T.IQ4_XS if k % 256 == 0 else T.IQ4_NL
    if kind == "attn_output" or (kind == "ffn_down" and layer >= 2):
        return T.IQ4_XS if k % 256 == 0 else T.IQ4_NL
    return None


def copy_metadata(r, w):
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), vtype, sub_type=f.types[1])
        else:
            w.add_key_value(key, f.contents(), vtype)
    w.add_file_type(FILE_TYPE_IQ4_XS)


def main():
    src, out = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(out, arch)
    copy_metadata(r, w)
    counts = {}
    for t in r.tensors:
        k = int(t.shape[0])  # ne[0]: the row length
        ty = target_type(t.name, k)
        if ty is None:
            w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
            counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
            continue
        x = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1, k)
        q = iq4_quant.quantize_iq4_xs(x) if ty == T.IQ4_XS else iq4_quant.quantize_iq4_nl(x)
        w.add_tensor(t.name, q, raw_dtype=ty)
        counts[ty.name] = counts.get(ty.name, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(out, counts, file=sys.stderr)


if __name__ == "__main__":
    main()
