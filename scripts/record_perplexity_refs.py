#!/usr/bin/env python3
"""Records llama.cpp's perplexity of Gemma 3 270M (Q4_K_M) over the perplexity text that
scripts/fetch-models.sh caches (~/.cache/webjit/corpus/sotu-2014-2016.txt) into
tests/data/perplexity/gemma-3-270m-ctx<N>.json, for `webjit perplexity`'s test and benchmark.

The method is llama.cpp's `llama-perplexity` (tools/perplexity/perplexity.cpp), redone here over
llama-cpp-python's logits: the text tokenized with add_special (BOS) and no special-token
parsing; tokens / n_ctx whole chunks; each chunk's first token replaced by BOS; each chunk
evaluated from an empty cache in one batch with logits for every position; the logits at
positions n_ctx/2 .. n_ctx-2 scored against the next token with llama.cpp's log-softmax (f32
max and exponentials, f64 sum); PPL = exp(mean NLL) with llama.cpp's +/- estimate. The running
perplexity after each chunk is kept, so a run over the first K chunks (`--chunks K`) is checked
against entry K-1.

Run with the llama-cpp-python venv (scripts/setup-llama-ref.sh):
    ~/.cache/webjit-llamavenv/bin/python scripts/record_perplexity_refs.py --ctx 512 [--chunks K]
        [--kv f16|q8_0|q4_0]
--kv sets llama.cpp's K and V cache type and turns flash attention on (llama.cpp needs it for a
quantized V cache); the file is then gemma-3-270m-ctx<N>-fa-<kv>.json.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
import time

import numpy as np
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.environ.get("WEBJIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "webjit")
MODEL = os.path.join(BASE, "models", "gemma-3-270m-q4_k_m.gguf")
TEXT = os.path.join(BASE, "corpus", "sotu-2014-2016.txt")
TEXT_SHA256 = "0edfa962c56c17c17cd39a0dc6eb89003e596257a4a13e6606399ab6308f7ea4"
OUT = os.path.join(HERE, "..", "tests", "data", "perplexity")
# ggml type ids of the KV cache types llama.cpp takes.
KV_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def nll_rows(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """llama.cpp's log_softmax per row: f32 max and exponentials, the sum in f64."""
    logits = logits.astype(np.float32, copy=False)
    m = logits.max(axis=1)
    e = np.exp(logits - m[:, None]).astype(np.float64).sum(axis=1)
    picked = logits[np.arange(len(targets)), targets].astype(np.float64)
    return m.astype(np.float64) + np.log(e) - picked


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=-1, help="at most this many chunks (all: -1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--kv", choices=sorted(KV_TYPES), help="KV cache type, with flash attention")
    args = ap.parse_args()

    data = open(TEXT, "rb").read()
    if sha256(data) != TEXT_SHA256:
        sys.exit(f"{TEXT}: sha256 mismatch (run scripts/fetch-models.sh)")
    n_ctx = args.ctx
    kv = {}
    if args.kv:
        kv = dict(type_k=KV_TYPES[args.kv], type_v=KV_TYPES[args.kv], flash_attn=True)
    llm = llama_cpp.Llama(model_path=MODEL, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                          logits_all=True, n_threads=args.threads, verbose=False, **kv)
    tokens = llm.tokenize(data, add_bos=True, special=False)
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
    bos = llm.token_bos()
    if len(tokens) < 2 * n_ctx:
        sys.exit(f"{len(tokens)} tokens; a context of {n_ctx} needs {2 * n_ctx}")
    n_chunk = len(tokens) // n_ctx
    if args.chunks > 0:
        n_chunk = min(n_chunk, args.chunks)
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    running = []
    t0 = time.time()
    for i in range(n_chunk):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[first:n_ctx - 1])
        targets = np.asarray(chunk[first + 1:n_ctx])
        v = nll_rows(logits, targets)
        nll += float(v.sum())
        nll2 += float((v * v).sum())
        count += len(v)
        running.append(float(np.exp(nll / count)))
        print(f"[{i + 1}/{n_chunk}] ppl {running[-1]:.4f} ({time.time() - t0:.0f} s)", file=sys.stderr)
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = float(np.exp(mean))
    ppl_err = float(np.sqrt(var / (count - 1)) * ppl) if var > 0 else 0.0
    ids = struct.pack(f"<{len(tokens)}I", *tokens)
    out = {
        "what": "llama.cpp perplexity (llama-perplexity's method) of Gemma 3 270M Q4_K_M "
                "over the perplexity text; written by scripts/record_perplexity_refs.py",
        "llama_cpp_python": llama_cpp.__version__,
        "model": os.path.basename(MODEL),
        "model_sha256": sha256(open(MODEL, "rb").read()),
        "text": os.path.basename(TEXT),
        "text_sha256": TEXT_SHA256,
        "text_tokens": len(tokens),
        "tokens_sha256": sha256(ids),
        "first_tokens": list(tokens[:16]),
        "n_ctx": n_ctx,
        "kv_cache": args.kv or "f16",
        "flash_attn": bool(args.kv),
        "chunks": n_chunk,
        "all_chunks": n_chunk == len(tokens) // n_ctx,
        "scored": count,
        "ppl": ppl,
        "ppl_err": ppl_err,
        "mean_nll": mean,
        "running_ppl": running,
        "seconds": round(time.time() - t0, 1),
    }
    os.makedirs(OUT, exist_ok=True)
    suffix = f"-fa-{args.kv}" if args.kv else ""
    path = os.path.join(OUT, f"gemma-3-270m-ctx{n_ctx}{suffix}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"PPL = {ppl:.4f} +/- {ppl_err:.5f} over {n_chunk} chunks -> {path}")


if __name__ == "__main__":
    main()
