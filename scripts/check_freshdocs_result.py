#!/usr/bin/env python3
"""Checks that a FreshDocs result (twinbrain-eval freshdocs --out) is complete: the schema, every
asked-for system, every task answered or reported unsupported/not run with a reason, finite
numbers, and the table and item outcomes beside it. It checks the pipeline, not the scores.

Usage: check_freshdocs_result.py RESULT.json SYSTEM[,SYSTEM...]
"""
import json, math, pathlib, sys

KEYS = {"t1": ["ppl", "ppl_ci", "bits_per_byte", "tokens"], "t2": ["ppl", "ppl_ci", "bits_per_byte", "tokens"],
        "t3": ["n", "acc", "acc_norm", "acc_cal", "chance", "unknown_n"], "t4": ["n", "acc", "acc_norm", "acc_cal", "chance"],
        "t5": ["ppl", "base_ppl", "dppl_pct", "kl", "top1_agree"],
        "t6": ["equivalent", "same_retrieval", "max_abs_dlogp", "forget_s", "forgotten_acc_norm_after"],
        "t7": ["learn_s", "scoring_tok_s", "window_tok_s"], "t8": ["prompts", "repeated_4gram_rate", "distinct_2"],
        "t9": ["n", "answer_contains_gold", "evidence_contains_gold", "gold_document_cited", "gold_document_first"]}

def fail(message):
    sys.exit(f"FreshDocs result check failed: {message}")

def finite(value, where):
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            fail(f"{where} is {v}")

def main():
    path, wanted = pathlib.Path(sys.argv[1]), sys.argv[2].split(",")
    result = json.loads(path.read_text())
    if result.get("schema") != "twinbrain.freshdocs/1":
        fail(f"schema is {result.get('schema')!r}")
    systems = {s["id"]: s for s in result["systems"]}
    if sorted(systems) != sorted(wanted):
        fail(f"systems {sorted(systems)}, expected {sorted(wanted)}")
    for sid, s in systems.items():
        for task, keys in KEYS.items():
            t = s.get(task)
            if t is None:
                fail(f"{sid} has no {task}")
            if t.get("supported") is False or t.get("run") is False:
                if not t.get("reason"):
                    fail(f"{sid} {task} is skipped without a reason")
                continue
            for k in keys:
                if k not in t:
                    fail(f"{sid} {task} lacks {k}")
                finite(t[k], f"{sid} {task}.{k}")
        if sid != "base" and s["t6"].get("supported") and not s["t6"]["equivalent"]:
            fail(f"{sid} T6: forgetting is not equivalent to never learning ({s['t6']})")
    stem = str(path)[:-5] if str(path).endswith(".json") else str(path)
    table = pathlib.Path(stem + ".md").read_text()
    for sid in systems:
        if f"| {sid} |" not in table:
            fail(f"the table has no row for {sid}")
    outcomes = [json.loads(l) for l in pathlib.Path(stem + ".items.jsonl").read_text().splitlines()]
    for sid in systems:
        t3, t4 = systems[sid]["t3"], systems[sid]["t4"]
        expected = sum(t.get("n", 0) for t in (t3, t4) if t.get("supported"))
        got = sum(1 for o in outcomes if o["system"] == sid)
        if got != expected:
            fail(f"{sid}: {got} item outcomes, expected {expected}")
    print(f"{path}: complete ({', '.join(sorted(systems))}; every task answered or reported with a reason)")

if __name__ == "__main__":
    main()
