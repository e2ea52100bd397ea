#!/usr/bin/env python3
"""Writes tiny random-weight GGUF models and what llama.cpp computes on them, for the tests:

  Tests/MainBrainTests/Fixtures/tiny/<name>.gguf   a 2-layer model, F32 weights
  Tests/MainBrainTests/Fixtures/tiny/<name>.json   {"texts": [{"text", "ids"}], "ids", "logits"}

Models: `qwen2` (q/k/v biases, NeoX RoPE, untied output head, pre-tokenizer qwen2) and
`llama-bpe` (llama architecture, pre-tokenizer llama-bpe). No qwen2 weights ship offline,
so this is how the qwen2 path is proven against the reference. The vocabulary is a small
byte-level BPE trained here on the GPL text. Run once; the outputs are committed.

    pip install gguf==0.19.0 llama-cpp-python==0.3.36
    python3 scripts/make-tiny-model-fixtures.py
"""
import collections, json, pathlib
import numpy as np
import gguf
import llama_cpp

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests/MainBrainTests/Fixtures/tiny"
CORPUS = pathlib.Path("/usr/share/common-licenses/GPL-3").read_bytes()[:20000]

def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

B2U = bytes_to_unicode()

def train_bpe(corpus: bytes, merges_wanted: int):
    words = collections.Counter(corpus.replace(b"\n", b" ").split(b" "))
    seqs = {tuple(B2U[b] for b in (b" " + w)): c for w, c in words.items() if w}
    merges = []
    for _ in range(merges_wanted):
        pairs = collections.Counter()
        for s, c in seqs.items():
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append((a, b))
        new = {}
        for s, c in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b); i += 2
                else:
                    out.append(s[i]); i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        seqs = new
    return merges

TEXTS = [
    "Hello world! It's 2026; they'RE here, we'VE 12345 items.\r\n\r\nNew  paragraph\twith\ttabs.",
    "def f(x):\n    return x**2 + 3.14159  # numbers 1 22 333 4444\n",
    "中文文本，混合 English 和 数字 42。 Emoji: 🙂 done.",
    "   leading spaces and trailing   ",
    "<|im_start|>user\nHi<|im_end|>\n",
]

def build(name: str, arch: str, pre: str, seed: int):
    rng = np.random.default_rng(seed)
    merges = train_bpe(CORPUS, 200)
    tokens = [B2U[b] for b in range(256)] + [a + b for a, b in merges]
    tokens = list(dict.fromkeys(tokens))
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * len(tokens) + [3] * len(specials)
    tokens += specials
    vocab = len(tokens)
    d, f, heads, kv_heads, layers = 64, 128, 4, 2, 2
    head_dim = d // heads
    path = OUT / f"{name}.gguf"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{name}")
    w.add_block_count(layers)
    w.add_context_length(256)
    w.add_embedding_length(d)
    w.add_feed_forward_length(f)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(1_000_000.0 if arch == "qwen2" else 10_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    w.add_eos_token_id(vocab - 3)
    w.add_bos_token_id(vocab - 2)
    w.add_add_bos_token(False)
    w.add_chat_template("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

    def t(n, *shape, scale=0.08, mean=0.0):
        w.add_tensor(n, (mean + scale * rng.standard_normal(shape)).astype(np.float32))

    t("token_embd.weight", vocab, d, scale=0.5)
    t("output_norm.weight", d, scale=0.1, mean=1.0)
    if arch == "qwen2":
        t("output.weight", vocab, d, scale=0.2)
    for l in range(layers):
        p = f"blk.{l}."
        t(p + "attn_norm.weight", d, scale=0.1, mean=1.0)
        t(p + "attn_q.weight", d, d, scale=0.25)
        t(p + "attn_k.weight", kv_heads * head_dim, d, scale=0.25)
        t(p + "attn_v.weight", kv_heads * head_dim, d, scale=0.2)
        if arch == "qwen2":
            t(p + "attn_q.bias", d, scale=0.3)
            t(p + "attn_k.bias", kv_heads * head_dim, scale=0.3)
            t(p + "attn_v.bias", kv_heads * head_dim, scale=0.3)
        t(p + "attn_output.weight", d, d, scale=0.15)
        t(p + "ffn_norm.weight", d, scale=0.1, mean=1.0)
        t(p + "ffn_gate.weight", f, d, scale=0.2)
        t(p + "ffn_up.weight", f, d, scale=0.2)
        t(p + "ffn_down.weight", d, f, scale=0.15)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_batch=256, n_ubatch=256, logits_all=True,
                          type_k=0, type_v=0, flash_attn=False, n_threads=2, verbose=False)
    texts = []
    for text in TEXTS:
        special = text.startswith("<|im_start|>")
        ids = llm.tokenize(text.encode(), add_bos=False, special=special)
        texts.append({"text": text, "special": special, "ids": ids})
    ids = [i for t in texts[:3] for i in t["ids"]][:96]
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    ref = {"texts": texts, "ids": ids, "vocab": vocab, "logits": [[round(float(v), 6) for v in row] for row in logits]}
    (OUT / f"{name}.json").write_text(json.dumps(ref, ensure_ascii=False, separators=(",", ":")))
    print(f"{name}: vocab {vocab}, {len(ids)} positions, {path.stat().st_size} bytes")

OUT.mkdir(parents=True, exist_ok=True)
build("qwen2", "qwen2", "qwen2", 1)
build("llama-bpe", "llama", "llama-bpe", 2)
