#!/usr/bin/env python3
"""Exact float64 evaluation of a Gemma 3 GGUF (scripts/f64_decoder.py covers the other
families), written as llama.cpp's gemma3 graph defines the model (src/models/gemma3.cpp): the
embedding times sqrt(d); per layer RMSNorm, q/k RMSNorm per head, NEOX rope (base 10000 on the
sliding-window layers, rope.freq_base on every sixth, global, layer), q scaled by
1/sqrt(head), a 512-token window (keys at distance >= window masked) on the local layers,
post-attention and post-FFN norms, GELU (tanh) gated FFN; tied output. No activation rounding
and no f16 KV cache: it tells whether webjit or llama.cpp is off where they disagree.

    cd scripts && ~/.cache/webjit/pyenv-gguf/bin/python f64_gemma3.py gemma_lowbit \
        [--model ~/.cache/webjit/models/gemma-3-270m-iq2_xs-iq3_s.gguf]

reads tests/data/<DIR>/refs.json (llama.cpp's references) and writes tests/data/<DIR>/f64.json
(+ <prompt>.f64.logits.f16) in the format of tests/data/families/<family>.f64.json (see
tests/src/f64_refs.rs): per prompt the last position's top-10 and full logits, f64's own
greedy steps, and llama.cpp's measured distance from f64 on llama.cpp's own greedy tokens.
Needs gguf + numpy only (the pinned venv ~/.cache/webjit/pyenv-gguf); ~10 minutes on 2 cores.
"""

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np

import f64_decoder as fd

N_STEPS = 16
WINDOW_PATTERN = 6  # llama.cpp's gemma3: layers il % 6 < 5 use the sliding window
SWA_BASE = 10000.0  # llama.cpp's default rope base for the window layers (no GGUF key here)


def forward(m, ids, out_from):
    """Logits [len(ids) - out_from, n_vocab] of positions out_from.. of one causal sequence."""
    w = m.w
    T = len(ids)
    pos = np.arange(T)
    x = w["token_embd.weight"][np.asarray(ids)] * math.sqrt(m.d)
    H, K, D = m.n_head, m.n_kv, m.head
    window = int(m.meta["gemma3.attention.sliding_window"])
    global_base = float(m.meta["gemma3.rope.freq_base"])
    causal = pos[None, :] <= pos[:, None]
    for il in range(m.n_layer):
        p = f"blk.{il}."

        def lin(name, v):
            return v @ w[p + name + ".weight"].T

        local = il % WINDOW_PATTERN < WINDOW_PATTERN - 1
        m.base = SWA_BASE if local else global_base  # read by fd.rope
        h = fd.rms(x, w[p + "attn_norm.weight"], m.eps)
        q = fd.rms(lin("attn_q", h).reshape(T, H, D), w[p + "attn_q_norm.weight"], m.eps)
        k = fd.rms(lin("attn_k", h).reshape(T, K, D), w[p + "attn_k_norm.weight"], m.eps)
        v = lin("attn_v", h).reshape(T, K, D)
        q = fd.rope(q, pos, m, None) / math.sqrt(D)
        k = fd.rope(k, pos, m, None)
        mask = causal & (pos[:, None] - pos[None, :] < window) if local else causal
        att = np.empty((T, H, D))
        for hh in range(H):
            kv = hh // (H // K)
            s = np.where(mask, q[:, hh, :] @ k[:, kv, :].T, -np.inf)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            att[:, hh, :] = s @ v[:, kv, :]
        a = fd.rms(lin("attn_output", att.reshape(T, H * D)), w[p + "post_attention_norm.weight"], m.eps)
        x = x + a
        h = fd.rms(x, w[p + "ffn_norm.weight"], m.eps)
        f = lin("ffn_down", fd.gelu_tanh(lin("ffn_gate", h)) * lin("ffn_up", h))
        x = x + fd.rms(f, w[p + "post_ffw_norm.weight"], m.eps)
    x = fd.rms(x[out_from:], w["output_norm.weight"], m.eps)
    return x @ m.out.T


