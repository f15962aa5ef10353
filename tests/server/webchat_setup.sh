#!/usr/bin/env bash
# The web chat's browser test needs: npm's puppeteer-core (driving Debian's chromium, which
# scripts/install-deps.sh installs) and the trained demo pair (models/demo/pair.npz) expanded with
# the real tokenizer, so that the page shows text and accepted drafts. Nothing here is committed.
# Usage: webchat_setup.sh OUT_DIR
set -euo pipefail
out="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$out"
if [[ ! -f $out/node_modules/puppeteer-core/package.json ]]; then
  [[ -f $out/package.json ]] ||
    echo '{"name":"specula-webchat-test","private":true}' > "$out/package.json"
  (cd "$out" && npm install --no-audit --no-fund --loglevel=error puppeteer-core@24.43.1)
fi
pack="$root/models/demo/pair.npz"
if [[ ! -f $out/demo/assistant/config.json || $pack -nt $out/demo/assistant/config.json ]]; then
  tokenizer="$(bash "$root/scripts/gemma-tokenizer.sh" "$out/tokenizer")"
  /usr/bin/python3 "$root/tools/distill/pack.py" expand "$pack" "$out/demo/target" \
    --assistant "$out/demo/assistant" --tokenizer "$tokenizer"
fi
echo "puppeteer-core $(node -p "require('$out/node_modules/puppeteer-core/package.json').version")"
