#!/usr/bin/env python3
"""Appliance-size benchmark models: the shapes of the models buyers bring (Qwen2.5-1.5B,
Qwen2.5-7B, Llama-3-8B, Llama-3.1-8B, Qwen3-8B) with random weights and real tokenizers, quantised by llama.cpp's own
quantizer, cached under .cache/bench-models/ (`make bench` builds what is missing).

Speed depends on shapes and formats, not on what the weights say, so random weights measure
the engine as the real models would. The tokenizers are the vocab-only GGUFs of the
llama-cpp-python sdist (vendor/llama.cpp/models/); the weights are written as F16 with PyPI's
`gguf` package, then quantised with `llama_model_quantize` (llama-cpp-python) to Q4_K_M and
Q8_0; the F16 file is removed afterwards.
"""
import argparse, ctypes, os, sys, tarfile, time

import numpy as np

SHAPES = {
    # name: architecture, tokenizer, layers, width, feed-forward, heads, kv heads, RoPE base, norm eps, context, tied output
    "qwen2.5-1.5b": dict(arch="qwen2", vocab="qwen2", layers=28, dim=1536, ffn=8960, heads=12, kv_heads=2,
                         rope_base=1e6, eps=1e-6, context=32768, tied=True),
    "qwen2.5-7b": dict(arch="qwen2", vocab="qwen2", layers=28, dim=3584, ffn=18944, heads=28, kv_heads=4,
                       rope_base=1e6, eps=1e-6, context=32768, tied=False),
    "llama-3-8b": dict(arch="llama", vocab="llama-bpe", layers=32, dim=4096, ffn=14336, heads=32, kv_heads=8,
                       rope_base=5e5, eps=1e-5, context=8192, tied=False),
    # Llama 3.1: the same shape with llama3 RoPE frequency factors (rope_freqs.weight).
    "llama-3.1-8b": dict(arch="llama", vocab="llama-bpe", layers=32, dim=4096, ffn=14336, heads=32, kv_heads=8,
                         rope_base=5e5, eps=1e-5, context=131072, tied=False, rope_freqs=True),
    # Qwen3: Q/K norms, 128-wide heads (32 × 128 = 4096 = dim here), no q/k/v biases.
    "qwen3-8b": dict(arch="qwen3", vocab="qwen2", layers=36, dim=4096, ffn=12288, heads=32, kv_heads=8, head_dim=128,
                     rope_base=1e6, eps=1e-6, context=40960, tied=False),
}
QUANTS = {"Q4_K_M": 15, "Q8_0": 7}  # llama_ftype values
SDIST = "llama_cpp_python-{version}.tar.gz"


