#!/usr/bin/env python3
"""Small Llama 3 and Qwen3 models with real tokenizers, for the engine's parity tests
(Tests/MainBrainTests/SyntheticModelTests.swift), and two layers of Qwen2.5-1.5B at full width for
the batched decoding test (Tests/MainBrainTests/BatchedDecodeTests.swift):

  .cache/synthetic/llama3.gguf   llama architecture, Llama 3's tokenizer (llama-bpe, 128,256 tokens),
                                 RoPE base 500,000 with llama3 frequency factors (rope_freqs.weight),
                                 grouped-query attention, an untied output head
  .cache/synthetic/qwen3.gguf    qwen3 architecture, Qwen's tokenizer (qwen2, 151,936 tokens), Q/K norms,
                                 heads wider than dim / heads (key_length), NeoX RoPE, tied output
  .cache/synthetic/qwen2.5-1.5b.gguf
                                 qwen2 architecture at Qwen2.5-1.5B's width (1,536, 12 heads of 128, 2 KV
                                 heads, feed-forward 8,960, q/k/v biases, tied output), two of its 28
                                 layers; attention and embeddings Q8_0, feed-forward Q4_1 (gguf-py's
                                 quantisers)

Two layers, width 64 (but Qwen2.5-1.5B's), weights from a fixed integer hash (splitmix64), so every
machine writes the same model without a random-number library; the tokenizers are the vocab-only GGUFs of the
llama-cpp-python sdist (vendor/llama.cpp/models/), fetched once. `make test` builds them.

With --reference, llama.cpp (llama-cpp-python) evaluates them and writes what the tests compare
with, Fixtures/synthetic/NAME.json: the ids of every tokenize/ text (no BOS), and for a few texts
the ids (BOS as the vocabulary wants), the 8 highest logits of every position, and 16 greedy tokens.
Run once; the outputs are committed.

    python3 scripts/synthetic_vocab_models.py --cache .cache [--reference]
"""
import argparse, json, math, os, sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic_models import add_hyperparameters, copy_tokenizer, vocab_file  # noqa: E402

PEER_VERSION = "0.3.36"
FIXTURES = "Tests/MainBrainTests/Fixtures"
MODELS = {
    "llama3": dict(arch="llama", vocab="llama-bpe", dim=64, ffn=128, heads=4, kv_heads=2, head_dim=16,
                   rope_base=500000.0, eps=1e-5, tied=False, llama3_rope=dict(factor=8.0, low=1.0, high=4.0, original=8192)),
    "qwen3": dict(arch="qwen3", vocab="qwen2", dim=64, ffn=128, heads=4, kv_heads=2, head_dim=32,
                  rope_base=1000000.0, eps=1e-6, tied=True, qk_norm=True),
    "qwen2.5-1.5b": dict(arch="qwen2", vocab="qwen2", dim=1536, ffn=8960, heads=12, kv_heads=2, head_dim=128,
                         rope_base=1000000.0, eps=1e-6, tied=True, biases=True, quantized=True),
}
LAYERS = 2
TEXTS = ["logits/L2-gpl-head.txt", "logits/L3-python-code.txt", "logits/L5-zh.txt"]


def hashed(seed: int, count: int, start: int = 0) -> np.ndarray:
    """`count` values in [-1, 1) from splitmix64(seed · 2^32 + i), i from `start`: the same on every machine."""
    with np.errstate(over="ignore"):
        z = np.arange(start, start + count, dtype=np.uint64) + np.uint64(seed) * np.uint64(1 << 32) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float64) / float(1 << 23) - 1.0).astype(np.float32)


def llama3_factors(m: dict) -> np.ndarray:
    """Llama 3.1's per-pair RoPE frequency factors (what convert_hf_to_gguf writes as rope_freqs)."""
    r = m["llama3_rope"]
    low_wavelen, high_wavelen = r["original"] / r["low"], r["original"] / r["high"]
    factors = []
    for i in range(0, m["head_dim"], 2):
        freq = 1.0 / (m["rope_base"] ** (i / m["head_dim"]))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(r["factor"])
        else:
            smooth = (r["original"] / wavelen - r["low"]) / (r["high"] - r["low"])
            factors.append(1.0 / ((1 - smooth) / r["factor"] + smooth))
    return np.array(factors, np.float32)