def greedy(m, ids, steps):
    """f64's own greedy run: the last prompt logits and per step (id, top-10, gap)."""
    seq = list(ids)
    last, out = None, []
    for i in range(steps):
        lg = forward(m, seq, len(seq) - 1)[0]
        if i == 0:
            last = lg
        t = fd.top(lg, fd.TOPK)
        out.append(dict(id=t[0][0], top=t, gap=t[0][1] - t[1][1]))
        seq.append(t[0][0])
    return last, out


def llama_deviation(m, data, p):
    """llama.cpp's recorded numbers for prompt p against f64 on llama.cpp's own tokens (as
    f64_decoder.llama_deviation). Where only llama.cpp's top-10 was recorded (no full logits),
    the last-position distance is taken on the ids both top-10s share and last_nmse is 0 (the
    golden rule uses it only where the full vector exists)."""
    ids = p["prompt_ids"] + [s["id"] for s in p["greedy"]]
    lg = forward(m, ids, len(p["prompt_ids"]) - 1)
    t10 = [i for i, _ in fd.top(lg[0], fd.TOPK)]
    if p.get("logits_f16"):
        llama_last = np.fromfile(os.path.join(data, p["logits_f16"]), dtype="<f2").astype(np.float64)
        last_abs = float(np.max(np.abs(llama_last[t10] - lg[0][t10])))
        nmse = float(np.sum((llama_last - lg[0]) ** 2) / np.sum(lg[0] ** 2))
    else:
        llama_top = dict((i, v) for i, v in p["last_top10"])
        last_abs = max((abs(llama_top[i] - lg[0][i]) for i in t10 if i in llama_top), default=0.0)
        nmse = 0.0
    steps = []
    for i, s in enumerate(p["greedy"]):
        f = fd.top(lg[i], 5)

        def rank_dev(t5):
            return max(abs(v - f[k][1]) for k, (_, v) in enumerate(t5))

        dev = rank_dev(s["top5"])
        if s.get("top5_batched"):
            dev = min(dev, rank_dev(s["top5_batched"]))
        steps.append(dict(f64_id=f[0][0], f64_gap=f[0][1] - f[1][1], max_abs_rank5=dev))
    return dict(last_f64_argmax=t10[0], last_max_abs_top10=last_abs, last_nmse=nmse, steps=steps)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="tests/data/<dir> with llama.cpp's refs.json")
    ap.add_argument("--model", help="default: the cache file named in refs.json")
    args = ap.parse_args()
    data = os.path.join(fd.ROOT, "tests", "data", args.dir)
    ref = json.load(open(os.path.join(data, "refs.json"), encoding="utf-8"))
    path = args.model or os.path.join(fd.CACHE, "models", ref["model"])
    digest = sha256(path)
    if digest != ref["model_sha256"]:
        sys.exit(f"{path}: sha256 {digest}, the references were recorded on {ref['model_sha256']}")
    m = fd.Model(path)
    if m.arch != "gemma3":
        sys.exit(f"{path}: architecture {m.arch}, this evaluator runs gemma3")
    prompts = []
    for p in ref["prompts"]:
        last, steps = greedy(m, p["prompt_ids"], N_STEPS)
        f16 = f"{p['name']}.f64.logits.f16"
        last.astype("<f2").tofile(os.path.join(data, f16))
        dev = llama_deviation(m, data, p)
        prompts.append(dict(name=p["name"], prompt_ids=p["prompt_ids"], logits_f16=f16,
                            last_top10=fd.top(last, fd.TOPK), greedy=steps, llama_cpp=dev))
        print(f"{p['name']}: f64 gaps " + " ".join(f"{s['gap']:.3f}" for s in steps)
              + f"\n  llama.cpp - f64: last top-10 {dev['last_max_abs_top10']:.3f}, NMSE "
              f"{dev['last_nmse']:.2e}, steps "
              + " ".join(f"{s['max_abs_rank5']:.2f}" for s in dev["steps"]), file=sys.stderr)
    doc = dict(
        about="Exact float64 evaluation (scripts/f64_gemma3.py) of " + ref["model"] + " on the "
              "prompts of refs.json: last prompt position's top-10, greedy steps of f64 itself "
              "(id, top-10, gap), full last logits in logits_f16 (little-endian f16); llama_cpp: "
              "llama.cpp's deviation from f64 on its own greedy tokens.",
        gguf_sha256=digest, n_vocab=ref["n_vocab"], prompts=prompts)
    with open(os.path.join(data, "f64.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
