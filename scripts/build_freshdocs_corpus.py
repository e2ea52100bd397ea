#!/usr/bin/env python3
"""Builds the FreshDocs development corpus (../shared/eval/FRESHDOCS.md) from Debian packages and the
Swift toolchain; nothing of it is committed. Usage: build_freshdocs_corpus.py OUT_DIR

  docs/pg/release-15-N.txt     PostgreSQL 15.11 … 15.20 release notes (postgresql-doc-15), as text
  docs/swift/NAME.md           the Swift diagnostics notes shipped with the toolchain
  control/pg/release-15-N.txt  15.2 … 15.8 (contamination control: neither learned nor in the main table)
  general/                     coreutils man pages rendered to text, and GPL-3
  heldout.txt                  15.15, 15.18 and a fixed fifth of the Swift notes

Items (items.jsonl) come from a separate, seeded generator: make_freshdocs_items.py.
"""
import html.parser, os, pathlib, re, shutil, subprocess, sys, tempfile

PG_LEARNED = range(11, 21)
PG_HELDOUT = {15, 18}
PG_CONTROL = range(2, 9)
MAN_PAGES = ["ls", "cp", "mv", "rm", "cat", "sort", "uniq", "cut", "tr", "head", "tail", "wc", "date", "df", "du",
             "chmod", "chown", "ln", "mkdir", "touch", "tee", "split", "stat", "printf"]

class ReleaseNotes(html.parser.HTMLParser):
    """Text of the release section (div.sect1): headings and paragraphs as lines, list items as bullets."""
    def __init__(self):
        super().__init__()
        self.depth = 0          # div depth inside sect1 (0 = outside)
        self.skip = 0           # inside the table of contents
        self.lines, self.current = [], []
        self.in_item = False
        self.item_started = False

    def flush(self, bullet=False):
        text = re.sub(r"\s+", " ", "".join(self.current)).strip()
        self.current = []
        if not text:
            return
        if bullet:
            # The first paragraph of a list item opens the bullet; later ones continue it.
            self.lines.append(("  " if self.item_started else "- ") + text)
            self.item_started = True
        else:
            self.lines.append(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div":
            if self.depth == 0 and a.get("class") == "sect1":
                self.depth = 1
            elif self.depth:
                self.depth += 1
                if "toc" in (a.get("class") or ""):
                    self.skip = self.depth
        if not self.depth or self.skip:
            return
        if tag in ("p", "h2", "h3", "h4", "li", "dt", "dd"):
            self.flush(bullet=self.in_item)
            if tag == "li":
                self.in_item = True
                self.item_started = False

    def handle_endtag(self, tag):
        if tag == "div" and self.depth:
            if self.skip == self.depth:
                self.skip = 0
            self.depth -= 1
            if self.depth == 0:
                self.flush()
        if not self.depth or self.skip:
            return
        if tag in ("p", "h2", "h3", "h4", "dt", "dd"):
            self.flush(bullet=self.in_item)
        if tag == "li":
            self.flush(bullet=True)
            self.in_item = False

    def handle_data(self, data):
        if self.depth and not self.skip and data.strip() != "§":
            self.current.append(data)

def release_text(path):
    p = ReleaseNotes()
    p.feed(path.read_text(encoding="utf-8"))
    p.flush()
    return "\n".join(p.lines) + "\n"

def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    if out.exists():
        shutil.rmtree(out)
    for d in ("docs/pg", "docs/swift", "control/pg", "general"):
        (out / d).mkdir(parents=True)
    heldout = []

    with tempfile.TemporaryDirectory() as tmp:
        if subprocess.run(["apt-get", "download", "postgresql-doc-15"], cwd=tmp, stdout=subprocess.DEVNULL).returncode != 0:
            print("apt-get download failed; refreshing the package lists once and retrying")
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "download", "postgresql-doc-15"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        deb = next(pathlib.Path(tmp).glob("postgresql-doc-15_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/root"], check=True)
        html_dir = pathlib.Path(tmp) / "root/usr/share/doc/postgresql-doc-15/html"
        for n in list(PG_LEARNED) + list(PG_CONTROL):
            src = html_dir / f"release-15-{n}.html"
            if not src.exists():
                sys.exit(f"{src.name} is missing from {deb.name}: the package is older than the corpus expects")
            folder = "docs/pg" if n in PG_LEARNED else "control/pg"
            (out / folder / f"release-15-{n}.txt").write_text(release_text(src), encoding="utf-8")
            if n in PG_HELDOUT:
                heldout.append(f"docs/pg/release-15-{n}.txt")

    swift = shutil.which("swift")
    diagnostics = pathlib.Path(os.path.realpath(swift)).parent.parent / "share/doc/swift/diagnostics" if swift else None
    if not diagnostics or not diagnostics.is_dir():
        sys.exit("the Swift toolchain's diagnostics notes (usr/share/doc/swift/diagnostics) were not found")
    notes = sorted(diagnostics.glob("*.md"))
    for i, note in enumerate(notes):
        shutil.copy(note, out / "docs/swift" / note.name)
        if i % 5 == 2:  # a fixed fifth, spread over the alphabet
            heldout.append(f"docs/swift/{note.name}")

    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0")
    if not shutil.which("man"):
        print("warning: `man` is not installed (apt-get install man-db): general/ gets GPL-3 only")
    for page in MAN_PAGES if shutil.which("man") else []:
        text = subprocess.run(["man", "-P", "cat", page], env=env, capture_output=True, text=True).stdout
        text = re.sub(r".\x08", "", text)  # overstrike bold/underline
        if text.strip():
            (out / "general" / f"man-{page}.txt").write_text(text, encoding="utf-8")
    shutil.copy("/usr/share/common-licenses/GPL-3", out / "general/GPL-3.txt")

    (out / "heldout.txt").write_text("\n".join(heldout) + "\n", encoding="utf-8")
    words = sum(len(p.read_text(encoding="utf-8").split()) for p in (out / "docs/pg").glob("*.txt"))
    print(f"{out}: {len(list((out / 'docs').rglob('*.*')))} documents ({words} words of PostgreSQL notes), "
          f"{len(heldout)} held out, {len(list((out / 'general').iterdir()))} general texts")

if __name__ == "__main__":
    main()
