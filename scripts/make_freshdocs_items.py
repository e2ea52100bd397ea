#!/usr/bin/env python3
"""Writes items.jsonl for a FreshDocs corpus built by build_freshdocs_corpus.py: deterministic (seeded)
multiple-choice items from the *learned* documents only (../shared/eval/FRESHDOCS.md).

verbatim    a real sentence with an entity masked: credited authors in parentheses, CVE ids, function
            names (name()), configuration parameters (snake_case words), identifiers in `backticks`
            (Swift notes). prompt = a header line naming the document + up to 60 preceding words;
            candidates = the gold entity + 3 distractors of the same type from other documents, closest in
            corpus frequency, then in length; gold position shuffled. The id names the type.
paraphrase  chat questions about PostgreSQL bullets: which minor release fixed it, who is credited.

Usage: make_freshdocs_items.py CORPUS_DIR [--seed N] [--per-doc N]
"""
import argparse, json, math, pathlib, random, re

TYPES = {
    "author": re.compile(r"\(((?:[A-Z][\w'’.-]+(?: [A-Z][\w'’.-]+)+)(?:, (?:[A-Z][\w'’.-]+(?: [A-Z][\w'’.-]+)+))*)\)"),
    "cve": re.compile(r"CVE-\d{4}-\d{4,}"),
    "function": re.compile(r"\b[a-z_][a-z0-9_]{3,}\(\)"),
    "parameter": re.compile(r"\b[a-z]+(?:_[a-z0-9]+){1,}\b"),
    "identifier": re.compile(r"`([@#-]?[A-Za-z_][A-Za-z0-9_.:()-]{2,39})`"),
}

def entities(text):
    """(type, start, end, entity) for each entity occurrence; for authors the name list inside the parentheses."""
    out = []
    for kind, rx in TYPES.items():
        for m in rx.finditer(text):
            g = 1 if rx.groups else 0
            out.append((kind, m.start(g), m.end(g), m.group(g)))
    return out

def family(doc_id):
    return doc_id.rsplit("/", 1)[0]

def name_parts(name):
    """Lower-case words of 4+ letters in a code name: snake_case, camelCase, dotted."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", name)
    return {w.lower() for w in words if len(w) >= 4}

def title(doc_id):
    name = pathlib.Path(doc_id).stem
    if doc_id.startswith("docs/pg/"):
        return "PostgreSQL " + name.replace("release-", "").replace("-", ".") + " release notes"
    return "Swift diagnostics: " + name.replace("-", " ")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--per-doc", type=int, default=12)
    a = ap.parse_args()
    root = pathlib.Path(a.corpus)
    heldout = set((root / "heldout.txt").read_text().split())
    docs = {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted((root / "docs").rglob("*")) if p.is_file()}
    learned = {k: v for k, v in docs.items() if k not in heldout}
    rng = random.Random(a.seed)

    # Entities of each type by document, for distractors.
    pool, count_of = {}, {}
    for doc, text in learned.items():
        for kind, _, _, ent in entities(text):
            pool.setdefault(kind, {}).setdefault(ent, set()).add(doc)
            count_of.setdefault(kind, {}).setdefault(ent, 0)
            count_of[kind][ent] += 1

    items = []
    for doc, text in learned.items():
        found = entities(text)
        rng.shuffle(found)
        seen, count, per_kind = set(), 0, {}
        for kind, start, end, ent in found:
            # At most a third of a document's items of one type, so no type dominates.
            if count >= a.per_doc or ent in seen or per_kind.get(kind, 0) >= max(2, a.per_doc // 3):
                continue
            # Code names used across the notes (`let`, `Sendable`, `any`) are general Swift the base
            # knows from the context; only names particular to one document test the document.
            if kind == "identifier" and (len(pool[kind][ent]) > 1 or len(ent) < 5):
                continue
            # Distractors from the same collection (docs/pg, docs/swift): a Swift method among
            # PostgreSQL functions would give itself away.
            others = [e for e, where in pool.get(kind, {}).items() if e != ent and doc not in where
                      and any(family(w) == family(doc) for w in where) and (kind != "identifier" or (len(where) == 1 and len(e) >= 5))]
            if len(others) < 3:
                continue
            # Distractors as common in the corpus as the gold (a frequent name like a prolific
            # committer is otherwise guessable without the document), then as close in length.
            others.sort(key=lambda e: (abs(math.log(count_of[kind][e] / count_of[kind][ent])), abs(len(e) - len(ent)), e))
            distractors = rng.sample(others[:6], 3)
            before = text[:start]
            starts = [m.start() for m in re.finditer(r"\S+", before)]
            if len(starts) < 5:
                continue
            # Up to 60 preceding words, as written (line breaks and bullets kept).
            prompt = f"From the {title(doc)}:\n" + before[starts[-60] if len(starts) >= 60 else starts[0]:]
            # An entity the context already shows leaks the answer; so would a distractor shown there.
            if ent in prompt or any(d in prompt for d in distractors):
                continue
            # So does a code name whose parts the context spells out (`sendingParameter` after
            # "sending parameter"): the base would pick it without knowing the document.
            if kind != "author" and any(w in prompt.lower() for w in name_parts(ent)):
                continue
            candidates = [ent] + distractors
            rng.shuffle(candidates)
            items.append({"id": f"v{len(items):04d}-{kind}", "kind": "verbatim", "doc": doc, "prompt": prompt, "chat": False,
                          "candidates": candidates, "answer": candidates.index(ent)})
            seen.add(ent)
            count += 1
            per_kind[kind] = per_kind.get(kind, 0) + 1

    # Paraphrase: PostgreSQL bullets with a credit.
    versions = sorted({pathlib.Path(d).stem.replace("release-", "").replace("-", ".") for d in learned if d.startswith("docs/pg/")})
    bullet = re.compile(r"^- (.+?) \(((?:[A-Z][\w'’.-]+(?: [A-Z][\w'’.-]+)+)(?:, [^)]*)?)\)\s*$", re.M)
    authors = sorted({e for e in pool.get("author", {})})
    for doc, text in learned.items():
        if not doc.startswith("docs/pg/"):
            continue
        version = pathlib.Path(doc).stem.replace("release-", "").replace("-", ".")
        bullets = bullet.findall(text)
        rng.shuffle(bullets)
        for what, credit in bullets[: a.per_doc // 2]:
            cands = [version] + rng.sample([v for v in versions if v != version], 3)
            rng.shuffle(cands)
            items.append({"id": f"p{len(items):04d}", "kind": "paraphrase", "doc": doc, "chat": True,
                          "prompt": f'Which PostgreSQL 15 minor release made this change: "{what}"? Answer with the version number.',
                          "candidates": cands, "answer": cands.index(version)})
            others = [x for x in authors if x != credit and x not in text]
            if len(others) >= 3:
                cands = [credit] + rng.sample(others, 3)
                rng.shuffle(cands)
                items.append({"id": f"p{len(items):04d}", "kind": "paraphrase", "doc": doc, "chat": True,
                              "prompt": f'Who is credited with this change in PostgreSQL {version}: "{what}"?',
                              "candidates": cands, "answer": cands.index(credit)})

    with open(root / "items.jsonl", "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    kinds = {k: sum(1 for i in items if i["kind"] == k) for k in ("verbatim", "paraphrase")}
    print(f"{root}/items.jsonl: {len(items)} items ({kinds['verbatim']} verbatim, {kinds['paraphrase']} paraphrase)")

if __name__ == "__main__":
    main()