def write_model(path: str, m: dict, vocab_path: str) -> None:
    import gguf
    reader = gguf.GGUFReader(vocab_path)
    writer = gguf.GGUFWriter(path + ".part", m["arch"])
    writer.add_name(f"synthetic {os.path.basename(path)} (hashed weights, for parity tests)")
    vocab = copy_tokenizer(reader, writer)
    d, f, heads, kv, hd = m["dim"], m["ffn"], m["heads"], m["kv_heads"], m["head_dim"]
    add_hyperparameters(writer, layers=LAYERS, context=4096, dim=d, ffn=f, heads=heads, kv_heads=kv, head_dim=hd,
                        rope_base=m["rope_base"], eps=m["eps"], vocab=vocab)

    tensors = [("token_embd.weight", (vocab, d)), ("output_norm.weight", (d,))]
    if not m["tied"]:
        tensors.append(("output.weight", (vocab, d)))
    if "llama3_rope" in m:
        tensors.append(("rope_freqs.weight", (hd // 2,)))
    for l in range(LAYERS):
        b = f"blk.{l}."
        tensors += [(b + "attn_norm.weight", (d,)), (b + "attn_q.weight", (heads * hd, d)), (b + "attn_k.weight", (kv * hd, d)),
                    (b + "attn_v.weight", (kv * hd, d)), (b + "attn_output.weight", (d, heads * hd)),
                    (b + "ffn_norm.weight", (d,)), (b + "ffn_gate.weight", (f, d)), (b + "ffn_up.weight", (f, d)),
                    (b + "ffn_down.weight", (d, f))]
        if m.get("qk_norm"):
            tensors += [(b + "attn_q_norm.weight", (hd,)), (b + "attn_k_norm.weight", (hd,))]
        if m.get("biases"):
            tensors += [(b + "attn_q.bias", (heads * hd,)), (b + "attn_k.bias", (kv * hd,)), (b + "attn_v.bias", (kv * hd,))]
    for seed, (name, dims) in enumerate(tensors):
        if name == "rope_freqs.weight":
            data = llama3_factors(m)
        elif name.endswith(".bias"):  # small offsets
            data = 0.1 * hashed(seed + 1, dims[0])
        elif len(dims) == 1:  # norms: around 1
            data = 1 + 0.25 * hashed(seed + 1, dims[0])
        else:  # matrices scaled by 1/√fan-in (embeddings and head so that logits stay within about ±10)
            scale = 0.125 if name in ("token_embd.weight", "output.weight") else 1 / math.sqrt(dims[1])
            if m.get("quantized"):
                kind = gguf.GGMLQuantizationType.Q4_1 if ".ffn_" in name else gguf.GGMLQuantizationType.Q8_0
                step = 8192  # rows at a time: the embedding's hashes would take gigabytes at once
                data = np.concatenate([gguf.quants.quantize((hashed(seed + 1, min(step, dims[0] - r) * dims[1], r * dims[1]) * scale * math.sqrt(3))
                                                            .reshape(-1, dims[1]), kind) for r in range(0, dims[0], step)])
                writer.add_tensor(name, data, raw_dtype=kind)
                continue
            data = (hashed(seed + 1, int(np.prod(dims))) * scale * math.sqrt(3)).reshape(dims).astype(np.float16)
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(path + ".part", path)


def reference(name: str, path: str) -> None:
    import llama_cpp
    out = {"model": os.path.basename(path), "tokenize": {}, "logits": {}}
    vocab = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    source = os.path.join(FIXTURES, "tokenize")
    for text in sorted(os.listdir(source)):
        if text.endswith(".ids.json"):
            continue
        special = json.load(open(os.path.join(source, text + ".ids.json")))["special"]
        out["tokenize"][text] = {"special": special,
                                 "ids": vocab.tokenize(open(os.path.join(source, text), "rb").read(), add_bos=False, special=special)}
    for text in TEXTS:
        ids = vocab.tokenize(open(os.path.join(FIXTURES, text), "rb").read(), add_bos=True, special=False)
        llm = llama_cpp.Llama(model_path=path, n_ctx=len(ids) + 32, n_batch=512, n_ubatch=512, n_threads=2, logits_all=True,
                              type_k=0, type_v=0, flash_attn=False, verbose=False)
        llm.eval(ids)
        scores = np.array(llm.scores[:len(ids)], dtype=np.float32)
        topk = [[[int(i), float(row[i])] for i in np.argsort(-row, kind="stable")[:8]] for row in scores]
        greedy = []
        for _ in range(16):
            greedy.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval([greedy[-1]])
        out["logits"][text] = {"ids": ids, "topk": topk, "greedy": greedy}
        print(f"  {name} {text}: {len(ids)} ids, greedy {greedy[:6]}…")
        del llm
    os.makedirs(os.path.join(FIXTURES, "synthetic"), exist_ok=True)
    json.dump(out, open(os.path.join(FIXTURES, "synthetic", name + ".json"), "w"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=".cache")
    ap.add_argument("--reference", action="store_true", help="also write llama.cpp's outputs into the test fixtures")
    a = ap.parse_args()
    os.makedirs(os.path.join(a.cache, "synthetic"), exist_ok=True)
    for name, m in MODELS.items():
        path = os.path.join(a.cache, "synthetic", name + ".gguf")
        if not os.path.exists(path):
            write_model(path, m, vocab_file(a.cache, m["vocab"], PEER_VERSION))
            print(f"synthetic model ready: {path}")
        if a.reference:
            reference(name, path)


if __name__ == "__main__":
    main()