def fetch_sdist(version: str, path: str) -> None:
    """The sdist from PyPI's simple index, checked against the sha256 the index names."""
    import hashlib, re, urllib.request
    html = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-python/", timeout=60).read().decode()
    name = re.escape(os.path.basename(path))
    m = re.search(r'href="([^"#]*/' + name + r')#sha256=([0-9a-f]{64})"', html)
    if not m:
        sys.exit(f"PyPI's index has no {os.path.basename(path)}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    print(f"  downloading {os.path.basename(path)}…", file=sys.stderr, flush=True)
    data = urllib.request.urlopen(m.group(1), timeout=600).read()
    if hashlib.sha256(data).hexdigest() != m.group(2):
        sys.exit(f"{os.path.basename(path)}: sha256 does not match PyPI's")
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.replace(path + ".part", path)


def vocab_file(cache: str, name: str, version: str) -> str:
    """The vocab-only GGUF `name`, taken from the llama-cpp-python sdist (downloaded once)."""
    path = os.path.join(cache, "vocab", f"ggml-vocab-{name}.gguf")
    if os.path.exists(path):
        return path
    sdist = os.path.join(cache, "wheels", SDIST.format(version=version))
    if not os.path.exists(sdist):
        fetch_sdist(version, sdist)
    member = f"llama_cpp_python-{version}/vendor/llama.cpp/models/ggml-vocab-{name}.gguf"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tarfile.open(sdist) as tar:
        data = tar.extractfile(member).read()
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.replace(path + ".part", path)
    return path


def copy_tokenizer(reader, writer) -> int:
    """Every tokenizer.* key of the vocab file, with its type; returns the token count."""
    import gguf
    count = 0
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                values = [bytes(field.parts[i]) for i in field.data]
            else:
                values = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_array(name, values)
            if name == "tokenizer.ggml.tokens":
                count = len(values)
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_string(name, bytes(field.parts[field.data[0]]).decode())
        else:
            writer.add_key_value(name, field.parts[field.data[0]].tolist()[0], kind)
    return count


def add_hyperparameters(writer, *, layers: int, context: int, dim: int, ffn: int, heads: int, kv_heads: int,
                        head_dim: int, rope_base: float, eps: float, vocab: int) -> None:
    """The `<arch>.*` keys of a llama-family model, as converters write them (mostly-F16 file)."""
    writer.add_block_count(layers)
    writer.add_context_length(context)
    writer.add_embedding_length(dim)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(rope_base)
    writer.add_layer_norm_rms_eps(eps)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(vocab)
    writer.add_file_type(1)  # mostly F16


def write_f16(path: str, shape: dict, vocab_path: str, seed: int = 0) -> None:
    import gguf
    reader = gguf.GGUFReader(vocab_path)
    arch = shape["arch"]
    writer = gguf.GGUFWriter(path + ".part", arch)
    writer.add_name(f"synthetic {os.path.basename(path)} (random weights, for benchmarks)")
    vocab = copy_tokenizer(reader, writer)
    d, f, layers, heads, kv = shape["dim"], shape["ffn"], shape["layers"], shape["heads"], shape["kv_heads"]
    head_dim = shape.get("head_dim", d // heads)
    add_hyperparameters(writer, layers=layers, context=shape["context"], dim=d, ffn=f, heads=heads, kv_heads=kv,
                        head_dim=head_dim, rope_base=shape["rope_base"], eps=shape["eps"], vocab=vocab)

    tensors = [("token_embd.weight", (vocab, d)), ("output_norm.weight", (d,))]
    if not shape["tied"]:
        tensors.append(("output.weight", (vocab, d)))
    if shape.get("rope_freqs"):
        tensors.append(("rope_freqs.weight", (head_dim // 2,)))
    q = heads * head_dim
    for l in range(layers):
        b = f"blk.{l}."
        tensors += [(b + "attn_norm.weight", (d,)), (b + "attn_q.weight", (q, d)), (b + "attn_k.weight", (kv * head_dim, d)),
                    (b + "attn_v.weight", (kv * head_dim, d)), (b + "attn_output.weight", (d, q)),
                    (b + "ffn_norm.weight", (d,)), (b + "ffn_gate.weight", (f, d)), (b + "ffn_up.weight", (f, d)),
                    (b + "ffn_down.weight", (d, f))]
        if arch == "qwen2":
            tensors += [(b + "attn_q.bias", (q,)), (b + "attn_k.bias", (kv * head_dim,)), (b + "attn_v.bias", (kv * head_dim,))]
        if arch == "qwen3":
            tensors += [(b + "attn_q_norm.weight", (head_dim,)), (b + "attn_k_norm.weight", (head_dim,))]

    def dtype(name, dims):  # norms and biases f32, matrices f16 (as converters write them)
        return np.float32 if len(dims) == 1 else np.float16

    for name, dims in tensors:
        t = dtype(name, dims)
        writer.add_tensor_info(name, dims, np.dtype(t), int(np.prod(dims)) * np.dtype(t).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for i, (name, dims) in enumerate(tensors):
        if len(dims) == 1:
            data = np.ones(dims, np.float32) if name.endswith(("norm.weight", "rope_freqs.weight")) \
                else (rng.standard_normal(dims, np.float32) * 0.02)
        else:
            # One tensor at a time: a 7B never holds all its weights in memory.
            data = (rng.standard_normal(dims, np.float32) * (1 / np.sqrt(dims[1]))).astype(np.float16)
        writer.write_tensor_data(data)
        print(f"\r  writing {os.path.basename(path)}: tensor {i + 1}/{len(tensors)}", end="", file=sys.stderr, flush=True)
    writer.close()
    print(file=sys.stderr)
    os.replace(path + ".part", path)


def quantize(source: str, target: str, ftype: int, threads: int) -> None:
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(source.encode(), (target + ".part").encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize {source} → {target} failed ({rc})")
    os.replace(target + ".part", target)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shapes", nargs="*", default=list(SHAPES), help=f"which ({', '.join(SHAPES)}); default all")
    ap.add_argument("--quants", default="Q4_K_M,Q8_0")
    ap.add_argument("--cache", default=".cache")
    ap.add_argument("--peer-version", default="0.3.36")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    out_dir = os.path.join(a.cache, "bench-models")
    os.makedirs(out_dir, exist_ok=True)
    for name in a.shapes:
        if name not in SHAPES:
            sys.exit(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
        shape = SHAPES[name]
        wanted = [q for q in a.quants.split(",") if not os.path.exists(os.path.join(out_dir, f"{name}.{q}.gguf"))]
        if not wanted:
            continue
        f16 = os.path.join(out_dir, f"{name}.F16.gguf")
        t = time.time()
        if not os.path.exists(f16):
            write_f16(f16, shape, vocab_file(a.cache, shape["vocab"], a.peer_version))
        for q in wanted:
            print(f"  quantising {name} to {q}…", file=sys.stderr, flush=True)
            quantize(f16, os.path.join(out_dir, f"{name}.{q}.gguf"), QUANTS[q], a.threads)
        os.remove(f16)
        print(f"{name}: {', '.join(wanted)} in {time.time() - t:.0f} s", file=sys.stderr)
        for q in a.quants.split(","):
            print(os.path.join(out_dir, f"{name}.{q}.gguf"))


if __name__ == "__main__":
    main()
