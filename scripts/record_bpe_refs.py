#!/usr/bin/env python3
"""Records llama.cpp's byte-level BPE tokenization of a hard corpus on the vocabulary-only GGUFs
of scripts/make_bpe_ggufs.py (written into the model cache by scripts/fetch-models.sh).

Run with the reference venv of scripts/setup-llama-ref.sh:

    ~/.cache/webjit-llamavenv/bin/python scripts/record_bpe_refs.py [--out tests/data/bpe/refs.json]

For each GGUF and corpus line: llama_tokenize ids with add_special (BOS) off/on and
parse_special off/on; the concatenated token_to_piece bytes of the parse_special ids (what
llama.cpp prints while generating) with special off/on; llama_detokenize of them (with the
family's space clean-up). Per GGUF also the end-of-generation and control ids.
"""

import argparse
import ctypes
import json
import os

import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(os.environ.get("WEBJIT_CACHE") or os.path.expanduser("~/.cache/webjit"),
                     "models", "bpe")

GGUFS = ["bpe-default.gguf", "bpe-gpt-2.gguf", "bpe-llama-bpe.gguf", "bpe-qwen2.gguf",
         "bpe-smollm.gguf", "bpe-real-llama3.gguf", "bpe-real-qwen3.gguf"]

CORPUS = [
    "",
    " ",
    "  ",
    "\n",
    "Hello world",
    " Hello world",
    "Hello world ",
    "Hello  world   and    more     spaces",
    "   leading spaces and trailing   ",
    "tabs\tand\t\ttabs \t mixed\t",
    "line one\nline two\n\nline four\n\n\n",
    "windows\r\nline\r\n\r\nend\r",
    " \n \n  \n\t\n x",
    "I'm sure it's what they'll do, you've seen we'd go and they're here; DON'T SHOUT'S 'LL",
    "'s 't 're 've 'm 'll 'd ' s",
    "3.14159 and 1234567890 and 0007, 12,345.67; 1e-10 -42 +3",
    "123456789012345678901234567890",
    "Numbers: ١٢٣ ߁߂ ²³ ½ Ⅻ 4️⃣",
    "café naïve résumé façade Ångström Ærø Œuvre Straße Ĳssel",
    "Москва — столица России. Привет, мир!",
    "Ελληνικά γράμματα και αριθμοί",
    "中文文本测试，包括标点符号。日本語のテキストも。한국어 텍스트",
    "مرحبا بالعالم שלום עולם नमस्ते दुनिया",
    "emoji 😀😃 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ flags 🇫🇷🇯🇵",
    "def f(x):\n    return x**2  # square\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] >> 2; } // done",
    "<html><body class=\"x\">&nbsp;&amp;</body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "!!!???... ,,,;;; --- ___ *** ### $$$ %%% ^^^ &&& ~~~ ||| ``` ''' \"\"\"",
    "nbsp\u00a0here, ideographic\u3000space, zero\u200bwidth, soft\u00adhyphen",
    "unassigned \u0378\u0378 x \u0378! private \ue000\ue001 y",
    "a" * 300,
    "supercalifragilisticexpialidocious" * 8,
    "x" + " " * 40 + "y",
    "<|begin_of_text|>Hello<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<think>\nreasoning here\n</think>\n\nanswer <tool_call>{\"name\": \"f\"}</tool_call>",
    "<|endoftext|><|endoftext|> between <|endoftext|>",
    "text<|im_end|>text <|im_end|> text",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<reponame>x<file_sep>y<jupyter_code>z",
    "<|im_start|<|im_end|>|> nested <<|eot_id|>>",
]


def tokenize(vocab, text: bytes, add_special: bool, parse_special: bool) -> list:
    n_max = len(text) + 16
    buf = (llama_cpp.llama_token * n_max)()
    n = llama_cpp.llama_tokenize(vocab, text, len(text), buf, n_max, add_special, parse_special)
    assert n >= 0, f"tokenize returned {n}"
    return list(buf[:n])


def pieces(vocab, ids: list, special: bool) -> bytes:
    out = b""
    buf = ctypes.create_string_buffer(4096)
    for t in ids:
        n = llama_cpp.llama_token_to_piece(vocab, t, buf, len(buf), 0, special)
        assert n >= 0, f"piece of {t} needs {-n} bytes"
        out += buf.raw[:n]
    return out


def detokenize(vocab, ids: list, special: bool) -> bytes:
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    cap = 64 + 64 * len(ids)
    buf = ctypes.create_string_buffer(cap)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, False, special)
    assert n >= 0, f"detokenize needs {-n} bytes"
    return buf.raw[:n]


def hexs(b: bytes) -> str:
    return b.hex()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "bpe", "refs.json"))
    args = ap.parse_args()
    models = []
    for name in GGUFS:
        llm = llama_cpp.Llama(model_path=os.path.join(CACHE, name), vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        eog = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        control = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_control(vocab, t)]
        cases = []
        for text in CORPUS:
            raw = text.encode("utf-8")
            ids = {f"{'bos' if b else 'nobos'}_{'special' if s else 'plain'}":
                   tokenize(vocab, raw, b, s) for b in (False, True) for s in (False, True)}
            main_ids = ids["nobos_special"]
            cases.append({
                "text": text,
                "ids": ids,
                # Hex: pieces need not be UTF-8 one by one, but together they are here.
                "pieces_hex": hexs(pieces(vocab, main_ids, False)),
                "pieces_special_hex": hexs(pieces(vocab, main_ids, True)),
                "detok_hex": hexs(detokenize(vocab, main_ids, False)),
                "detok_special_hex": hexs(detokenize(vocab, main_ids, True)),
            })
        models.append({"gguf": name, "n_vocab": n_vocab, "eog": eog, "control": control,
                       "bos": llama_cpp.llama_vocab_bos(vocab),
                       "eos": llama_cpp.llama_vocab_eos(vocab), "cases": cases})
        print(f"{name}: {n_vocab} tokens, eog {eog}, {len(control)} control")
        del llm
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"llama_cpp_python": llama_cpp.__version__, "models": models}, f,
                  ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
