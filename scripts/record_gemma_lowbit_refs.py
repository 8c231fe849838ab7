#!/usr/bin/env python3
"""Records llama.cpp references for Gemma 3 270M with IQ3_S and IQ2_XS matrices
(tests/tests/quant_gemma_lowbit.rs), on the file scripts/make_gemma_lowbit.py generates into
the model cache (`make models`).

Run with the reference venv of scripts/setup-llama-ref.sh:

    cd scripts && ~/.cache/webjit-llamavenv/bin/python record_gemma_lowbit_refs.py \
        [--model ~/.cache/webjit/models/gemma-3-270m-iq2_xs-iq3_s.gguf] [--out tests/data/gemma_lowbit]

Records exactly what scripts/record_gemma_refs.py records for the Q4_K_M file (its prompts and
run_prompt): per prompt the ids, the top-10 logits at the last prompt position, 32 greedy steps
(token-by-token and batched top-5), and the full last-position logits (f16) of `chat` and
`long`. Unlike the IQ4_XS file there is no byte check against llama.cpp's quantizer: the
IQ2_XS/IQ3_S blocks are our own quantizer's (llama.cpp's searches the grid with an importance
matrix); llama.cpp only reads them here.
"""

import argparse
import json
import os
import sys

import llama_cpp
from llama_cpp import Llama
from gguf import GGUFReader

import record_gemma_refs as rg

CACHE = os.path.join(os.environ.get("WEBJIT_CACHE", os.path.expanduser("~/.cache/webjit")), "models")
MODEL = "gemma-3-270m-iq2_xs-iq3_s.gguf"


def tensor_types(path):
    counts = {}
    for t in GGUFReader(path).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(CACHE, MODEL))
    ap.add_argument("--out", default=os.path.join(rg.ROOT, "tests", "data", "gemma_lowbit"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

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
                "IQ3_S/IQ2_XS attn_output and ffn_down written by scripts/make_gemma_lowbit.py; "
                "made by scripts/record_gemma_lowbit_refs.py. Greedy = argmax of the raw logits; "
                "top lists are [id, logit]; gap = top1 - top2 logit.",
                "llama_cpp_python": llama_cpp.__version__,
                "model": os.path.basename(args.model),
                "model_sha256": rg.sha256(args.model),
                "tensor_types": tensor_types(args.model),
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
