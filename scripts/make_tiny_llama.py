#!/usr/bin/env python3
"""Writes a tiny random-weight `llama`-architecture GGUF and records llama.cpp references for
it (the golden test of the second architecture, for which no real weights are at hand).

Run with the reference venv of scripts/setup-llama-ref.sh:

    ~/.cache/webjit-llamavenv/bin/python scripts/make_tiny_llama.py [--out tests/data/tiny_llama]

Writes into --out:
  tiny-llama.gguf  2 layers, d_model 256, 4 heads of 64, 2 KV heads, FFN 256, a SentencePiece
                   vocabulary of 300 tokens; tensor types mixed (F32 norms, F16, Q8_0, Q4_K,
                   Q6_K); seeded, so reruns write the same bytes.
  refs.json        llama.cpp (llama-cpp-python, CPU) on it: per prompt the token ids, the full
                   logits at every prompt position, and 16 greedy steps with their top-5.

The quantized blocks are random bit patterns with scales chosen so that weights have a
standard deviation near 0.1 (about 1/sqrt(d_model) x 1.6): every sublayer then changes the
residual stream by about as much as the embedding, so a bug in any of them moves the logits.
"""

import argparse
import json
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

N_LAYER = 2
D = 256
N_HEAD = 4
N_KV = 2
HEAD = D // N_HEAD
FFN = 256
CTX = 256
EPS = 1e-5
ROPE_BASE = 10000.0
N_GREEDY = 16
TOP = 5

# Merges of the vocabulary, best first (SentencePiece scores are log-probabilities).
PIECES = (
    "\u2581 e t a o i n s h r d l u c m w f g y p b v k , . ! ? 0 1 2 3 "
    "\u2581t th \u2581th he \u2581the in er an \u2581a on re at en nd \u2581s \u2581c "
    "ou it \u2581w is \u2581o ha \u2581h \u2581m ed \u2581b \u2581f ar \u2581d \u2581p "
    "\u2581in \u2581to \u2581an \u2581and \u2581of \u2581is \u2581it \u2581on \u2581cat "
    "\u2581sat \u2581mat \u2581dog at\u2581 ll \u2581he ell \u2581hell \u2581hello"
).split(" ")

# Tokenizer-only cases: this vocabulary adds a dummy-prefix space (Gemma's does not).
TOKENIZER_TEXTS = [
    "",
    "the",
    " the",
    "  two spaces",
    "the cat\n\tsat ",
    "<|turn|>the<|turn|> the <|turn|>",
    "<s>hello</s>",
    "hello hell hel he h",
    "caf\u00e9 \U0001f980 \u65e5",
    "ALL CAPS 2026!",
]

PROMPTS = [
    ("plain", "the cat sat on the mat and the dog"),
    ("mixed", "Hello, world! 123 is it on?"),
    ("special", "<|turn|>hi there<|turn|>"),
    ("unicode", "caf\u00e9 \u00fcber \u65e5\u672c"),
]


def vocab():
    toks = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("<|turn|>", 0.0, 3)]
    for b in range(256):
        toks.append((f"<0x{b:02X}>", 0.0, 6))
    seen = set()
    for i, p in enumerate(PIECES):
        assert p not in seen, p
        seen.add(p)
        toks.append((p, -float(i), 1))
    return toks


def f16_bytes(x):
    return np.asarray(x, dtype="<f2").tobytes()


def q8_0(n_elems, rng, gain=1.0):
    """Q8_0 blocks of 32: f16 scale + 32 int8 (ggml-common.h block_q8_0). w = d*q."""
    n_blocks = n_elems // 32
    out = bytearray()
    for _ in range(n_blocks):
        out += f16_bytes(gain * rng.uniform(1e-3, 2e-3))
        out += rng.integers(-127, 128, 32, dtype=np.int8).tobytes()
    return out


