#!/usr/bin/env python3
"""Checks the documentation's links, as GitHub would follow them.

    scripts/check-links.py              the project's tracked *.md files
    scripts/check-links.py --root DIR   the *.md files under DIR (the test's fixtures)

For every *.md file that git tracks (or would track: new files count, ignored
ones do not), every relative link and image, inline or by reference, must name
a file or folder that exists, and every `#anchor` must name a heading of its
target (or of the file itself), by GitHub's slug rules: lower case, everything
but letters, digits, `-`, `_` and spaces dropped, spaces turned into `-`, and
`-1`, `-2`... for repeated headings. Links inside code (fenced blocks, `spans`)
are not links. External links (http:, mailto:...) are not checked: CI has no
internet. And README.md must link every docs/*.md, so no doc is an orphan.

Prints one line per problem (FILE:LINE: what) and exits 1 if there is any.
Python 3 standard library only.
"""

import argparse
import os
import re
import subprocess
import sys
import unicodedata
import urllib.parse

# Fixtures that hold broken links on purpose (scripts/check-links-test.py).
EXCLUDE = ("scripts/testdata/links/",)

FENCE = re.compile(r"^ {0,3}(```+|~~~+)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target), with an optional "title"; <target> too.
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFDEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def slug(text):
    """GitHub's anchor for a heading's text (before the -N of repeats)."""
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    out = []
    for ch in text.lower():
        if ch in "-_ " or unicodedata.category(ch)[0] in "LNM":
            out.append(ch)
    return "".join(out).replace(" ", "-")


def lines_outside_code(text, blank_spans=True):
    """(line number, line) of every line outside fenced code blocks, with
    code spans blanked out unless BLANK_SPANS is false (a heading's anchor
    keeps the text of its code spans)."""
    fence = None
    for n, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        yield n, CODE_SPAN.sub(lambda s: " " * len(s.group(0)), line) if blank_spans else line


def anchors(text):
    """Every anchor a file offers: its headings' slugs (repeats get -1, -2...)
    and explicit <a name/id> anchors."""
    seen, found = {}, set()
    for _, line in lines_outside_code(text, blank_spans=False):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(text):
    """(line number, target) of every link and image outside code."""
    for n, line in lines_outside_code(text):
        for m in INLINE.finditer(line):
            yield n, m.group(1)
        m = REFDEF.match(line)
        if m:
            yield n, m.group(1)


def tracked_md(root):
    """The *.md files git tracks or would track under ROOT, relative to it."""
    r = subprocess.run(
        ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.md"],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise SystemExit(f"check-links: git ls-files in {root} failed: {r.stderr.strip()}")
    return sorted(p for p in set(r.stdout.split("\0")) if p and os.path.isfile(os.path.join(root, p)))


def check(root, files):
    """The problems, as 'FILE:LINE: what' lines."""
    problems, cache = [], {}

    def anchors_of(path):
        if path not in cache:
            with open(path, encoding="utf-8") as f:
                cache[path] = anchors(f.read())
        return cache[path]

    readme_targets = set()
    real_root = os.path.realpath(root)
    for rel in files:
        path = os.path.join(root, rel)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for n, target in links(text):
            where = f"{rel}:{n}"
            target = target[1:-1] if target.startswith("<") else target
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue
            part, _, anchor = target.partition("#")
            part = urllib.parse.unquote(part)
            if part.startswith("/"):
                dest = os.path.join(root, part.lstrip("/"))
            elif part:
                dest = os.path.join(os.path.dirname(path), part)
            else:
                dest = path
            dest = os.path.normpath(dest)
            if not os.path.realpath(dest).startswith(real_root + os.sep) and os.path.realpath(dest) != real_root:
                problems.append(f"{where}: {target}: outside the project")
                continue
            if not os.path.exists(dest):
                problems.append(f"{where}: {target}: no such file")
                continue
            if rel == "README.md":
                readme_targets.add(os.path.relpath(dest, root))
            if anchor and dest.endswith(".md") and os.path.isfile(dest):
                if urllib.parse.unquote(anchor) not in anchors_of(dest):
                    shown = os.path.relpath(dest, root)
                    problems.append(f"{where}: {target}: no heading with the anchor #{anchor} in {shown}")
    if "README.md" in files:
        for rel in files:
            if rel.startswith("docs/") and rel.count("/") == 1 and rel not in readme_targets:
                problems.append(f"README.md: {rel} is not linked from README.md")
    return problems


def main(argv):
    p = argparse.ArgumentParser(description="Checks relative links and #anchors of the *.md files.")
    default_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--root", default=default_root, help="the tree to check (default: this project)")
    args = p.parse_args(argv)
    root = os.path.abspath(args.root)
    files = [f for f in tracked_md(root) if not f.startswith(EXCLUDE)]
    problems = check(root, files)
    for line in problems:
        print(line)
    print(f"check-links: {len(files)} files, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
