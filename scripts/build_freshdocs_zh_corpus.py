#!/usr/bin/env python3
"""Builds the Chinese part of the FreshDocs development corpus from Debian's debian-reference-zh-cn (the Debian
Reference in Simplified Chinese), in the FreshDocs format (../shared/eval/FRESHDOCS.md), with its items. Nothing of it is
committed. Usage: build_freshdocs_zh_corpus.py OUT_DIR [--seed N]

  docs/zh/N.M.txt   the sections N.M of chapters 1 and 2 (GNU/Linux tutorial, package management), one document each,
                    as plain text: headings "1.1.3. root 账户", paragraphs unwrapped, list items as "- ".
  heldout.txt       a fixed fifth of the sections
  general/          the first sections of chapter 12 (programming): Chinese text of the same kind that the documents
                    do not hold, for retention and for checking that passage recall stays closed on it
  items.jsonl       made as the English items are (make_freshdocs_items.py), from the learned sections only:
                    verbatim   a real sentence with a command (name(N)) or a path masked; prompt = the section named
                               + up to 120 preceding characters; 3 distractors of the same type from other sections.
                    paraphrase chat questions: which section (N.M.K) says a sentence; which command a sentence names.
"""
import argparse, json, pathlib, random, re, shutil, subprocess, sys, tempfile, gzip

CHAPTERS = ("1", "2")
GENERAL_CHAPTER, GENERAL_SECTIONS = "12", 6
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
HEADING = re.compile(r"^(\d+(?:\.\d+)+)\.\s+(\S.*)$")
COMMAND = re.compile(r"\b([a-z][a-z0-9+_-]{1,30})\((\d)\)")
PATH = re.compile(r"“?(/(?:etc|usr|var|dev|proc|sys|home|root|tmp|bin|sbin|lib)/[A-Za-z0-9_./-]{2,60})")

def unwrap(lines):
    """Plain text from the wrapped, indented text rendering: each paragraph or list item on one line."""
    out, current, bullet = [], [], False
    def flush():
        nonlocal current, bullet
        if current:
            text = current[0]
            for piece in current[1:]:
                # Chinese is written without spaces: a wrapped line joins without one.
                join = "" if (CJK.search(text[-1:]) or CJK.search(piece[:1])) else " "
                text += join + piece
            out.append(("- " if bullet else "") + text)
        current, bullet = [], False
    for raw in lines:
        line = raw.replace("\xa0", " ").rstrip()
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        if HEADING.match(line) or stripped.startswith("表 ") or stripped in ("注意", "警告", "提示", "小心"):
            flush()
            out.append(stripped)
            continue
        if stripped.startswith("* "):
            flush()
            bullet = True
            current = [stripped[2:].strip()]
            continue
        current.append(stripped)
    flush()
    return out

def sections(text, chapters=CHAPTERS):
    """(number, title, lines) of the level-2 sections of the chosen chapters."""
    lines = text.replace("\xa0", " ").split("\n")
    starts = [i for i, l in enumerate(lines) if re.match(r"^第 \d+ 章", l)] + [len(lines)]
    body_start = next(i for i in starts if lines[i].startswith(f"第 {chapters[0]} 章"))
    end = next(i for i in starts if i > body_start and (i == len(lines) or not any(lines[i].startswith(f"第 {c} 章") for c in chapters)))
    out, current = [], None
    for line in lines[body_start:end]:
        m = HEADING.match(line)
        if m and m.group(1).count(".") == 1:
            current = (m.group(1), m.group(2), [line])
            out.append(current)
        elif current:
            current[2].append(line)
    return out

