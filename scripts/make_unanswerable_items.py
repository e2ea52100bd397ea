#!/usr/bin/env python3
"""Questions about a FreshDocs corpus's learned documents that the documents do not answer
(issue #20: the reply should say the documents do not say). Writes CORPUS/unanswerable.jsonl
(one JSON object per line: id, prompt), which `twinbrain-eval freshdocs` asks after T9.

They are asked in the corpus's own question forms, about text the box never learned:
  en  PostgreSQL 15.2–15.8 release-note bullets (control/pg: same product, same wording, other
      releases): "which minor release made this change" and "who is credited with this change";
  zh  sentences of Debian Reference chapter 12 (general/: never learned): "which section says".
A sentence that also appears in a learned document is skipped.

Usage: python3 scripts/make_unanswerable_items.py CORPUS {en,zh} [--count 20] [--seed 7]
"""
import argparse
import json
import pathlib
import random
import re

CREDIT = re.compile(r"\s*\(([^()]*)\)\s*$")


def learned_text(corpus):
    heldout = set((corpus / "heldout.txt").read_text().split()) if (corpus / "heldout.txt").exists() else set()
    return "\n".join(p.read_text() for p in sorted((corpus / "docs").rglob("*"))
                     if p.is_file() and str(p.relative_to(corpus)) not in heldout)


def english(corpus, count, rng):
    known = learned_text(corpus)
    bullets = []
    for path in sorted((corpus / "control" / "pg").glob("release-15-*.txt")):
        version = path.stem.replace("release-", "").replace("-", ".")
        for line in path.read_text().splitlines():
            if not line.startswith("- "):
                continue
            credit = CREDIT.search(line)
            change = CREDIT.sub("", line[2:]).strip()
            if credit and 40 <= len(change) <= 160 and change not in known:
                bullets.append((version, change))
    rng.shuffle(bullets)
    out = []
    for i, (version, change) in enumerate(bullets[:count]):
        if i % 2 == 0:
            prompt = f'Which PostgreSQL 15 minor release made this change: "{change}"? Answer with the version number.'
        else:
            prompt = f'Who is credited with this change in PostgreSQL {version}: "{change}"?'
        out.append({"id": f"u{i:04d}", "prompt": prompt})
    return out


def chinese(corpus, count, rng):
    known = learned_text(corpus)
    sentences = []
    for path in sorted((corpus / "general").glob("12.*.txt")):
        for line in path.read_text().splitlines():
            for s in re.findall(r"[^。！？\n]{12,60}。", line):
                s = s.strip()
                if sum("\u4e00" <= c <= "\u9fff" for c in s) >= 8 and s not in known:
                    sentences.append(s)
    rng.shuffle(sentences)
    return [{"id": f"zu{i:04d}", "prompt": f"《Debian 参考手册》的哪一节讲到：“{s}”？请回答节号。"}
            for i, s in enumerate(sentences[:count])]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=pathlib.Path)
    parser.add_argument("language", choices=["en", "zh"])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    items = (english if args.language == "en" else chinese)(args.corpus, args.count, rng)
    if len(items) < args.count:
        raise SystemExit(f"only {len(items)} unanswerable questions could be made from {args.corpus}")
    with open(args.corpus / "unanswerable.jsonl", "w") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"{len(items)} unanswerable questions in {args.corpus / 'unanswerable.jsonl'}")


if __name__ == "__main__":
    main()
