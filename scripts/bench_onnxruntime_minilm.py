#!/usr/bin/env python3
"""onnxruntime (CPU) sentences/s for all-MiniLM-L6-v2, the native baseline beside
`webjit bench embed` (same 8 sentences repeated to the batch size, same work per batch:
tokenize outside the timing, then forward + mean pooling + L2 normalization).

    ~/.cache/webjit-refvenv/bin/pip install onnxruntime onnx   # once
    ~/.cache/webjit-refvenv/bin/python scripts/bench_onnxruntime_minilm.py \
        [--model ~/.cache/webjit/models/all-MiniLM-L6-v2] [--batch 1 32] [--min-s 3]

Exports the model to ONNX with torch (legacy exporter) into ~/.cache/webjit/onnx/ the first
time, then prints one JSON object per batch size.
"""

import argparse
import json
import os
import time

import numpy as np

SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "WebGPU brings general purpose compute shaders to every modern browser.",
    "She placed the book on the shelf and walked out of the quiet room.",
    "Sentence embeddings map text to vectors whose distances reflect meaning.",
    "It rained all afternoon, so the football match was postponed until Sunday.",
    "Tuning kernels on the user's own device can make inference much faster.",
    "Two dogs are playing with a red ball in the garden.",
]


def export(model_dir, onnx_path):
    import torch
    from transformers import AutoModel

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = AutoModel.from_pretrained(model_dir).eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            ).last_hidden_state

    ids = torch.ones(1, 8, dtype=torch.long)
    torch.onnx.export(
        Wrap(),
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        onnx_path,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={
            "input_ids": {0: "b", 1: "s"},
            "attention_mask": {0: "b", 1: "s"},
            "token_type_ids": {0: "b", 1: "s"},
            "last_hidden_state": {0: "b", 1: "s"},
        },
        opset_version=17,
        dynamo=False,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--model",
        default=os.path.join(
            os.environ.get("WEBJIT_CACHE", os.path.expanduser("~/.cache/webjit")),
            "models",
            "all-MiniLM-L6-v2",
        ),
    )
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--min-s", type=float, default=3.0)
    args = ap.parse_args()
    cache = os.environ.get("WEBJIT_CACHE", os.path.expanduser("~/.cache/webjit"))
    os.makedirs(os.path.join(cache, "onnx"), exist_ok=True)
    onnx_path = os.path.join(cache, "onnx", "all-MiniLM-L6-v2.onnx")
    if not os.path.exists(onnx_path):
        export(args.model, onnx_path)
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    for batch in args.batch:
        texts = [SENTENCES[i % len(SENTENCES)] for i in range(batch)]
        enc = tok.encode_batch(texts)
        n = max(len(e.ids) for e in enc)
        ids = np.zeros((batch, n), dtype=np.int64)
        mask = np.zeros((batch, n), dtype=np.int64)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

        def run():
            h = sess.run(None, feeds)[0]
            m = mask[..., None].astype(np.float32)
            pooled = (h * m).sum(1) / m.sum(1)
            return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

        got = run()
        if batch == args.batch[0]:
            # The exported model must compute what sentence-transformers does.
            from sentence_transformers import SentenceTransformer

            want = SentenceTransformer(args.model, device="cpu").encode(texts[:1])[0]
            cos = float(np.dot(got[0], want) / np.linalg.norm(want))
            assert cos > 0.9999, f"onnx export disagrees with sentence-transformers: {cos}"
        t0, iters = time.perf_counter(), 0
        while iters < 3 or time.perf_counter() - t0 < args.min_s:
            run()
            iters += 1
        secs = (time.perf_counter() - t0) / iters
        print(
            json.dumps(
                {
                    "engine": f"onnxruntime {ort.__version__} CPU",
                    "threads": os.cpu_count(),
                    "batch": batch,
                    "ms_per_batch": secs * 1e3,
                    "sentences_per_s": batch / secs,
                    "iterations": iters,
                }
            )
        )


if __name__ == "__main__":
    main()
