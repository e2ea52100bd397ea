#!/usr/bin/env python3
"""`make bench`: twinbrain's engine against llama.cpp (llama-cpp-python) on the same GGUF,
in the same run, at 1 and 2 threads. Prints a side-by-side table with ratios and writes
the raw figures as JSON (--out).

Figures (as llama-bench defines them): pp128/pp512 = prompt tokens per second, one batch,
logits for the last position only; tg128 = tokens per second decoding 128 tokens one at a
time; load = seconds to a usable model; peak RSS of the process. Medians of --runs runs.
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, time

def peer(model: str, threads: int, runs: int) -> dict:
    """llama.cpp through llama-cpp-python, in this (child) process."""
    import random
    import llama_cpp
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=model, n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, logits_all=False, verbose=False)
    load = time.perf_counter() - t0
    rng = random.Random(42)
    vocab = llm.n_vocab()
    def tokens(n): return [rng.randrange(vocab) for _ in range(n)]
    def prefill(n):
        prompt = tokens(n)
        llm.reset(); llm.eval(prompt)  # warm-up
        out = []
        for _ in range(runs):
            llm.reset()
            t = time.perf_counter(); llm.eval(prompt); out.append(n / (time.perf_counter() - t))
        return out
    def decode(n):
        seq = tokens(n)
        out = []
        for r in range(runs + 1):
            llm.reset()
            t = time.perf_counter()
            for tok in seq:
                llm.eval([tok])
            if r:  # first run warms up
                out.append(n / (time.perf_counter() - t))
        return out
    pp128, pp512, tg128 = prefill(128), prefill(512), decode(128)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"threads": threads, "pp128": pp128, "pp512": pp512, "tg128": tg128, "load_s": load, "peak_rss_mib": rss}

def ours(eval_bin: str, model: str, threads: int, runs: int, arithmetic: str | None) -> dict:
    cmd = [eval_bin, "bench", "--json", "--model", model, "--threads", str(threads), "--runs", str(runs), "--all-runs"]
    if arithmetic:
        cmd += ["--arithmetic", arithmetic]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

def merged(rounds: list[dict]) -> dict:
    """The rounds' per-run figures in one list each; load and RSS as medians."""
    out = dict(rounds[0])
    for key in ["pp128", "pp512", "tg128"]:
        out[key] = [v for r in rounds for v in r[key]]
    for key in ["load_s", "peak_rss_mib"]:
        out[key] = statistics.median(r[key] for r in rounds)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--eval", default=".build/release/twinbrain-eval", help="twinbrain-eval binary")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternate the two engines this many times (the machine is shared: both see the same noise)")
    ap.add_argument("--arithmetic", help="twinbrain's matrix arithmetic (default: the engine's)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default="bench-results/latest.json")
    ap.add_argument("--peer-child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer_child:
        print(json.dumps(peer(a.model, a.peer_child, a.runs)))
        return

    rows = []
    for t in [int(x) for x in a.threads.split(",")]:
        mine, theirs = [], []
        for r in range(a.rounds):
            print(f"round {r + 1}/{a.rounds}: twinbrain at {t} thread(s)…", file=sys.stderr, flush=True)
            mine.append(ours(a.eval, a.model, t, a.runs, a.arithmetic))
            print(f"round {r + 1}/{a.rounds}: llama.cpp at {t} thread(s)…", file=sys.stderr, flush=True)
            child = subprocess.run([sys.executable, __file__, "--model", a.model, "--runs", str(a.runs), "--peer-child", str(t)],
                                   check=True, capture_output=True, text=True).stdout
            theirs.append(json.loads(child))
        rows.append((t, merged(mine), merged(theirs)))

    med = statistics.median
    def spread(v): return f"{min(v):.0f}–{max(v):.0f}"
    print(f"\nmodel: {os.path.basename(a.model)}   machine: {platform.machine()}, {os.cpu_count()} cores   "
          f"runs: {a.rounds} rounds of {a.runs}, alternating (median, min–max)   arithmetic: {mine[0].get('arithmetic', '?')}\n")
    print(f"| threads | figure | twinbrain | llama.cpp | ratio |")
    print(f"|---|---|---|---|---|")
    for t, m, p in rows:
        for key in ["pp128", "pp512", "tg128"]:
            print(f"| {t} | {key} tok/s | {med(m[key]):.1f} ({spread(m[key])}) | {med(p[key]):.1f} ({spread(p[key])}) | {med(m[key]) / med(p[key]):.2f}× |")
        print(f"| {t} | load s | {m['load_s']:.2f} | {p['load_s']:.2f} | {m['load_s'] / p['load_s']:.2f}× |")
        print(f"| {t} | peak RSS MiB | {m['peak_rss_mib']:.0f} | {p['peak_rss_mib']:.0f} | {m['peak_rss_mib'] / p['peak_rss_mib']:.2f}× |")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"model": a.model, "runs": a.runs, "rounds": a.rounds, "date": time.strftime("%Y-%m-%d"),
                   "results": [{"threads": t, "twinbrain": m, "llama_cpp": p} for t, m, p in rows]}, f, indent=1)
    print(f"\nraw figures: {a.out}", file=sys.stderr)

if __name__ == "__main__":
    main()
