"""Re-stamp a recorded run whose numbers still follow from the code, after the hash definition changed.

A recorded run (``book/results/chNN.json``) stores the hash of the code it
was made with. When only code that cannot change its numbers changed since
(presentation modules, docstrings, argument checks, definitions the chapter
cannot reach), re-running it (often
half an hour of CPU) would reproduce them. This tool checks that with git,
never by trust: the run hash (:func:`papers30.provenance.run_hash`, over the
syntax trees, without docstrings and validation, of the package definitions
the chapter's code can reach and of the chapter's own statements that compute
or record a number, its cells read at the commit too) must be the same computed from the files at the run's recorded
commit and from the working tree, and the chapter's declared criteria must be
the same. Only then is the stored hash replaced by the current one.

    python tools/restamp.py 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from papers30 import provenance

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter", type=int)
    args = parser.parse_args()
    path = provenance.results_path(args.chapter)
    run = json.loads(path.read_text(encoding="utf-8"))
    commit = run["commit"].split("+")[0]  # "+uncommitted": the run was made on top of this commit
    def at_commit(path: Path) -> bytes:
        rel = path.relative_to(ROOT).as_posix()
        shown = subprocess.run(["git", "show", f"{commit}:{rel}"], cwd=ROOT, capture_output=True, check=False)
        return shown.stdout if shown.returncode == 0 else b"<missing at " + commit.encode() + b">"

    then_hash, now_hash = provenance.run_hash(args.chapter, read=at_commit), provenance.run_hash(args.chapter)
    if then_hash != now_hash:
        then = provenance.run_definitions(args.chapter, read=at_commit)
        now = provenance.run_definitions(args.chapter)
        changed = sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))
        print(f"chapter {args.chapter}: numerical code changed since {commit} in {', '.join(changed)}; "
              f"rerun make reproduce CH={args.chapter}")
        return 1
    old = tomllib.loads(subprocess.run(["git", "show", f"{commit}:papers30/data/papers.toml"], cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout)
    then = [{k: c.get(k) for k in provenance.CRITERION_FIELDS} for c in old["claim"] if c["chapter"] == args.chapter]
    now = [{k: getattr(d, k) for k in provenance.CRITERION_FIELDS} for d in provenance.declarations(args.chapter)]
    defaults = {"headline": False, "expected": True}
    then = [{k: (defaults.get(k) if v is None else v) for k, v in c.items()} for c in then]
    if then != now:
        print(f"chapter {args.chapter}: declared criteria changed since {commit}; rerun make reproduce CH={args.chapter}")
        return 1
    run["chapter_hash"] = provenance.run_hash(args.chapter)
    path.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    print(f"chapter {args.chapter}: numerical code and criteria unchanged since {commit}; hash now {run['chapter_hash']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