def q4_k(n_elems, rng):
    """Q4_K blocks of 256: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of
    nibbles (block_q4_K). w = d*sc*q - dmin*m with q in 0..15."""
    out = bytearray()
    for _ in range(n_elems // 256):
        out += f16_bytes(rng.uniform(3e-4, 6e-4))
        out += f16_bytes(rng.uniform(2.5e-3, 4.5e-3))
        out += rng.integers(0, 256, 12 + 128, dtype=np.uint8).tobytes()
    return out


def q6_k(n_elems, rng):
    """Q6_K blocks of 256: 128 bytes low nibbles, 64 bytes high bits, 16 int8 scales, f16 d
    (block_q6_K). w = d*scale*(q - 32)."""
    out = bytearray()
    for _ in range(n_elems // 256):
        out += rng.integers(0, 256, 128 + 64, dtype=np.uint8).tobytes()
        out += rng.integers(-128, 128, 16, dtype=np.int8).tobytes()
        out += f16_bytes(rng.uniform(5e-5, 1e-4))
    return out


def add_quant(w, name, rows, cols, qtype, rng, gain=1.0):
    """A [rows, cols] matrix (GGUF ne = [cols, rows]) of random blocks."""
    if qtype == Q.Q8_0:
        data = q8_0(rows * cols, rng, gain)
    elif qtype == Q.Q4_K:
        data = q4_k(rows * cols, rng)
    elif qtype == Q.Q6_K:
        data = q6_k(rows * cols, rng)
    else:
        raise ValueError(qtype)
    arr = np.frombuffer(bytes(data), dtype=np.uint8).reshape(rows, -1)
    # The byte shape [rows, row_bytes]; the writer derives ne = [cols, rows] from it.
    w.add_tensor(name, arr, raw_dtype=qtype)


def write_model(path, seed):
    rng = np.random.default_rng(seed)
    toks = vocab()
    n_vocab = len(toks)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("webjit tiny llama (random weights)")
    w.add_context_length(CTX)
    w.add_embedding_length(D)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(FFN)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_freq_base(ROPE_BASE)
    w.add_rope_dimension_count(HEAD)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list([t for t, _, _ in toks])
    w.add_token_scores([s for _, s, _ in toks])
    w.add_token_types([ty for _, _, ty in toks])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)

    def f32(shape, lo, hi):
        return rng.uniform(lo, hi, shape).astype(np.float32)

    w.add_tensor("token_embd.weight", f32((n_vocab, D), -1.0, 1.0).astype(np.float16))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", f32((D,), 0.8, 1.2))
        w.add_tensor(p + "ffn_norm.weight", f32((D,), 0.8, 1.2))
        # Each layer mixes every type the engine reads; layer 1 swaps them around.
        kinds = [Q.Q4_K, Q.Q8_0, Q.Q6_K] if i == 0 else [Q.Q6_K, Q.Q4_K, Q.Q8_0]
        add_quant(w, p + "attn_q.weight", D, D, kinds[0], rng)
        add_quant(w, p + "attn_k.weight", N_KV * HEAD, D, kinds[1], rng)
        w.add_tensor(
            p + "attn_v.weight", f32((N_KV * HEAD, D), -0.17, 0.17).astype(np.float16)
        )
        add_quant(w, p + "attn_output.weight", D, D, kinds[2], rng)
        add_quant(w, p + "ffn_gate.weight", FFN, D, kinds[1], rng)
        add_quant(w, p + "ffn_up.weight", FFN, D, kinds[0], rng)
        add_quant(w, p + "ffn_down.weight", D, FFN, kinds[2], rng)
    w.add_tensor("output_norm.weight", f32((D,), 0.8, 1.2))
    # Larger output weights: logits with a spread of several units, so greedy steps are
    # decided by clear margins.
    add_quant(w, "output.weight", n_vocab, D, Q.Q8_0, rng, gain=2.5)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def record(path, out_json):
    import llama_cpp
    from llama_cpp import Llama

    import llama_ref

    llama_ref.plain_cpu()

    llm = Llama(
        model_path=path,
        n_ctx=CTX,
        n_batch=CTX,
        n_ubatch=CTX,
        n_threads=2,
        n_threads_batch=2,
        n_gpu_layers=0,
        logits_all=True,
        seed=0,
        verbose=False,
    )
    from record_gemma_refs import detokenize

    toks = []
    for text in TOKENIZER_TEXTS:
        b = text.encode()
        ids = llm.tokenize(b, add_bos=True, special=True)
        toks.append(
            {
                "text": text,
                "ids": ids,
                "ids_no_special": llm.tokenize(b, add_bos=True, special=False),
                "ids_no_bos": llm.tokenize(b, add_bos=False, special=True),
                "detok_hex": detokenize(llm, ids, False).hex(),
                "detok_special_hex": detokenize(llm, ids, True).hex(),
            }
        )

    prompts = []
    for name, text in PROMPTS:
        ids = llm.tokenize(text.encode(), add_bos=True, special=True)
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval(ids)
        all_logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
        steps = []
        for _ in range(N_GREEDY):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-logits, kind="stable")[:TOP]
            top = [[int(i), float(logits[i])] for i in order]
            tok = int(np.argmax(logits))
            steps.append({"id": tok, "top5": top, "gap": top[0][1] - top[1][1]})
            llm.eval([tok])
        prompts.append(
            {
                "name": name,
                "text": text,
                "prompt_ids": ids,
                # [n_prompt][n_vocab], rounded to 1e-5 to keep the file small.
                "logits": [[round(float(x), 5) for x in row] for row in all_logits],
                "greedy": steps,
            }
        )
        print(f"{name}: {len(ids)} prompt tokens", file=sys.stderr)
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(
            {
                "about": "llama.cpp (llama-cpp-python, CPU) on tiny-llama.gguf; made by "
                "scripts/make_tiny_llama.py. logits: every prompt position, full vocabulary; "
                "greedy = argmax of the raw logits, top5 [id, logit], gap = top1 - top2. "
                "tokenizer: as tests/data/gemma/tokenizer.json (ids, ids_no_special, "
                "ids_no_bos, detok_hex, detok_special_hex).",
                "llama_cpp_python": llama_cpp.__version__,
                "n_vocab": llm.n_vocab(),
                "tokenizer": toks,
                "prompts": prompts,
            },
            f,
            ensure_ascii=False,
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "tiny_llama"))
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument(
        "--gguf-only",
        metavar="PATH",
        help="only write the model to PATH (needs gguf + numpy, not llama.cpp): how "
        "scripts/fetch-models.sh recreates it for the tests, which check its sha256",
    )
    args = ap.parse_args()
    if args.gguf_only:
        write_model(args.gguf_only, args.seed)
        return
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "tiny-llama.gguf")
    write_model(path, args.seed)
    size = os.path.getsize(path)
    print(f"wrote {path}: {size} bytes", file=sys.stderr)
    if size >= 1 << 20:
        sys.exit(f"{path} is {size} bytes, not under 1 MiB: shrink the model")
    record(path, os.path.join(args.out, "refs.json"))


if __name__ == "__main__":
    main()
