#!/usr/bin/env python3
"""Records llama.cpp references for Gemma 3 270M with IQ3_S and IQ2_XS matrices
(tests/tests/quant_gemma_lowbit.rs), on the file scripts/make_gemma_lowbit.py generates into
the model cache (`make models`).

Run with the reference venv of scripts/setup-llama-ref.sh:

    cd scripts && ~/.cache/webjit-llamavenv/bin/python record_gemma_lowbit_refs.py \
        [--src ~/.cache/webjit/models/gemma-3-270m-q4_k_m.gguf] \
        [--model ~/.cache/webjit/models/gemma-3-270m-iq2_xs-iq3_s.gguf] \
        [--out tests/data/gemma_lowbit]

1. Requantizes --src with llama-cpp-python's quantize API (ftype IQ3_S, allow_requantize, no
   importance matrix; check_iq3s_quant.py) and requires each of --model's 18 IQ3_S tensors to
   be byte-identical to the same tensor of llama.cpp's output. The IQ2_XS blocks have no such
   check: they are our own quantizer's (lowbit_quant.py), since llama.cpp's IQ2_XS quantizer
   needs an importance matrix; llama.cpp only reads them here.
2. Records exactly what scripts/record_gemma_refs.py records for the Q4_K_M file (its prompts
   and run_prompt): per prompt the ids, the top-10 logits at the last prompt position, 32
   greedy steps (token-by-token and batched top-5), and the full last-position logits (f16) of
   `chat` and `long`.
"""

import argparse
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama
from gguf import GGUFReader

import check_iq3s_quant
import record_gemma_refs as rg

CACHE = os.path.join(os.environ.get("WEBJIT_CACHE", os.path.expanduser("~/.cache/webjit")), "models")
MODEL = "gemma-3-270m-iq2_xs-iq3_s.gguf"


def tensor_types(path):
    counts = {}
    for t in GGUFReader(path).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))


def check_iq3_s(src, model, threads):
    """Names of --model's IQ3_S tensors, after checking them against llama.cpp's quantizer."""
    ref = check_iq3s_quant.llama_iq3_s_tensors(src, threads)
    ours = [t for t in GGUFReader(model).tensors if t.tensor_type.name == "IQ3_S"]
    for t in ours:
        if t.name not in ref:
            raise SystemExit(f"{t.name}: llama.cpp's quantizer does not make it IQ3_S")
        check_iq3s_quant.compare(t.name, np.array(t.data), ref[t.name])
    print(f"{len(ours)} IQ3_S tensors identical to llama.cpp's quantizer output", file=sys.stderr)
    return sorted(t.name for t in ours)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--model", default=os.path.join(CACHE, MODEL))
    ap.add_argument("--out", default=os.path.join(rg.ROOT, "tests", "data", "gemma_lowbit"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    iq3_s = check_iq3_s(args.src, args.model, args.threads)

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
        print(f"  greedy: {entry['greedy_text']!r}", file=sys.stderr)
        if name in rg.FULL_LOGITS:
            fname = f"{name}.logits.f16"
            first.astype("<f2").tofile(os.path.join(args.out, fname))
            entry["logits_f16"] = fname
        prompts.append(entry)

    with open(os.path.join(args.out, "refs.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "about": "llama.cpp (llama-cpp-python, CPU) references for Gemma 3 270M with "
                "IQ3_S/IQ2_XS attn_output and ffn_down written by scripts/make_gemma_lowbit.py "
                "(IQ3_S: llama.cpp's quantizer's bytes; IQ2_XS: our own quantizer's); made by "
                "scripts/record_gemma_lowbit_refs.py. Greedy = argmax of the raw logits; top "
                "lists are [id, logit]; gap = top1 - top2 logit.",
                "llama_cpp_python": llama_cpp.__version__,
                "model": os.path.basename(args.model),
                "model_sha256": rg.sha256(args.model),
                "source_sha256": rg.sha256(args.src),
                "tensor_types": tensor_types(args.model),
                "iq3_s_tensors_identical_to_llama_cpp": len(iq3_s),
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
