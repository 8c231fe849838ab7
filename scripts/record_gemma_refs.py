#!/usr/bin/env python3
"""Records llama.cpp references for the Gemma 3 270M golden tests (tests/src/gemma_refs.rs).

Run with the reference venv of scripts/setup-llama-ref.sh:

    ~/.cache/webjit-llamavenv/bin/python scripts/record_gemma_refs.py \
        [--model ~/.cache/webjit/models/gemma-3-270m-q4_k_m.gguf] [--out tests/data/gemma]

Writes into --out:
  refs.json          per prompt: token ids (BOS + special-token parsing, as
                     `llm.tokenize(text, add_bos=True, special=True)`), the top-10 [id, logit]
                     at the last prompt position, and 32 greedy steps (argmax) each with its
                     top-5 [id, logit] and the top1 - top2 logit gap.
  <name>.logits.f16  the full logits vector at the last prompt position (little-endian f16)
                     for the prompts listed in FULL_LOGITS.
  tokenizer.json     a tokenizer-only set: text -> ids (special parsing on and off) and the
                     detokenized bytes of those ids.

Deterministic: CPU only, fixed thread count, the whole prompt in one batch, greedy = argmax
of the raw logits (no sampler, no penalties), the KV cache cleared between prompts.
"""

import argparse
import ctypes
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

import llama_ref

llama_ref.plain_cpu()

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_MODEL = os.path.join(
    os.environ.get("WEBJIT_CACHE", os.path.expanduser("~/.cache/webjit")),
    "models",
    "gemma-3-270m-q4_k_m.gguf",
)

N_GREEDY = 32
TOP_STEP = 5
TOP_LAST = 10
FULL_LOGITS = ("chat", "long")


def long_prompt():
    """An English text of well over 600 tokens, so the prompt crosses Gemma's 512-token
    sliding window."""
    paras = [
        "The history of computing is a story of layers. At the bottom sit transistors, "
        "switching billions of times per second; above them, logic gates, arithmetic units "
        "and memories; above those, instruction sets, compilers, operating systems and, "
        "finally, the programs that people actually use. Each layer hides the complexity of "
        "the one below it, and each new layer made it possible for more people to build "
        "useful things without understanding everything underneath.",
        "In the 1940s, machines such as ENIAC were programmed by rewiring panels and setting "
        "switches by hand. A single change could take days. The stored-program idea, in which "
        "instructions live in the same memory as data, changed that: programs became data that "
        "could be loaded, copied and modified. Assembly languages followed, then FORTRAN in "
        "1957, which let scientists write formulas instead of opcodes, and COBOL, which let "
        "businesses describe records and reports in something close to English.",
        "The 1970s brought the microprocessor. Intel's 4004 had 2,300 transistors and ran at "
        "740 kHz; within a decade, personal computers from Apple, Commodore and IBM were in "
        "homes and offices. Software became an industry of its own. The C language and the "
        "Unix operating system, both from Bell Labs, showed that an operating system could be "
        "written in a high-level language and moved from one machine to another.",
        "Networks came next. ARPANET connected a handful of universities in 1969; TCP/IP was "
        "adopted in 1983; and in 1991 Tim Berners-Lee published the first web page at CERN. "
        "Browsers turned the internet from a tool for researchers into a medium for everyone, "
        "and JavaScript, written in ten days in 1995, eventually became the most widely "
        "deployed programming language in the world.",
        "Graphics processors began as fixed-function chips that drew triangles for games. "
        "Around 2006 they became programmable for general computations, and researchers "
        "noticed that the same hardware that shaded millions of pixels in parallel could also "
        "multiply the large matrices at the heart of neural networks. The deep learning boom "
        "of the 2010s was built on that observation, on large labeled datasets, and on "
        "software libraries that made it easy to describe a model and train it.",
        "Today, language models with billions of parameters answer questions, write code and "
        "translate between languages. Running them efficiently is again a problem of layers: "
        "quantized weights reduce memory traffic, fused kernels avoid round trips to memory, "
        "and careful scheduling keeps thousands of arithmetic units busy. Small models can "
        "even run inside a web browser, using WebGPU to reach the graphics card directly, "
        "which brings the whole history full circle: the newest software running on top of "
        "the oldest and most portable platform of all, the web page.",
        "Yet some things have not changed. Programs still have bugs, and the best tool for "
        "finding them is still a careful test that compares what the program does with what "
        "it should do. Engineers still argue about tabs and spaces, about static and dynamic "
        "types, and about whether a clever optimization is worth the complexity it adds. And "
        "every generation still rediscovers that the hardest part of building software is "
        "not writing the code but deciding exactly what it should do.",
    ]
    return (
        "\n\n".join(paras)
        + "\n\nQuestion: In one sentence, what is the main idea of the text above?\nAnswer:"
    )


