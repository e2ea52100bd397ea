#!/usr/bin/env python3
"""Training data for the learning brain's reader (issue #20): question / passage / answer triples
made here, from public text the machine already has, never from the FreshDocs development items.

Source (this first version): the Debian changelogs under /usr/share/doc/*/changelog.Debian.gz.
Each package's newest entries become one document, written as the box would learn it; each entry
with bullet points gives questions whose answer is a span of that document:
  - release:  which version of PKG made this change: "<bullet, sometimes shortened>"?  → the version
              (it sits in the entry's header line, as a release-notes answer sits in its heading)
  - who:      who is credited with the change "<bullet>" in PKG VERSION?  → the name in parentheses
              at the end of the bullet, where the bullet has one
  - bug:      which Debian bug did the change "<bullet>" in PKG close?  → the bug number
  - uploader: who uploaded PKG VERSION?  → the name on the entry's " -- " trailer line
Each question in two or three wordings. Three changelogs in five are written as they are; the others
lay the same entries out as release notes are often written (Markdown headings per version;
numbered "C.N. Release V" headings with a "C.N.1. Changes" section, as DocBook numbers them; "Version V - date" lines), bullets
credited in parentheses, so the reader learns where a version or a name sits rather than one format.

Second source (Chinese): the Debian Reference in Simplified Chinese (debian-reference-zh-cn,
fetched by the development corpus's script, build_freshdocs_zh_corpus.py), chapters 3-11 only (the
development corpus uses chapters 1, 2 and 12), one document per section N.M:
  - section:  which section (N.M.K) says "<sentence>"?  → the number in the subsection's heading
  - command:  which command fills the blank in "<sentence with name(N) masked>"?  → the command

These templates resemble the development set's "which minor release", "who is credited", "which
section" and "which command" questions on purpose (the reader must learn where such answers sit),
so results on that set are reported per kind beside this note, each question in two or three
wordings. PostgreSQL's own packages are left out: the development documents are PostgreSQL
release notes.

Writes OUT/docs/<package>.changelog, OUT/docs/zh/<N.M>.txt and OUT/items.jsonl (one JSON object
per line: id, doc, kind, question, answer, sentence, split, source), split by document: about 15%
of documents are "dev".

Usage: python3 scripts/make_reader_data.py OUT [--max-documents N] [--entries-per-document N] [--no-zh]
"""
import argparse
import gzip
import json
import pathlib
import random
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import build_freshdocs_zh_corpus as zh  # noqa: E402  (its section parser and patterns)

ZH_CHAPTERS = tuple(str(n) for n in range(3, 12))
ZH_SECTION_WORDINGS = ["《Debian 参考手册》的哪一节讲到：“{s}”？请回答节号。", "“{s}”这句话出自哪一节？请给出节号。",
                       "哪一小节提到了“{s}”？回答节号即可。"]
ZH_COMMAND_WORDINGS = ["根据《Debian 参考手册》，“{s}”中的空白处是哪个命令？", "“{s}”里缺的是哪个命令？"]

CHANGELOG_GLOB = "/usr/share/doc/*/changelog.Debian.gz"
HEADER = re.compile(r"^(?P<package>[a-z0-9][a-z0-9+.-]*) \((?P<version>[^)]+)\) [^;]*;.*$")
TRAILER = re.compile(r"^ -- (?P<name>[^<]+?) <[^>]*>  .+$")
# A credit: capitalised names (letters, spaces, commas, dots, hyphens, "and"), no digits.
CREDIT = re.compile(r"\(((?:[A-Z][A-Za-z'.-]*)(?:[ ,]+(?:and|[A-Z][A-Za-z'.-]*))*)\)\.?\s*$")
CLOSES = re.compile(r"Closes:\s*#(\d+)", re.IGNORECASE)
CLOSES_CLAUSE = re.compile(r"\(?\s*Closes:\s*#?\d+(?:\s*,\s*#?\d+)*\s*\)?\.?", re.IGNORECASE)
SECTION = re.compile(r"^  \[ (?P<name>[^\]]+?) \]$")  # a team upload's "[ Name ]": the bullets below are theirs
EXCLUDED = re.compile(r"postgres|libpq", re.IGNORECASE)


