#!/usr/bin/env bash
# Installs the official OpenAI JavaScript client (npm `openai`) into the build tree for the server
# integration tests. Nothing here is committed.
set -euo pipefail
out="$1"
mkdir -p "$out"
cd "$out"
if [[ ! -f node_modules/openai/package.json ]]; then
  [[ -f package.json ]] || echo '{"name":"specula-server-test","private":true}' > package.json
  npm install --no-audit --no-fund --loglevel=error openai@4.95.0
fi
echo "openai client $(node -p 'require("./node_modules/openai/package.json").version')"