PROMPTS = [
    (
        "chat",
        "<start_of_turn>user\nWrite a short poem about the sea.<end_of_turn>\n"
        "<start_of_turn>model\n",
    ),
    ("plain", "The capital of France is"),
    (
        "code",
        'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    ),
    (
        "chat_unicode",
        "<start_of_turn>user\nTranslate to French: Good morning, how are you? \u2600\ufe0f"
        "<end_of_turn>\n<start_of_turn>model\n",
    ),
    ("long", long_prompt()),
]

TOKENIZER_TEXTS = [
    "",
    "Hello world",
    "hello",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "multiple    spaces   inside  words",
    "\ttab\tseparated\tvalues\t",
    "line1\nline2\n\nline4\n",
    "windows\r\nline endings\r\n",
    "   ",
    "\n",
    "\t\n \t",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade \u00c5ngstr\u00f6m se\u00f1or",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u041f\u0440\u0438\u0432\u0435\u0442 "
    "\u043c\u0438\u0440",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002"
    "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd \u0928\u092e\u0938\u094d\u0924\u0947 "
    "\u0926\u0941\u0928\u093f\u092f\u093e \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "I love \U0001f980 Rust! \U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 "
    "\U0001f1eb\U0001f1f7 \u2728\U0001f389\U0001f44d\U0001f3fd",
    "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * i).collect();\n"
    '    println!("{:?}", x);\n}\n',
    "def f(x):\n\tif x > 0:\n\t\treturn x ** 2  # square\n\treturn -x\n",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}',
    '<div class="a">&nbsp;<span>x</span></div>',
    "3.14159265358979 1234567890 1,000,000 2026-11-22 0x1F 1e-10 007",
    "https://example.com/path?q=1&r=2#frag user@example.org",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "---------- ========== !!!??? ...",
    # Rare characters that fall back to <0xNN> byte tokens.
    "\U00013000\U00013050 \U0001d518\U0001d52b\U0001d526 \U00012000 \ue000\uf8ff "
    "\U00020000\U00020001 \U0010fffd",
    "ctrl\x01\x02\x7f chars and a NUL:\x00.",
    "\u2581literal lower one eighth block\u2581\u2581",
    # Control tokens written in the text.
    "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text<eos>",
    "<start_of_turn><end_of_turn>",
    "x<pad>y<unk>z<mask>",
    "<start_of_image> an image <end_of_image>",
    "<start_of_tur partial <<start_of_turn>> nested",
    " <end_of_turn> spaces around <end_of_turn> ",
    "MiXeD CaSe, UPPER lower, camelCase snake_case kebab-case",
]

CHAT_CASES = [
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "user", "content": "  What is 2+2?  "},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    [
        {"role": "system", "content": " You are terse.\n"},
        {"role": "user", "content": "Name a color."},
    ],
    [
        {"role": "user", "content": "\tHi\n\n"},
        {"role": "assistant", "content": " Hello! "},
    ],
]


def detokenize(llm, ids, unparse_special):
    """llama.cpp's llama_detokenize(remove_special=False) into a buffer large enough for any
    token (llm.detokenize reads each piece into 32 bytes and drops longer ones)."""
    n = len(ids)
    arr = (llama_cpp.llama_token * max(n, 1))(*ids)
    cap = 64 + 256 * n
    buf = ctypes.create_string_buffer(cap)
    got = llama_cpp.llama_detokenize(
        llm._model.vocab, arr, n, buf, cap, False, unparse_special
    )
    if got < 0:
        raise RuntimeError(f"detokenize needs {-got} bytes")
    return buf.raw[:got]