def reference_text():
    """The Debian Reference in Simplified Chinese as text, from its package (apt-get download, not installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        if subprocess.run(["apt-get", "download", "debian-reference-zh-cn"], cwd=tmp, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "download", "debian-reference-zh-cn"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        deb = next(pathlib.Path(tmp).glob("debian-reference-zh-cn_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/root"], check=True)
        return gzip.open(f"{tmp}/root/usr/share/debian-reference/debian-reference.zh-cn.txt.gz", "rt", encoding="utf-8").read()

def sentences(text):
    return [s for s in re.findall(r"[^。！？\n]+[。！？]", text)]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--per-doc", type=int, default=12)
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "docs/zh").mkdir(parents=True)
    (out / "general").mkdir()
    text = reference_text()

    docs = {}
    for number, title, lines in sections(text):
        doc_id = f"docs/zh/{number}.txt"
        docs[doc_id] = "\n".join(unwrap(lines)) + "\n"
        (out / doc_id).write_text(docs[doc_id], encoding="utf-8")
    for number, title, lines in sections(text, (GENERAL_CHAPTER,))[:GENERAL_SECTIONS]:
        (out / "general" / f"{number}.txt").write_text("\n".join(unwrap(lines)) + "\n", encoding="utf-8")
    if len(docs) < 8:
        sys.exit(f"only {len(docs)} sections found in debian-reference-zh-cn: the package's text layout changed")
    ids = sorted(docs, key=lambda d: [int(x) for x in pathlib.Path(d).stem.split(".")])
    heldout = [d for i, d in enumerate(ids) if i % 5 == 2]
    (out / "heldout.txt").write_text("\n".join(heldout) + "\n", encoding="utf-8")
    learned = {d: docs[d] for d in ids if d not in heldout}

    rng = random.Random(a.seed)
    # Every entity of each type by section, for distractors; every subsection number by chapter.
    pool = {"command": {}, "path": {}}
    subsections = {}
    for d, t in learned.items():
        for m in COMMAND.finditer(t):
            pool["command"].setdefault(m.group(1), set()).add(d)
        for m in PATH.finditer(t):
            pool["path"].setdefault(m.group(1), set()).add(d)
        for line in t.split("\n"):
            m = HEADING.match(line)
            if m and m.group(1).count(".") == 2:
                subsections.setdefault(m.group(1).split(".")[0], []).append(m.group(1))

    items = []
    def section_name(d):
        return "第 " + pathlib.Path(d).stem + " 节"
    for d, t in learned.items():
        # Verbatim: a command or path masked in a real sentence.
        found = [("command", m.start(1), m.group(1)) for m in COMMAND.finditer(t)] + \
                [("path", m.start(1), m.group(1)) for m in PATH.finditer(t)]
        rng.shuffle(found)
        seen, count = set(), 0
        for kind, start, ent in found:
            if count >= a.per_doc // 2 or ent in seen:
                continue
            others = sorted(e for e, where in pool[kind].items() if e != ent and d not in where)
            if len(others) < 3:
                continue
            others.sort(key=lambda e: (abs(len(e) - len(ent)), e))
            distractors = rng.sample(others[:6], 3)
            before = t[max(0, start - 120):start]
            if len(before) < 20 or ent in before or any(x in before for x in distractors):
                continue
            cands = [ent] + distractors
            rng.shuffle(cands)
            items.append({"id": f"zv{len(items):04d}-{kind}", "kind": "verbatim", "doc": d, "chat": False,
                          "prompt": f"摘自《Debian 参考手册》{section_name(d)}：\n" + before, "candidates": cands,
                          "answer": cands.index(ent)})
            seen.add(ent)
            count += 1
        # Paraphrase: which subsection says a sentence; which command a sentence names.
        current, chosen = None, []
        for line in t.split("\n"):
            m = HEADING.match(line)
            if m:
                current = m.group(1) if m.group(1).count(".") == 2 else None
                continue
            if current is None:
                continue
            for s in sentences(line.lstrip("- ")):
                if 16 <= len(s) <= 70 and CJK.search(s):
                    chosen.append((current, s.strip()))
        rng.shuffle(chosen)
        for number, sentence in chosen[: a.per_doc // 4]:
            chapter = number.split(".")[0]
            others = [n for n in subsections.get(chapter, []) if n != number]
            if len(others) < 3:
                continue
            cands = [number] + rng.sample(others, 3)
            rng.shuffle(cands)
            items.append({"id": f"zp{len(items):04d}", "kind": "paraphrase", "doc": d, "chat": True,
                          "prompt": f"《Debian 参考手册》的哪一节讲到：“{sentence}”？请回答节号。",
                          "candidates": cands, "answer": cands.index(number)})
        named = [(n, s.strip()) for n, s in chosen if COMMAND.search(s)]
        for number, sentence in named[: a.per_doc // 4]:
            m = COMMAND.search(sentence)
            command = m.group(1)
            others = sorted(e for e, where in pool["command"].items() if e != command and d not in where and e not in sentence)
            if len(others) < 3:
                continue
            cands = [command] + rng.sample(others, 3)
            rng.shuffle(cands)
            masked = sentence[:m.start()] + "____" + sentence[m.end():]
            items.append({"id": f"zp{len(items):04d}", "kind": "paraphrase", "doc": d, "chat": True,
                          "prompt": f"根据《Debian 参考手册》，“{masked}”中的空白处是哪个命令？",
                          "candidates": cands, "answer": cands.index(command)})

    with open(out / "items.jsonl", "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    kinds = {k: sum(1 for i in items if i["kind"] == k) for k in ("verbatim", "paraphrase")}
    chars = sum(len(t) for t in docs.values())
    print(f"{out}: {len(docs)} documents ({chars} characters), {len(heldout)} held out; "
          f"{len(items)} items ({kinds['verbatim']} verbatim, {kinds['paraphrase']} paraphrase)")

if __name__ == "__main__":
    main()