def entries(text):
    """The changelog's entries: header line, bullets (continuation lines joined, each with the
    "[ Name ]" section it sits in, if any) and trailer."""
    entry = None
    for line in text.splitlines():
        header = HEADER.match(line)
        if header:
            entry = {"package": header["package"], "version": header["version"], "bullets": [], "sections": [],
                     "lines": [line]}
            section = None
            continue
        if entry is None:
            continue
        entry["lines"].append(line)
        trailer = TRAILER.match(line)
        if trailer:
            entry["uploader"] = trailer["name"].strip()
            yield entry
            entry = None
        elif SECTION.match(line):
            section = SECTION.match(line)["name"].strip()
        elif line.startswith("  * "):
            entry["bullets"].append(line[4:].strip())
            entry["sections"].append(section)
        elif line.startswith("    ") and entry["bullets"] and not line.strip().startswith(("-", "+", "*")):
            entry["bullets"][-1] += " " + line.strip()


def quoted(bullet, rng):
    """The bullet as a question quotes it: whole, or its first words when long (users shorten)."""
    text = CLOSES_CLAUSE.sub("", bullet).strip().rstrip(".").strip()
    text = CREDIT.sub("", text).strip().rstrip(".").strip()
    words = text.split()
    if len(words) > 14 and rng.random() < 0.5:
        words = words[: rng.randint(8, 14)]
    return " ".join(words)


RELEASE_WORDINGS = ['Which version of {p} made this change: "{q}"? Answer with the version number.',
                    'In which release of {p} was this change made: "{q}"?', 'Which {p} release brought this change: "{q}"?']
WHO_WORDINGS = ['Who is credited with this change in {p} {v}: "{q}"?', 'Who made this change to {p} {v}: "{q}"?',
                'Whose work is the change "{q}" in {p} {v}?']
BUG_WORDINGS = ['Which Debian bug did this change in {p} close: "{q}"?', 'Which bug number does the change "{q}" in {p} fix?']


def questions(entry, rng, releases_per_entry=3):
    package, version = entry["package"], entry["version"]
    releases = 0
    for bullet, section in zip(entry["bullets"], entry["sections"]):
        credit = CREDIT.search(CLOSES_CLAUSE.sub("", bullet).strip())
        credited = credit.group(1).strip() if credit else section
        quote = quoted(bullet, rng)
        if len(quote.split()) < 4:
            continue
        releases += 1
        if releases <= releases_per_entry:
            yield "release", rng.choice(RELEASE_WORDINGS).format(p=package, q=quote), version, bullet
        if credited:
            yield "who", rng.choice(WHO_WORDINGS).format(p=package, v=version, q=quote), credited, bullet
        bug = CLOSES.search(bullet)
        if bug:
            yield "bug", rng.choice(BUG_WORDINGS).format(p=package, q=quote), bug.group(1), bullet
    if entry.get("uploader"):
        yield "uploader", f"Who uploaded {package} {version}?", entry["uploader"], entry["lines"][-1]


def rendered(entries_, style, chapter=1):
    """A package's entries as its document: Debian's changelog as it is, or the same facts laid
    out as other projects write release notes (a heading per release, bullets with the credit in
    parentheses), so the reader learns where a version or a name sits, not one file format."""
    if style == "debian":
        return "\n".join(line for entry in entries_ for line in entry["lines"] + [""])
    out = [f"# {entries_[0]['package']} release notes", ""] if style == "markdown" else []
    for k, entry in enumerate(entries_, 1):
        date = entry["lines"][-1].split(">  ")[-1].strip() if entry.get("uploader") else ""
        if style == "markdown":
            out += [f"## {entry['version']} ({date})" if date else f"## {entry['version']}", ""]
        elif style == "numbered":
            # DocBook's numbering: one-level numbers are list items to the passage builder.
            out += [f"{chapter}.{k}. Release {entry['version']}", f"Release date: {date}", f"{chapter}.{k}.1. Changes"]
        else:
            out += [f"Version {entry['version']}" + (f" - {date}" if date else ""), ""]
        for bullet, section in zip(entry["bullets"], entry["sections"]):
            credited = bullet if CREDIT.search(CLOSES_CLAUSE.sub("", bullet).strip()) or not section else f"{bullet.rstrip()} ({section})"
            out.append(f"- {credited}")
        out.append("")
    return "\n".join(out)


