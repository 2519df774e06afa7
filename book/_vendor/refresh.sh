#!/usr/bin/env bash
# Re-create book/_vendor/static/{mermaid,mathjax}/ from the npm registry tarballs.
#
# Usage:  bash book/_vendor/refresh.sh      (from anywhere; needs npm, tar)
#
# Bump the versions below, run the script, update the versions in
# README.md, rebuild the book and check a page with a diagram and a formula.
# Stay on Mermaid 11.x and MathJax 3.2.x unless the Sphinx/Jupyter Book
# config (mermaid_use_local, mathjax_path, mathjax3_config) is reviewed too.
set -euo pipefail

MERMAID_VERSION="11.17.2"
MATHJAX_VERSION="3.2.2"

# MathJax's context menu (built into tex-chtml.js) stores the reader's choices
# in localStorage and, on every later page load, loads the components those
# choices need: "Accessibility > Activate / Collapsible / Semantic enrichment"
# need a11y/*, input/mml.js and the speech-rule-engine maps in sre/mathmaps/;
# "Renderer > SVG" needs output/svg.js and its font. If such a file is
# missing, MathJax renders NO math on any page for that reader, so these are
# vendored (1 = yes). Only the speech locales listed are vendored (the full
# set is ~3.9 MB); choosing another language in the menu falls back to
# English speech, math still renders.
MATHJAX_MENU_EXTRAS=1
SRE_LOCALES="base en"

VENDOR_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cd "$TMP"
npm pack --silent "mermaid@${MERMAID_VERSION}" >/dev/null
npm pack --silent "mathjax@${MATHJAX_VERSION}" >/dev/null
mkdir mermaid-pkg mathjax-pkg
tar -xzf "mermaid-${MERMAID_VERSION}.tgz" -C mermaid-pkg
tar -xzf "mathjax-${MATHJAX_VERSION}.tgz" -C mathjax-pkg

MM="$TMP/mermaid-pkg/package"
MJ="$TMP/mathjax-pkg/package"

# Sanity: the tarballs are the versions we asked for.
for pair in "$MM:$MERMAID_VERSION" "$MJ:$MATHJAX_VERSION"; do
  dir="${pair%%:*}"; want="${pair##*:}"
  got="$(node -p "require('$dir/package.json').version" 2>/dev/null \
         || sed -n 's/^  "version": "\(.*\)",$/\1/p' "$dir/package.json")"
  if [[ "$got" != "$want" ]]; then
    echo "version mismatch in $dir: got $got, want $want" >&2
    exit 1
  fi
done

# ---- Mermaid: minified ESM entry + its minified chunks (no maps) ----------
OUT_MM="$VENDOR_DIR/static/mermaid"
rm -rf "$OUT_MM"
mkdir -p "$OUT_MM/chunks/mermaid.esm.min"
cp "$MM/dist/mermaid.esm.min.mjs" "$OUT_MM/"
cp "$MM"/dist/chunks/mermaid.esm.min/*.mjs "$OUT_MM/chunks/mermaid.esm.min/"
cp "$MM/LICENSE" "$OUT_MM/LICENSE"
# (The min builds carry no sourceMappingURL comments, so leaving out the .map
# files causes no requests.)
if grep -rl 'sourceMappingURL=' "$OUT_MM" >/dev/null; then
  echo "warning: mermaid files reference source maps that are not vendored" >&2
fi

# Check every relative import of the entry (static and dynamic, transitively)
# resolves to a vendored file, and no bare/remote module specifiers remain.
(cd "$OUT_MM" && python3 - <<'PY'
import os, re, sys
spec = re.compile(r'(?:\bfrom|\bimport)\s*\(?\s*"(\.{1,2}/[^"]+\.mjs)"')
seen, todo = set(), ["mermaid.esm.min.mjs"]
while todo:
    f = todo.pop()
    if f in seen:
        continue
    if not os.path.isfile(f):
        sys.exit(f"missing import target: {f}")
    seen.add(f)
    src = open(f, encoding="utf-8").read()
    for m in spec.findall(src):
        todo.append(os.path.normpath(os.path.join(os.path.dirname(f), m)))
have = {os.path.join("chunks/mermaid.esm.min", x)
        for x in os.listdir("chunks/mermaid.esm.min")}
unused = have - seen
for u in sorted(unused):          # keep only what the entry can reach
    os.remove(u)
print(f"mermaid: {len(seen)} modules reachable, {len(unused)} unused removed")
PY
)

# ---- MathJax 3: es5 tex-chtml combined file + what it loads at runtime ----
OUT_MJ="$VENDOR_DIR/static/mathjax"
rm -rf "$OUT_MJ"
mkdir -p "$OUT_MJ/output/chtml/fonts" "$OUT_MJ/input/tex"
cp "$MJ/es5/tex-chtml.js" "$OUT_MJ/tex-chtml.js"
cp -r "$MJ/es5/output/chtml/fonts/woff-v2" "$OUT_MJ/output/chtml/fonts/woff-v2"
cp -r "$MJ/es5/input/tex/extensions" "$OUT_MJ/input/tex/extensions"
cp "$MJ/LICENSE" "$OUT_MJ/LICENSE"
if [[ "$MATHJAX_MENU_EXTRAS" == 1 ]]; then
  mkdir -p "$OUT_MJ/a11y" "$OUT_MJ/sre/mathmaps" "$OUT_MJ/output/svg/fonts"
  cp "$MJ"/es5/a11y/*.js "$OUT_MJ/a11y/"
  cp "$MJ/es5/input/mml.js" "$OUT_MJ/input/mml.js"
  for loc in $SRE_LOCALES; do
    cp "$MJ/es5/sre/mathmaps/$loc.json" "$OUT_MJ/sre/mathmaps/"
  done
  cp "$MJ/es5/output/svg.js" "$OUT_MJ/output/svg.js"
  cp "$MJ/es5/output/svg/fonts/tex.js" "$OUT_MJ/output/svg/fonts/tex.js"
fi
# Not vendored: es5/ui/ (ui/menu is inside tex-chtml.js; ui/lazy and ui/safe
# are opt-in extensions), the other combined files, the other sre locales.

echo "vendored mermaid@${MERMAID_VERSION} and mathjax@${MATHJAX_VERSION} into $VENDOR_DIR"
du -sh "$OUT_MM" "$OUT_MJ"
