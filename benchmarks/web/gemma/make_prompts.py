"""Writes prompts.json: English prompts of exactly N tokens (BOS included) for Gemma 3, for
bench_gemma_gpu.mjs's wllama runs (wllama 3 takes a prompt as text only, so it cannot be given
`webjit bench model`'s token ids). Token counts come from llama.cpp's own tokenizer
(llama-cpp-python, the reference venv); the bench checks them again at run time (webjit's
tokenizer must give the same ids, wllama's prompt_n must be N).
  ~/.cache/webjit-llamavenv/bin/python benchmarks/web/gemma/make_prompts.py [MODEL] [N ...]
"""
import json
import os
import sys

import llama_cpp

PARAGRAPH = (
    "The harbour town woke slowly on winter mornings. Fishing boats came back before sunrise, "
    "their decks covered with nets and crates, and the gulls followed them in long noisy lines. "
    "In the market, traders set out bread, cheese, apples and dried fish on wooden tables, while "
    "children ran between the stalls on their way to school. The old lighthouse keeper walked "
    "along the pier every day at eight, counting the ships and writing their names in a small "
    "blue notebook. Nobody knew why he did it, but the town had grown used to him, and on the "
    "rare days he did not appear, people asked each other whether he was ill. "
)


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/webjit/models/gemma-3-270m-q4_k_m.gguf")
    sizes = [int(x) for x in sys.argv[2:]] or [128, 512]
    llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    tok = lambda s: llm.tokenize(s.encode(), add_bos=True, special=True)
    text = PARAGRAPH * (1 + max(sizes) // 100)
    words = text.split(" ")
    out = {}
    for n in sizes:
        # A run of whole words of exactly n tokens (a word may span several tokens, so some
        # lengths are skipped from a given first word: then start one word later).
        found = None
        for start in range(40):
            for k in range(start + 1, len(words) + 1):
                ids = tok(" ".join(words[start:k]))
                if len(ids) == n:
                    found = " ".join(words[start:k])
                if len(ids) >= n:
                    break
            if found:
                break
        if not found:
            sys.exit(f"no run of whole words has exactly {n} tokens")
        out[str(n)] = {"text": found, "ids": tok(found)}
    doc = {
        "about": "made by benchmarks/web/gemma/make_prompts.py with llama-cpp-python "
        + llama_cpp.__version__ + "; ids = llama.cpp's tokenization with BOS and special tokens parsed",
        "model": os.path.basename(model),
        "prompts": out,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print({k: len(v["ids"]) for k, v in out.items()})


if __name__ == "__main__":
    main()