def chinese_items(out, rng, per_document=30):
    """Sections of chapters 3-11 as documents, with section and command questions."""
    (out / "docs/zh").mkdir(parents=True, exist_ok=True)
    items = []
    for number, _title, lines in zh.sections(zh.reference_text(), ZH_CHAPTERS):
        text = "\n".join(zh.unwrap(lines)) + "\n"
        doc = f"docs/zh/{number}.txt"
        made, current = [], None
        for line in text.split("\n"):
            m = zh.HEADING.match(line)
            if m:
                current = m.group(1) if m.group(1).count(".") == 2 else None
                continue
            if current is None:
                continue
            for sentence in zh.sentences(line.lstrip("- ")):
                sentence = sentence.strip()
                if not (12 <= len(sentence) <= 80 and zh.CJK.search(sentence)):
                    continue
                made.append(("section", rng.choice(ZH_SECTION_WORDINGS).format(s=sentence), current, sentence))
                command = zh.COMMAND.search(sentence)
                if command:
                    masked = sentence[:command.start()] + "____" + sentence[command.end():]
                    made.append(("command", rng.choice(ZH_COMMAND_WORDINGS).format(s=masked), command.group(1), sentence))
        made = [m for m in made if m[2] in text]
        if not made:
            continue
        rng.shuffle(made)
        (out / doc).write_text(text, encoding="utf-8")
        split = "dev" if rng.random() < 0.15 else "train"
        for n, (kind, q, answer, sentence) in enumerate(made[:per_document]):
            items.append({"id": f"zh-{number}-{n}", "doc": doc, "kind": kind, "question": q, "answer": answer,
                          "sentence": sentence, "split": split, "source": "debian-reference-zh"})
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--max-documents", type=int, default=300)
    ap.add_argument("--entries-per-document", type=int, default=6, help="newest entries kept per package")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--no-zh", action="store_true", help="leave out the Chinese source (no apt-get download)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    paths = sorted(pathlib.Path("/").glob(CHANGELOG_GLOB.lstrip("/")))
    rng.shuffle(paths)
    (a.out / "docs").mkdir(parents=True, exist_ok=True)
    items, documents, sources = [], 0, set()
    for path in paths:
        if documents >= a.max_documents:
            break
        package = path.parent.name
        if EXCLUDED.search(package):
            continue
        try:
            text = gzip.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        kept = list(entries(text))[: a.entries_per_document]
        # Binary packages built from one source share its changelog: one document per source.
        if not kept or kept[0]["package"] in sources or EXCLUDED.search(kept[0]["package"]):
            continue
        sources.add(kept[0]["package"])
        style = rng.choice(["debian", "debian", "markdown", "numbered", "plain"])
        made = [made for entry in kept for made in questions(entry, rng) if style == "debian" or made[0] != "uploader"]
        if not any(kind != "uploader" for kind, *_ in made):
            continue
        doc = f"docs/{package}.changelog" if style == "debian" else f"docs/{package}-{style}.txt"
        text = rendered(kept, style, chapter=rng.randint(1, 9))
        # Every answer is a span of the document (the reader points at spans).
        made = [m for m in made if m[2] in text]
        (a.out / doc).write_text(text, encoding="utf-8")
        split = "dev" if rng.random() < 0.15 else "train"
        for n, (kind, q, answer, sentence) in enumerate(made):
            items.append({"id": f"{package}-{n}", "doc": doc, "kind": kind, "question": q, "answer": answer,
                          "sentence": sentence, "split": split, "source": "changelog"})
        documents += 1
    if not a.no_zh:
        items += chinese_items(a.out, rng)
    with open(a.out / "items.jsonl", "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    kinds = {}
    for item in items:
        kinds[(item["split"], item["kind"])] = kinds.get((item["split"], item["kind"]), 0) + 1
    print(f"{documents} changelogs, {len(list((a.out / 'docs/zh').glob('*.txt')))} Chinese sections, {len(items)} items in {a.out}: " +
          ", ".join(f"{s}/{k} {n}" for (s, k), n in sorted(kinds.items())))


if __name__ == "__main__":
    main()
