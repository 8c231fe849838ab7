#!/usr/bin/env python3
"""Records llama.cpp references for Gemma 3 270M requantized to IQ4_XS (tests/tests/
quant_gemma_iq4.rs), on the file scripts/make_gemma_iq4.py generates into the model cache
(`make models`), after checking that file against llama.cpp's own quantizer.

Run with the reference venv of scripts/setup-llama-ref.sh:

    ~/.cache/webjit-llamavenv/bin/python scripts/record_gemma_iq4_refs.py \
        [--src ~/.cache/webjit/models/gemma-3-270m-q4_k_m.gguf] \
        [--model ~/.cache/webjit/models/gemma-3-270m-iq4_xs.gguf] [--out tests/data/gemma_iq4]

1. Requantizes --src with llama-cpp-python's quantize API (llama_model_quantize, ftype
   IQ4_XS, allow_requantize, no importance matrix) into a temporary file, and requires every
   IQ4_NL / IQ4_XS tensor of that file to be byte-identical to the same tensor of --model, and
   the two files to have the same set of IQ4 tensors. (llama.cpp's file differs only in the
   tensors its recipe gives more bits, Q5_1/Q5_K, which --model keeps from --src.)
2. Records on --model, as scripts/record_gemma_refs.py does for the Q4_K_M file: per prompt
   the ids, the top-10 logits at the last prompt position, 32 greedy steps (token-by-token and
   batched top-5), and the full last-position logits (f16) of `chat` and `long`.
"""

import argparse
import ctypes
import json
import os
import sys
import tempfile

import numpy as np
import llama_cpp
from llama_cpp import Llama
from gguf import GGUFReader

import record_gemma_refs as rg

CACHE = os.path.join(os.environ.get("WEBJIT_CACHE", os.path.expanduser("~/.cache/webjit")), "models")
IQ4 = ("IQ4_NL", "IQ4_XS")


def llama_requantize(src, dst, threads):
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_XS
    p.allow_requantize = True
    p.nthread = threads
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")


def compare_iq4(llama_file, ours_file):
    """{tensor: type} of the IQ4 tensors, after checking they are the same bytes in both."""
    a = {t.name: t for t in GGUFReader(llama_file).tensors}
    b = {t.name: t for t in GGUFReader(ours_file).tensors}
    ia = {n: t.tensor_type.name for n, t in a.items() if t.tensor_type.name in IQ4}
    ib = {n: t.tensor_type.name for n, t in b.items() if t.tensor_type.name in IQ4}
    if ia != ib:
        raise SystemExit(f"IQ4 tensors differ: llama.cpp {sorted(ia.items())} ours {sorted(ib.items())}")
    for n in ia:
        if not np.array_equal(np.asarray(a[n].data), np.asarray(b[n].data)):
            raise SystemExit(f"{n}: the bytes differ from llama.cpp's quantizer output")
    kept = {n: t.tensor_type.name for n, t in a.items() if n not in ia and t.tensor_type.name != "F32"}
    return ia, kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--model", default=os.path.join(CACHE, "gemma-3-270m-iq4_xs.gguf"))
    ap.add_argument("--out", default=os.path.join(rg.ROOT, "tests", "data", "gemma_iq4"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "llama-iq4_xs.gguf")
        llama_requantize(args.src, ref, args.threads)
        iq4, llama_other = compare_iq4(ref, args.model)
    print(f"{len(iq4)} IQ4 tensors identical to llama.cpp's quantizer output", file=sys.stderr)

    llm = Llama(
        model_path=args.model,
        n_ctx=2048,
        n_batch=2048,
        n_ubatch=2048,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_gpu_layers=0,
        logits_all=False,
        seed=0,
        verbose=False,
    )
    prompts = []
    for name, text in rg.PROMPTS:
        ids = llm.tokenize(text.encode(), add_bos=True, special=True)
        print(f"{name}: {len(ids)} prompt tokens", file=sys.stderr)
        first, steps = rg.run_prompt(llm, ids)
        entry = {
            "name": name,
            "text": text,
            "prompt_ids": ids,
            "last_top10": rg.top(first, rg.TOP_LAST),
            "greedy": steps,
            "greedy_text": llm.detokenize([s["id"] for s in steps]).decode("utf-8", "replace"),
        }
        if name in rg.FULL_LOGITS:
            fname = f"{name}.logits.f16"
            first.astype("<f2").tofile(os.path.join(args.out, fname))
            entry["logits_f16"] = fname
        prompts.append(entry)

    counts = {}
    for ty in iq4.values():
        counts[ty] = counts.get(ty, 0) + 1
    with open(os.path.join(args.out, "refs.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "about": "llama.cpp (llama-cpp-python, CPU) references for Gemma 3 270M "
                "requantized to IQ4_XS by scripts/make_gemma_iq4.py; made by "
                "scripts/record_gemma_iq4_refs.py. Greedy = argmax of the raw logits; top "
                "lists are [id, logit]; gap = top1 - top2 logit.",
                "llama_cpp_python": llama_cpp.__version__,
                "model": os.path.basename(args.model),
                "model_sha256": rg.sha256(args.model),
                "source_sha256": rg.sha256(args.src),
                "iq4_tensors_identical_to_llama_cpp": counts,
                "llama_cpp_other_types": sorted(set(llama_other.values())),
                "n_vocab": llm.n_vocab(),
                "prompts": prompts,
            },
            f,
            ensure_ascii=False,
            indent=1,
        )
    print("wrote", args.out, file=sys.stderr)


if __name__ == "__main__":
    main()
