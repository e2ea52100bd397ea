#!/usr/bin/env python3
"""What llama.cpp computes on the default Q4_1 file with its own quantised CPU kernels (F16 KV
cache, flash attention off: llama-cpp-python's defaults), for the parity texts of
Tests/MainBrainTests/Fixtures/logits/: per position the 8 highest logits, and 24 greedy tokens
after the whole text. Written to Tests/MainBrainTests/Fixtures/logits-quantized/NAME.json; the
engine's quantized arithmetic is held to them (ParityTests). Needs llama-cpp-python (make bench
installs it).

The token ids are the f32 reference's (the tokenizer's parity is tested on its own), so both
engines see the same input. Each file also records how far llama.cpp agrees with itself when
the same text goes token by token instead of in batches of 512 (`self`): 8-bit activations
make the arithmetic's results depend on summation order, and that is the floor any other
engine's agreement can be held to.
"""
import argparse, json, os

import numpy as np


def chunked_perplexity(model: str, text_path: str, batch: int, threads: int) -> dict:
    """llama-perplexity's procedure (-c 512, no BOS): per chunk of 512 from an empty cache, the
    logits at 256…510 score the tokens at 257…511."""
    import llama_cpp
    llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_batch=batch, n_ubatch=batch, n_threads=threads,
                          n_threads_batch=threads, logits_all=True, verbose=False)
    ids = llm.tokenize(open(text_path, "rb").read(), add_bos=False, special=False)
    nll = []
    for c in range(len(ids) // 512):
        chunk = ids[c * 512:(c + 1) * 512]
        llm.reset()
        llm.eval(chunk)
        scores = np.array(llm.scores[:512], dtype=np.float64)
        for p in range(256, 511):
            row = scores[p]
            top = row.max()
            nll.append(top + np.log(np.exp(row - top).sum()) - row[chunk[p + 1]])
    return {"batch": batch, "tokens": len(ids), "scored": len(nll), "perplexity": float(np.exp(np.mean(nll)))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--fixtures", default="Tests/MainBrainTests/Fixtures")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--perplexity-only", action="store_true")
    a = ap.parse_args()
    out_dir = os.path.join(a.fixtures, "logits-quantized")
    os.makedirs(out_dir, exist_ok=True)
    # GPL-3's chunked perplexity, in batches of 512 (as the engine's test computes it) and token by token.
    text = os.path.join(a.fixtures, "tokenize", "05-gpl3-full.txt")
    runs = [chunked_perplexity(a.model, text, b, a.threads) for b in (512, 1)]
    with open(os.path.join(out_dir, "perplexity.json"), "w") as f:
        json.dump({"text": "tokenize/05-gpl3-full.txt", "runs": runs}, f, indent=1)
    print("GPL-3 perplexity: " + ", ".join(f"batch {r['batch']}: {r['perplexity']:.4f}" for r in runs))
    if a.perplexity_only:
        return
    import llama_cpp
    source = os.path.join(a.fixtures, "logits")
    names = sorted(f[:-5] for f in os.listdir(source) if f.endswith(".json"))
    longest = max(len(json.load(open(os.path.join(source, n + ".json")))["ids"]) for n in names)
    def engine(batch):
        return llama_cpp.Llama(model_path=a.model, n_ctx=longest + 64, n_batch=batch, n_ubatch=batch, n_threads=a.threads,
                               n_threads_batch=a.threads, logits_all=True, verbose=False)
    llm, single = engine(512), engine(1)
    for name in names:
        ref = json.load(open(os.path.join(source, name + ".json")))
        ids = ref["ids"]
        llm.reset()
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)], dtype=np.float32)
        topk = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:8]
            topk.append([[int(i), float(row[i])] for i in best])
        single.reset()
        single.eval(ids)
        alone = np.array(single.scores[: len(ids)], dtype=np.float32)
        ranked = np.sort(scores, axis=1)
        clear = ranked[:, -1] - ranked[:, -2] >= 0.01
        same = (scores.argmax(1) == alone.argmax(1))[clear]
        self_check = {"compared": int(clear.sum()), "same_top1": int(same.sum()),
                      "max_abs_delta": float(np.abs(scores - alone).max())}
        greedy = []
        for _ in range(24):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(token)
            llm.eval([token])
        with open(os.path.join(out_dir, name + ".json"), "w") as f:
            json.dump({"ids": ids, "topk": topk, "greedy": greedy, "self": self_check,
                       "producer": f"llama-cpp-python {llama_cpp.__version__}, Q4_1 file as stored, F16 KV, flash attention off, "
                                   f"{a.threads} threads, one batch of up to 512"}, f, separators=(",", ":"))
        print(f"{name}: {len(ids)} positions; llama.cpp token by token against in batches: "
              f"top-1 {self_check['same_top1']}/{self_check['compared']}, max |Δ| {self_check['max_abs_delta']:.3f}")


if __name__ == "__main__":
    main()
