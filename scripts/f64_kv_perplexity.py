#!/usr/bin/env python3
"""What a KV cache format alone costs: Gemma 3 270M's perplexity over the first chunks of the
perplexity text in exact float64 (as scripts/f64_perplexity.py), except that every K row (after
its norm and RoPE) and every V row is replaced by what a cache of the given format returns for
it. No other rounding, so the increase over --kv f64 is the format's own cost, free of either
engine's arithmetic (llama.cpp's CPU backend also rounds activations to 8 bits, and its flash
attention rounds Q to q8_0 against a quantized K: --q8-query adds that rounding of Q).

--hadamard does what llama.cpp (the version llama-cpp-python 0.3.36 ships) does before a
quantized cache (src/llama-kv-cache.cpp, attn_rot_k / attn_rot_v): K rows are multiplied by the
orthonormal Walsh-Hadamard matrix of the largest power of two (>= 64) that divides the head dim
before they are rounded, V rows by the 64-wide one in blocks (Q and the attention output get
the same matrices, so only the rounding changes).

The formats, written here from ggml's reference quantizers (ggml-quants.c) in f32 as they are:
- f16: each value rounded to IEEE half;
- q8_0: blocks of 32 along the head dim, d = max|x| / 127, q = roundf(x / d) (halves away from
  zero, x times 1/d), value q * f16(d);
- q4_0: blocks of 32, m = the value of largest magnitude (the first on ties), d = m / -8,
  n = min(15, trunc(x / d + 8.5)), value (n - 8) * f16(d).

    ~/.cache/webjit/pyenv-gguf/bin/python scripts/f64_kv_perplexity.py --tokens IDS.json \
        --ctx 512 --chunks 4 [--kv f64,f16,q8_0,q4_0] [--q8-query] [--hadamard] [--only k|v] \
        [--out FILE.json]

--only k (v) rounds only K (V) through the format; the other stays exact.

IDS.json is the text's llama.cpp token ids (BOS first), e.g. from
    ~/.cache/webjit-llamavenv/bin/python -c "import llama_cpp, json; \
      l = llama_cpp.Llama(model_path=M, vocab_only=True, verbose=False); \
      print(json.dumps(l.tokenize(open(T, 'rb').read(), add_bos=True, special=False)))"
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import f64_decoder as fd  # noqa: E402
from f64_perplexity import MODEL, forward_gemma3  # noqa: E402


def blocks(x):
    """x [..., D] as f32 blocks [..., D/32, 32]."""
    return x.astype(np.float32).reshape(x.shape[:-1] + (x.shape[-1] // 32, 32))


def q8_0(x):
    b = blocks(x)
    d = np.abs(b).max(axis=-1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = b * inv
    q = np.trunc(v + np.copysign(np.float32(0.5), v))  # roundf: halves away from zero
    return (q * d.astype(np.float16).astype(np.float32)).reshape(x.shape).astype(np.float64)


def q4_0(x):
    b = blocks(x)
    first_max = np.abs(b).argmax(axis=-1)[..., None]  # argmax: the first on ties, as ggml
    m = np.take_along_axis(b, first_max, axis=-1)
    d = m / np.float32(-8)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    n = np.minimum(15, np.trunc(b * inv + np.float32(8.5)))
    return ((n - 8) * d.astype(np.float16).astype(np.float32)).reshape(x.shape).astype(np.float64)


KV = {
    "f64": lambda x: x,
    "f16": lambda x: x.astype(np.float16).astype(np.float64),
    "q8_0": q8_0,
    "q4_0": q4_0,
}


def hadamard(n):
    """The orthonormal n x n Walsh-Hadamard matrix (Sylvester's order; symmetric, H H = I)."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / math.sqrt(n)


def rotated(f, n):
    """f applied to x rotated by the n-wide Hadamard matrix in blocks along the last dim, the
    result rotated back (what attention sees of a rotated cache, given rotated queries)."""
    h = hadamard(n)

    def g(x):
        b = x.reshape(x.shape[:-1] + (x.shape[-1] // n, n))
        r = f((b @ h).reshape(x.shape))
        return (r.reshape(b.shape) @ h).reshape(x.shape)
    return g


def forward(m, ids, out_from, kv, q8_query, rot, only=None, rotate="kv"):
    """scripts/f64_perplexity.py's Gemma 3 forward with K (after RoPE) and V passed through
    the cache format `kv` (inside llama.cpp's Hadamard rotations when `rot`), and Q through
    q8_0 when `q8_query`."""
    kround = vround = KV[kv]
    if rot:
        nk = 64
        while m.head % (2 * nk) == 0:
            nk *= 2
        kround = rotated(KV[kv], nk)
        vround = rotated(KV[kv], 64) if rotate == "kv" else KV[kv]
    if only == "k":
        vround = KV["f64"]
    elif only == "v":
        kround = KV["f64"]
    qround = None
    if q8_query:
        qround = rotated(q8_0, nk) if rot else q8_0
    return forward_gemma3(m, ids, out_from, qround=qround, kround=kround, vround=vround)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True, help="JSON list of the text's ids (BOS first)")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--kv", default="f64,f16,q8_0,q4_0", help="comma-separated formats")
    ap.add_argument("--q8-query", action="store_true",
                    help="also round Q to q8_0 under the quantized formats (llama.cpp CPU's "
                         "flash attention does)")
    ap.add_argument("--hadamard", action="store_true",
                    help="llama.cpp's Hadamard rotation of K and V around the quantized formats")
    ap.add_argument("--rotate", choices=["kv", "k"], default="kv",
                    help="with --hadamard: rotate K and V (llama.cpp) or K only (webjit)")
    ap.add_argument("--only", choices=["k", "v"], help="round only K or only V")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    kvs = args.kv.split(",")
    for kv in kvs:
        if kv not in KV:
            sys.exit(f"--kv {kv}: expected some of {', '.join(KV)}")
    tokens = json.load(open(args.tokens))
    m = fd.Model(MODEL)
    n_ctx, first = args.ctx, args.ctx // 2
    bos = tokens[0]
    res = {}
    for kv in kvs:
        t0 = time.time()
        chunk_nll = []
        for i in range(args.chunks):
            chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
            chunk[0] = bos
            q8q = args.q8_query and kv in ("q8_0", "q4_0")
            rot = args.hadamard and kv in ("q8_0", "q4_0")
            logits = forward(m, chunk, first, kv, q8q, rot, args.only, args.rotate)[:-1]
            tgt = np.asarray(chunk[first + 1:])
            mx = logits.max(axis=1)
            lse = mx + np.log(np.exp(logits - mx[:, None]).sum(axis=1))
            chunk_nll.append(float((lse - logits[np.arange(len(tgt)), tgt]).mean()))
            ppl = math.exp(sum(chunk_nll) / len(chunk_nll))  # chunks score equal counts
            print(f"{kv} [{i + 1}/{args.chunks}] ppl {ppl:.4f} ({time.time() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
        running = [math.exp(sum(chunk_nll[:k + 1]) / (k + 1)) for k in range(len(chunk_nll))]
        res[kv] = {"ppl": running[-1], "running_ppl": running, "chunk_mean_nll": chunk_nll}
    base = res.get("f64")
    for kv, r in res.items():
        rel = f" ({100 * (r['ppl'] / base['ppl'] - 1):+.2f}% over f64)" if base else ""
        print(f"{kv}: PPL = {r['ppl']:.4f}{rel}")
    if args.out:
        doc = {"what": "float64 perplexity with K/V rounded through a KV cache format; "
                       "scripts/f64_kv_perplexity.py", "n_ctx": n_ctx, "chunks": args.chunks,
               "q8_query": args.q8_query, "hadamard": args.hadamard, "rotate": args.rotate,
               "only": args.only, "kv": res}
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
