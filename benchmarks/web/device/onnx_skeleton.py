#!/usr/bin/env python3
"""Carry the all-MiniLM-L6-v2 ONNX export without its weights, since the weights travel anyway.

The ONNX file (torch's legacy export, scripts/bench_onnxruntime_minilm.py) holds each weight of
model.safetensors as raw float32 bytes, some transposed (MatMul weights). `split` finds every
safetensors tensor of >= 256 bytes in the ONNX bytes (as is, or transposed for 2-D tensors) and
writes a skeleton: a JSON header of the segments plus the remaining bytes (about 120 KB).
`join` rebuilds the byte-identical ONNX file from the skeleton and model.safetensors and checks
its sha256 against the one recorded at split time. Standard library only (no numpy, no onnx).

    onnx_skeleton.py split MODEL.onnx model.safetensors OUT.skel
    onnx_skeleton.py join  OUT.skel  model.safetensors MODEL.onnx
"""

import hashlib
import json
import struct
import sys

MAGIC = b"WJSKEL1\n"
MIN_BYTES = 256


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[name] = (v["dtype"], v["shape"], data[base + a : base + b])
    return out


def tensor_bytes(t, transpose):
    dtype, shape, raw = t
    if not transpose:
        return raw
    if dtype != "F32" or len(shape) != 2:
        raise SystemExit(f"cannot transpose a {dtype} tensor of shape {shape}")
    rows, cols = shape
    f = memoryview(raw).cast("B").cast("f")
    # Row j of the transpose is column j: every cols-th float from j.
    return b"".join(f[j::cols].tobytes() for j in range(cols))


def split(onnx_path, st_path, out_path):
    ox = open(onnx_path, "rb").read()
    tensors = read_safetensors(st_path)
    segs = []
    taken = []  # (start, end)

    def free(s, e):
        return all(e <= a or s >= b for a, b in taken)

    for name, t in tensors.items():
        if len(t[2]) < MIN_BYTES:
            continue
        for transpose in (False, True):
            if transpose and len(t[1]) != 2:
                continue
            raw = tensor_bytes(t, transpose)
            i = ox.find(raw)
            while i >= 0 and not free(i, i + len(raw)):
                i = ox.find(raw, i + 1)
            if i >= 0:
                segs.append({"offset": i, "length": len(raw), "tensor": name, "transpose": transpose})
                taken.append((i, i + len(raw)))
                break
    segs.sort(key=lambda s: s["offset"])
    rest = bytearray()
    pos = 0
    for s in segs:
        rest += ox[pos : s["offset"]]
        pos = s["offset"] + s["length"]
    rest += ox[pos:]
    head = {
        "size": len(ox),
        "sha256": hashlib.sha256(ox).hexdigest(),
        "safetensors_sha256": hashlib.sha256(open(st_path, "rb").read()).hexdigest(),
        "segments": segs,
    }
    hb = json.dumps(head).encode()
    with open(out_path, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(hb)) + hb + bytes(rest))
    covered = sum(s["length"] for s in segs)
    print(f"split: {len(segs)} tensors, {covered} of {len(ox)} bytes from safetensors, skeleton {len(rest) + len(hb)} bytes")


def join(skel_path, st_path, onnx_path):
    data = open(skel_path, "rb").read()
    if not data.startswith(MAGIC):
        raise SystemExit(f"{skel_path} is not a skeleton")
    (n,) = struct.unpack("<Q", data[len(MAGIC) : len(MAGIC) + 8])
    head = json.loads(data[len(MAGIC) + 8 : len(MAGIC) + 8 + n])
    rest = memoryview(data)[len(MAGIC) + 8 + n :]
    tensors = read_safetensors(st_path)
    out = bytearray()
    rpos = 0
    for s in head["segments"]:
        gap = s["offset"] - len(out)
        out += rest[rpos : rpos + gap]
        rpos += gap
        raw = tensor_bytes(tensors[s["tensor"]], s["transpose"])
        if len(raw) != s["length"]:
            raise SystemExit(f"{s['tensor']}: {len(raw)} bytes, skeleton wants {s['length']}")
        out += raw
    out += rest[rpos:]
    got = hashlib.sha256(out).hexdigest()
    if len(out) != head["size"] or got != head["sha256"]:
        raise SystemExit(f"join: rebuilt {len(out)} bytes sha256 {got}, want {head['size']} bytes {head['sha256']}")
    with open(onnx_path, "wb") as f:
        f.write(out)
    print(f"join: {onnx_path} rebuilt, {len(out)} bytes, sha256 {got} (matches)")


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("split", "join"):
        raise SystemExit(__doc__)
    (split if sys.argv[1] == "split" else join)(*sys.argv[2:])