def gemma_chat(msgs):
    arr = (llama_cpp.llama_chat_message * len(msgs))(
        *[
            llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode())
            for m in msgs
        ]
    )
    cap = 4096
    buf = ctypes.create_string_buffer(cap)
    n = llama_cpp.llama_chat_apply_template(b"gemma", arr, len(msgs), True, buf, cap)
    if n < 0 or n > cap:
        raise RuntimeError(f"llama_chat_apply_template returned {n}")
    return buf.raw[:n].decode()


def last_logits(llm):
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32).copy()


def top(logits, k):
    # Stable sort: ties keep the lower id first, as np.argmax does.
    idx = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), float(logits[i])] for i in idx]


def run_prompt(llm, ids):
    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(ids)
    first = last_logits(llm)
    logits = first
    steps = []
    for _ in range(N_GREEDY):
        t5 = top(logits, TOP_STEP)
        tok = int(np.argmax(logits))
        assert tok == t5[0][0]
        steps.append({"id": tok, "top5": t5, "gap": t5[0][1] - t5[1][1]})
        llm.eval([tok])
        logits = last_logits(llm)
    # llama.cpp disagrees with itself between token-by-token decoding and one batch over the
    # same tokens (up to ~1 logit at some steps). Record the batched view of every step too:
    # the prompt plus the tokens before the step, evaluated in one batch.
    steps[0]["top5_batched"] = steps[0]["top5"]
    for i in range(1, N_GREEDY):
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval(ids + [s["id"] for s in steps[:i]])
        steps[i]["top5_batched"] = top(last_logits(llm), TOP_STEP)
    return first, steps


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "gemma"))
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
                "detok_py": llm.detokenize(ids).decode("utf-8", "replace"),
            }
        )

    # This GGUF carries no `tokenizer.chat_template`: use llama.cpp's built-in "gemma" chat
    # template (llm_chat_apply_template), which is what llama.cpp applies to Gemma models.
    chat = [{"messages": msgs, "prompt": gemma_chat(msgs)} for msgs in CHAT_CASES]

    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "about": "llama.cpp tokenization of Gemma 3 270M; made by "
                "scripts/record_gemma_refs.py. ids: tokenize(add_bos=True, special=True); "
                "detok_hex: llama_detokenize(ids, remove_special=False, "
                "unparse_special=False) bytes; detok_special_hex: the same with "
                "unparse_special=True; detok_py: llm.detokenize(ids) (drops a leading "
                "space after BOS). chat: llama.cpp's built-in gemma chat template (llama_chat_apply_template).",
                "llama_cpp_python": llama_cpp.__version__,
                "texts": toks,
                "chat": chat,
            },
            f,
            ensure_ascii=False,
            indent=1,
        )

    prompts = []
    for name, text in PROMPTS:
        ids = llm.tokenize(text.encode(), add_bos=True, special=True)
        print(f"{name}: {len(ids)} prompt tokens", file=sys.stderr)
        first, steps = run_prompt(llm, ids)
        entry = {
            "name": name,
            "text": text,
            "prompt_ids": ids,
            "last_top10": top(first, TOP_LAST),
            "greedy": steps,
            "greedy_text": llm.detokenize([s["id"] for s in steps]).decode(
                "utf-8", "replace"
            ),
        }
        if name in FULL_LOGITS:
            fname = f"{name}.logits.f16"
            first.astype("<f2").tofile(os.path.join(args.out, fname))
            entry["logits_f16"] = fname
            entry["logits_sumsq"] = float(np.sum(first.astype(np.float64) ** 2))
        prompts.append(entry)

    with open(os.path.join(args.out, "refs.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "about": "llama.cpp (llama-cpp-python, CPU) references for Gemma 3 270M "
                "Q4_K_M; made by scripts/record_gemma_refs.py. Greedy = argmax of the raw "
                "logits; top lists are [id, logit]; gap = top1 - top2 logit.",
                "llama_cpp_python": llama_cpp.__version__,
                "model": os.path.basename(args.model),
                "model_sha256": sha256(args.model),
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
