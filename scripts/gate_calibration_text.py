#!/usr/bin/env python3
"""Public text for fitting the token memory's gate (`make gate`, and twinbraind for a model brought without a
fit): never customer data, and none of FreshDocs's documents or general texts, so the evaluation stays a test
of the fitted gate. Its output is committed in packaging/calibration (and shipped in the package); run this to
make it again from the build machine's man pages and licences.

memory/     what the calibration memory learns: coreutils man pages
related/    text of the same kind it never learns: other coreutils man pages
unrelated/  text of another kind: free-software licences (not GPL-3, which FreshDocs uses)
"""
import pathlib
import re
import shutil
import subprocess
import sys

MEMORY_PAGES = ["basename", "dirname", "seq", "nl", "paste", "join", "comm", "fold", "fmt", "expand", "od", "shuf",
                "tac", "csplit", "pr", "numfmt", "env", "install", "readlink", "realpath", "timeout", "truncate"]
RELATED_PAGES = ["md5sum", "sha256sum", "base64", "nproc", "uname", "who", "mktemp", "mkfifo", "dd", "shred",
                "ptx", "tsort", "cksum", "expr", "test", "unexpand", "nohup", "pathchk"]
UNRELATED_LICENCES = ["Apache-2.0", "MPL-2.0", "LGPL-2.1", "GPL-2", "Artistic", "BSD"]


def main(out: pathlib.Path) -> None:
    if not shutil.which("man"):
        sys.exit("`man` is needed (apt-get install man-db)")
    shutil.rmtree(out, ignore_errors=True)
    env = {"MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0", "PATH": "/usr/bin:/bin"}
    for part, pages, licences in (("memory", MEMORY_PAGES, []), ("related", RELATED_PAGES, []),
                                  ("unrelated", [], UNRELATED_LICENCES)):
        (out / part).mkdir(parents=True)
        for page in pages:
            text = subprocess.run(["man", "-P", "cat", page], env=env, capture_output=True, text=True).stdout
            text = re.sub(r".\x08", "", text)
            if text.strip():
                (out / part / f"man-{page}.txt").write_text(text, encoding="utf-8")
        for name in licences:
            shutil.copy(f"/usr/share/common-licenses/{name}", out / part / f"{name}.txt")
        print(f"{out / part}: {len(list((out / part).iterdir()))} texts")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "packaging/calibration"))
