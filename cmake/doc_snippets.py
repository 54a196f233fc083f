#!/usr/bin/env python3
"""Extracts every ```cpp block of the README and docs/*.md into a C++ file.

Usage: doc_snippets.py OUT_DIR ROOT FILE.md...

Writes OUT_DIR/<page>_<n>.cpp for the n-th block of a page and OUT_DIR/snippets.cmake,
which calls keel_doc_snippet(<name> <cpp> <mode> <expected-output-file|"">)
once per block; tests/docs/CMakeLists.txt builds and runs them (label docs).

A block is a whole program unless an HTML comment right before its fence
says otherwise (the comment does not show on the rendered page):

    <!-- snippet: MODE...
    C++ lines the block needs first (declarations it uses)
    -->

MODE words:
    body     the block is statements: it goes inside a function, after the
             lines of the comment
    compile  build it, do not run it (it needs a network peer, say)
A block with `int main` is run in an empty temporary directory; when the
next fenced block is preceded by `<!-- snippet-output -->`, the program's
standard output must equal that block.
"""
import os
import re
import sys

FENCE = re.compile(r"^```(\w[\w+-]*)?[^\n]*$")
DIRECTIVE = re.compile(r"<!--\s*snippet:((?:(?!-->).)*)-->", re.S)

# Included before every block, so snippets show only what matters.
PRELUDE = """\
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

using namespace std::chrono_literals;
"""


def blocks(text):
    """Yields (start_line, lang, body_lines, preceding_text) for each fence."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang = m.group(1) or ""
        start = i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        before = "\n".join(lines[:start])
        yield start + 1, lang, lines[start + 1 : j], before
        i = j + 1


def main():
    out_dir, root, pages = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for page in pages:
        text = open(os.path.join(root, page), encoding="utf-8").read()
        stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(page))[0].lower())
        found = list(blocks(text))
        ordinal = 0
        for k, (line, lang, body, before) in enumerate(found):
            if lang != "cpp":
                continue
            ordinal += 1
            modes, decls = [], ""
            tail = before.rstrip()
            at = tail.rfind("<!-- snippet:")
            d = DIRECTIVE.fullmatch(tail[at:]) if at >= 0 and tail.endswith("-->") else None
            if d:
                head, _, rest = d.group(1).partition("\n")
                modes = head.split()
                decls = rest
            code = "\n".join(body)
            name = f"{stem}_{ordinal}"
            src = [f"// {page}:{line}, extracted by cmake/doc_snippets.py", PRELUDE]
            if "body" in modes:
                # A block's own #include lines go above the function.
                incs = [l for l in body if l.startswith("#include")]
                stmts = "\n".join(l for l in body if not l.startswith("#include"))
                src += incs + [decls, "static void keel_doc_snippet() {", stmts, "}"]
                if "int main" not in decls:
                    src.append("int main() { keel_doc_snippet(); }")
            else:
                src += [decls, code]
                if not re.search(r"\bint\s+main\s*\(", code + decls):
                    src.append("int main() {}")
            cpp = os.path.join(out_dir, name + ".cpp")
            new = "\n".join(src) + "\n"
            if not os.path.exists(cpp) or open(cpp, encoding="utf-8").read() != new:
                with open(cpp, "w", encoding="utf-8") as f:
                    f.write(new)
            expected = ""
            if k + 1 < len(found):
                nline, _, nbody, nbefore = found[k + 1]
                if nbefore.rstrip().endswith("<!-- snippet-output -->"):
                    expected = os.path.join(out_dir, name + ".out")
                    with open(expected, "w", encoding="utf-8") as f:
                        f.write("\n".join(nbody) + "\n")
            mode = "compile" if "compile" in modes else "run"
            entries.append(f'keel_doc_snippet({name} "{cpp}" {mode} "{expected}" "{page}")')
    with open(os.path.join(out_dir, "snippets.cmake"), "w", encoding="utf-8") as f:
        f.write("\n".join(entries) + "\n")


if __name__ == "__main__":
    main()
