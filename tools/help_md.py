#!/usr/bin/env python3
"""help_md.py - the table of every flag, its environment variable and its
default, as docs/operations.md has it between <!-- flags:begin --> and
<!-- flags:end -->, rendered from `bufcache --help`:

    build/bufcache --help | python3 tools/help_md.py

tests/integration/test_docs_flags.sh fails when the table in
docs/operations.md is not what this prints for the binary under test."""
import re
import sys


def parse(text):
    """[(flag, env, default or None, help)] in --help's order."""
    flags = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^  --([a-z][a-z0-9-]*)\s+(.*)$", line)
        if not m or m.group(1) == "help":
            continue
        name, help_text = m.group(1), m.group(2).strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        e = re.match(r"^\(env (BUFCACHE_[A-Z0-9_]+)(?:, default (.*)|: (.*))?\)$", nxt)
        if not e:
            raise SystemExit("help_md: no (env ...) line after --%s" % name)
        env, default, note = e.group(1), e.group(2), e.group(3)
        if note:
            help_text += " (the variable holds %s)" % note
        flags.append((name, env, default, help_text))
    return flags


def table(flags):
    out = ["| flag | environment variable | default | meaning |",
           "| --- | --- | --- | --- |"]
    for name, env, default, help_text in flags:
        d = "`%s`" % default if default is not None else ""
        m = re.search(r"\s*\(default: ([^()]*(?:\([^()]*\)[^()]*)*)\)", help_text)
        if default is None and m:
            d = m.group(1)
            help_text = (help_text[:m.start()] + help_text[m.end():]).strip()
        if default is None and not d:
            d = "none"
        out.append("| `--%s` | `%s` | %s | %s |" % (name, env, d, help_text.replace("|", "\\|")))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table(parse(sys.stdin.read())))
