#!/usr/bin/env python3
"""Gemma 3 270M's perplexity over the first chunks of the perplexity text, evaluated exactly in
float64 (weights dequantized, no rounding of activations or of the KV cache), with
llama-perplexity's method (see scripts/record_perplexity_refs.py). It tells how far llama.cpp's
figure (tests/data/perplexity/) sits from exact arithmetic: llama.cpp's CPU backend rounds
activations to 8 bits in every quantized product (q8_0/q8_K), which raises the perplexity a
little; webjit's f32 products do not.

    ~/.cache/webjit/pyenv-gguf/bin/python scripts/f64_perplexity.py --ctx 128 --chunks 4 \
        --tokens IDS.json [--write]

Tokens come from --tokens (a JSON list of llama.cpp's ids of the text, BOS first), else from
llama-cpp-python when importable. Prints the running perplexity after each chunk as JSON; with
--write also into tests/data/perplexity/gemma-3-270m-ctx<N>.f64.json, which
tests/tests/perplexity.rs checks webjit against (within 0.1%, where llama.cpp sits 0.5-2% above).
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import f64_decoder as fd  # noqa: E402

BASE = os.environ.get("WEBJIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "webjit")
MODEL = os.path.join(BASE, "models", "gemma-3-270m-q4_k_m.gguf")


def forward_gemma3(m, ids, out_from, qround=None, kround=None, vround=None):
    """Logits [len(ids) - out_from, vocab] of one causal sequence, as llama.cpp's gemma3 graph
    (src/models/gemma3.cpp): embeddings scaled by sqrt(d), q/k RMS norms, RoPE (NeoX) with base
    10000 on the sliding-window layers (5 of every 6) and rope.freq_base on the others, window
    masks on the local layers, post-attention and post-FFN norms, GELU (tanh) gated FFN.
    `qround` / `kround` (after RoPE) and `vround` (after the projection), when given, pass Q, K
    and V through a cache format (scripts/f64_kv_perplexity.py)."""
    ident = lambda a: a  # noqa: E731
    qround, kround, vround = qround or ident, kround or ident, vround or ident
    w = m.w
    T = len(ids)
    pos = np.arange(T)
    x = w["token_embd.weight"][np.asarray(ids)] * math.sqrt(m.d)
    H, K, D = m.n_head, m.n_kv, m.head
    swa = int(m.meta.get("gemma3.attention.sliding_window", 0))
    base_global = m.base
    base_local = float(m.meta.get("gemma3.rope.freq_base_swa", 10000.0))
    causal = pos[None, :] <= pos[:, None]
    for il in range(m.n_layer):
        p = f"blk.{il}."
        local = swa > 0 and il % 6 < 5

        def lin(name, v):
            return v @ w[p + name + ".weight"].T

        h = fd.rms(x, w[p + "attn_norm.weight"], m.eps)
        q = lin("attn_q", h).reshape(T, H, D)
        k = lin("attn_k", h).reshape(T, K, D)
        v = vround(lin("attn_v", h).reshape(T, K, D))
        q = fd.rms(q, w[p + "attn_q_norm.weight"], m.eps)
        k = fd.rms(k, w[p + "attn_k_norm.weight"], m.eps)
        m.base = base_local if local else base_global
        q, k = qround(fd.rope(q, pos, m, None)), kround(fd.rope(k, pos, m, None))
        mask = causal & (pos[:, None] - pos[None, :] < swa) if local else causal
        att = np.empty((T, H, D))
        for hh in range(H):
            kv = hh // (H // K)
            s = (q[:, hh, :] @ k[:, kv, :].T) * m.kq_scale
            s = np.where(mask, s, -np.inf)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            att[:, hh, :] = s @ v[:, kv, :]
        a = fd.rms(lin("attn_output", att.reshape(T, H * D)), w[p + "post_attention_norm.weight"], m.eps)
        x = x + a
        h = fd.rms(x, w[p + "ffn_norm.weight"], m.eps)
        f = lin("ffn_down", fd.gelu_tanh(lin("ffn_gate", h)) * lin("ffn_up", h))
        x = x + fd.rms(f, w[p + "post_ffw_norm.weight"], m.eps)
    m.base = base_global
    x = fd.rms(x[out_from:], w["output_norm.weight"], m.eps)
    return x @ m.out.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--tokens", help="JSON list of the text's token ids (BOS first)")
    ap.add_argument("--write", action="store_true", help="write tests/data/perplexity/...f64.json")
    args = ap.parse_args()
    if args.tokens:
        tokens = json.load(open(args.tokens))
    else:
        import llama_cpp
        text = open(os.path.join(BASE, "corpus", "sotu-2014-2016.txt"), "rb").read()
        llm = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
        tokens = llm.tokenize(text, add_bos=True, special=False)
    m = fd.Model(MODEL)
    n_ctx, first = args.ctx, args.ctx // 2
    bos = tokens[0]
    nll, count, running = 0.0, 0, []
    for i in range(args.chunks):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        chunk[0] = bos
        logits = forward_gemma3(m, chunk, first)[:-1]
        tgt = np.asarray(chunk[first + 1:])
        mx = logits.max(axis=1)
        lse = mx + np.log(np.exp(logits - mx[:, None]).sum(axis=1))
        v = lse - logits[np.arange(len(tgt)), tgt]
        nll += float(v.sum())
        count += len(v)
        running.append(math.exp(nll / count))
        print(f"[{i + 1}/{args.chunks}] f64 ppl {running[-1]:.4f}", file=sys.stderr)
    out = {
        "what": "exact float64 perplexity (llama-perplexity's method) of Gemma 3 270M Q4_K_M "
                "over the first chunks of the perplexity text; scripts/f64_perplexity.py",
        "text_tokens": len(tokens),
        "n_ctx": n_ctx,
        "chunks": args.chunks,
        "running_ppl": running,
    }
    print(json.dumps(out))
    if args.write:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                            "perplexity", f"gemma-3-270m-ctx{n_ctx}.f64.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
