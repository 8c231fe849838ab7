#!/usr/bin/env python3
"""llama.cpp's perplexity of Gemma 3 270M (Q4_K_M) over the perplexity text with each KV cache
type it offers (f16, q8_0, q4_0), flash attention on for all of them, so that the cost of a
quantized KV cache in llama.cpp can be set beside `webjit perplexity --kv-cache ...`.

The method is `webjit perplexity`'s and llama-perplexity's (scripts/record_perplexity_refs.py,
whose tokenization and scoring this reuses): the text tokenized with BOS, tokens / n_ctx whole
chunks (at most --chunks), each chunk's first token replaced by BOS and evaluated from an empty
cache as one batch, the logits at positions n_ctx/2 .. n_ctx-2 scored against the next token.
The same tokens go through every cache type, so the per-chunk figures pair up.

    ~/.cache/webjit-llamavenv/bin/python scripts/llama_kv_perplexity.py --ctx 512 --chunks 8 \
        [--kv f16,q8_0,q4_0] [--threads 2] [--out results.json]

Prints, per cache type, the running perplexity after each chunk and the final figure with its
increase over f16; --out writes the same as JSON (per-chunk mean NLL included).

With a quantized K (V) cache and a head dim that is a multiple of 64, this llama.cpp multiplies
Q and K (V, undone after attention) by an orthonormal Walsh-Hadamard matrix before caching them
(src/llama-kv-cache.cpp, attn_rot_k / attn_rot_v), which spreads a head's outlier channels over
its blocks; LLAMA_ATTN_ROT_DISABLE=1 in the environment turns that off, and the JSON records it.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_perplexity_refs import KV_TYPES, MODEL, TEXT, TEXT_SHA256, nll_rows, sha256  # noqa: E402


def run(kv, tokens, n_ctx, n_chunk, threads):
    """Per-chunk NLL arrays of the first n_chunk chunks with K and V cached as `kv`."""
    llm = llama_cpp.Llama(model_path=MODEL, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                          logits_all=True, n_threads=threads, verbose=False,
                          type_k=KV_TYPES[kv], type_v=KV_TYPES[kv], flash_attn=True)
    bos = llm.token_bos()
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
    first = n_ctx // 2
    out = []
    t0 = time.time()
    total = 0.0
    for i in range(n_chunk):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        v = nll_rows(np.asarray(llm.scores[first:n_ctx - 1]), np.asarray(chunk[first + 1:n_ctx]))
        out.append(v)
        total += float(v.sum())
        n = sum(len(c) for c in out)
        print(f"{kv} [{i + 1}/{n_chunk}] ppl {np.exp(total / n):.4f} ({time.time() - t0:.0f} s)",
              file=sys.stderr, flush=True)
    return out, time.time() - t0


def summary(nlls):
    v = np.concatenate(nlls)
    mean = float(v.mean())
    var = float((v * v).mean()) - mean * mean
    ppl = float(np.exp(mean))
    err = float(np.sqrt(var / (len(v) - 1)) * ppl) if var > 0 else 0.0
    running = [float(np.exp(np.concatenate(nlls[:k + 1]).mean())) for k in range(len(nlls))]
    return ppl, err, mean, running


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=8, help="at most this many chunks (all: -1)")
    ap.add_argument("--kv", default="f16,q8_0,q4_0", help="comma-separated cache types")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    kvs = args.kv.split(",")
    for kv in kvs:
        if kv not in KV_TYPES:
            sys.exit(f"--kv {kv}: expected some of {', '.join(sorted(KV_TYPES))}")

    data = open(TEXT, "rb").read()
    if sha256(data) != TEXT_SHA256:
        sys.exit(f"{TEXT}: sha256 mismatch (run scripts/fetch-models.sh)")
    # The tokenizer alone (no weights) gives the ids every run shares.
    tok = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
    tokens = tok.tokenize(data, add_bos=True, special=False)
    n_ctx = args.ctx
    n_chunk = len(tokens) // n_ctx
    if args.chunks > 0:
        n_chunk = min(n_chunk, args.chunks)

    res = {}
    for kv in kvs:
        nlls, secs = run(kv, tokens, n_ctx, n_chunk, args.threads)
        ppl, err, mean, running = summary(nlls)
        res[kv] = {"ppl": ppl, "ppl_err": err, "mean_nll": mean, "running_ppl": running,
                   "chunk_mean_nll": [float(c.mean()) for c in nlls], "seconds": round(secs, 1)}
    base = res.get("f16")
    for kv, r in res.items():
        rel = f" ({100 * (r['ppl'] / base['ppl'] - 1):+.2f}% over f16)" if base else ""
        print(f"{kv}: PPL = {r['ppl']:.4f} +/- {r['ppl_err']:.5f}{rel}, {r['seconds']} s")
    if args.out:
        doc = {"what": "llama.cpp perplexity per KV cache type (flash attention on), "
                       "scripts/llama_kv_perplexity.py",
               "llama_cpp_python": llama_cpp.__version__, "model": os.path.basename(MODEL),
               "text": os.path.basename(TEXT), "text_tokens": len(tokens), "n_ctx": n_ctx,
               "chunks": n_chunk, "threads": args.threads,
               "LLAMA_ATTN_ROT_DISABLE": os.environ.get("LLAMA_ATTN_ROT_DISABLE"), "kv": res}
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
