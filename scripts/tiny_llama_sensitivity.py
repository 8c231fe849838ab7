#!/usr/bin/env python3
"""Shows that every sublayer of tests/data/tiny_llama/tiny-llama.gguf matters: zeroes one
weight matrix at a time (all-zero blocks dequantize to 0) and reports, per prompt, the NMSE
of llama.cpp's last-position logits against refs.json and whether the argmax survives.
A golden test with an NMSE bound of 5e-3 therefore catches a broken or skipped sublayer.

    ~/.cache/webjit-llamavenv/bin/python scripts/tiny_llama_sensitivity.py
"""

import json
import os
import shutil
import tempfile

import gguf
import numpy as np

import llama_ref

llama_ref.plain_cpu()
from llama_cpp import Llama  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "tests", "data", "tiny_llama")
VICTIMS = [
    "blk.0.attn_q.weight",
    "blk.1.attn_k.weight",
    "blk.0.attn_v.weight",
    "blk.1.attn_output.weight",
    "blk.0.ffn_gate.weight",
    "blk.0.ffn_down.weight",
    "blk.1.ffn_up.weight",
    "blk.1.ffn_down.weight",
]


def main():
    src = os.path.join(DIR, "tiny-llama.gguf")
    refs = json.load(open(os.path.join(DIR, "refs.json")))
    tensors = {t.name: t for t in gguf.GGUFReader(src).tensors}
    with tempfile.TemporaryDirectory() as tmp:
        dst = os.path.join(tmp, "zeroed.gguf")
        for name in VICTIMS:
            shutil.copy(src, dst)
            t = tensors[name]
            with open(dst, "r+b") as f:
                f.seek(int(t.data_offset))
                f.write(b"\0" * int(t.n_bytes))
            llm = Llama(model_path=dst, n_ctx=256, n_batch=256, n_threads=2,
                        logits_all=True, verbose=False)
            row = []
            for p in refs["prompts"]:
                llm.reset()
                llm._ctx.kv_cache_clear()
                llm.eval(p["prompt_ids"])
                got = np.array(llm.scores[len(p["prompt_ids"]) - 1], dtype=np.float64)
                want = np.array(p["logits"][-1], dtype=np.float64)
                nmse = ((got - want) ** 2).sum() / (want ** 2).sum()
                same = "same argmax" if got.argmax() == want.argmax() else "new argmax"
                row.append(f"{p['name']} {nmse:.2e} {same}")
            print(f"{name:28s}", "; ".join(row))
            del llm


if __name__ == "__main__":
    main()
