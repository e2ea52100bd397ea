#!/usr/bin/env python3
"""Writes Tests/KernelsTests/Fixtures/quant-vectors.json: random blocks of every GGUF
element type twinbrain reads, with their values as dequantised by gguf-py (PyPI `gguf`),
an implementation independent of ours. Run once; the output is committed.

    pip install gguf==0.19.0 && python3 scripts/make-quant-fixture.py
"""
import base64, json, pathlib
import numpy as np
from gguf import GGMLQuantizationType as T, GGML_QUANT_SIZES
from gguf.quants import dequantize

rng = np.random.default_rng(20261129)
types = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
out = []
for name in types:
    qtype = T[name]
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    blocks = 64 if block_size == 1 else 4
    raw = bytearray(rng.integers(0, 256, size=blocks * type_size, dtype=np.uint8).tobytes())
    if name == "F32":
        raw = bytearray(rng.normal(0, 1, blocks).astype("<f4").tobytes())
    # Keep f16 scales finite and modest (an exponent of all ones is inf/NaN): clear their top
    # exponent bit. Scale fields per ggml-common.h.
    scale_offsets = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
                     "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "F16": None, "BF16": None, "F32": []}[name]
    if scale_offsets is None:  # every element is a half: keep them all finite
        for i in range(1, len(raw), 2):
            raw[i] &= 0xBF
    else:
        for b in range(blocks):
            for off in scale_offsets:
                raw[b * type_size + off + 1] &= 0xBB
    data = np.frombuffer(bytes(raw), dtype=np.uint8)
    values = dequantize(data, qtype).astype(np.float32).reshape(-1)
    out.append({"type": name, "bytes": base64.b64encode(bytes(raw)).decode(),
                "values": [float(v) for v in values]})
path = pathlib.Path(__file__).resolve().parent.parent / "Tests/KernelsTests/Fixtures/quant-vectors.json"
path.write_text(json.dumps(out, separators=(",", ":")))
print(f"wrote {path} ({path.stat().st_size} bytes)")
