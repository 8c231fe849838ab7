#!/usr/bin/env python3
"""llama.cpp's speed on a GGUF through llama-cpp-python, as the baseline for
`webjit bench model` (same prompt/generation lengths, same machine, same run).

    ~/.cache/webjit-llamavenv/bin/python scripts/bench_llama_cpp.py \
        --model ~/.cache/webjit/models/gemma-3-270m-q4_k_m.gguf \
        --prompt-tokens 128 --gen-tokens 128 [--threads N] [--gpu-layers -1] [--reps 3]

Prints one JSON object: prefill_tok_s (the whole prompt in one batch, like llama-bench's pp),
decode_tok_s (one token per call, greedy argmax, like tg), the best of --reps runs each.
Prompt tokens are seeded random ids from the normal part of the vocabulary (speed does not
depend on the text). `--extra-bufts` enables llama.cpp's repacked/AMX CPU weight layouts
(faster on most CPUs; off by default because the AMX path crashes in this sandbox).
"""

import argparse
import json
import os
import time

import numpy as np

import llama_ref


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--extra-bufts", action="store_true")
    args = ap.parse_args()
    if not args.extra_bufts:
        llama_ref.plain_cpu()
    import llama_cpp
    from llama_cpp import Llama

    n_ctx = args.prompt_tokens + args.gen_tokens + 8
    llm = Llama(
        model_path=args.model,
        n_ctx=n_ctx,
        n_batch=max(args.prompt_tokens, 1),
        n_ubatch=max(args.prompt_tokens, 1),
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_gpu_layers=args.gpu_layers,
        logits_all=False,
        verbose=False,
    )
    n_vocab = llm.n_vocab()
    rng = np.random.default_rng(0)
    # Skip the first ids (control tokens in most vocabularies).
    prompt = [llm.token_bos()] + rng.integers(
        min(1000, n_vocab // 2), n_vocab, args.prompt_tokens - 1
    ).tolist()

    def last_logits():
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    best_pp, best_tg = 0.0, 0.0
    for _ in range(args.reps):
        llm.reset()
        llm._ctx.kv_cache_clear()
        t0 = time.perf_counter()
        llm.eval(prompt)
        tok = int(np.argmax(last_logits()))
        t1 = time.perf_counter()
        for _ in range(args.gen_tokens):
            llm.eval([tok])
            tok = int(np.argmax(last_logits()))
        t2 = time.perf_counter()
        best_pp = max(best_pp, len(prompt) / (t1 - t0))
        best_tg = max(best_tg, args.gen_tokens / (t2 - t1))
    print(
        json.dumps(
            {
                "engine": "llama.cpp (llama-cpp-python %s)" % llama_cpp.__version__,
                "model": os.path.basename(args.model),
                "prompt_tokens": len(prompt),
                "gen_tokens": args.gen_tokens,
                "threads": args.threads,
                "gpu_layers": args.gpu_layers,
                "extra_bufts": args.extra_bufts,
                "prefill_tok_s": round(best_pp, 2),
                "decode_tok_s": round(best_tg, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
