#!/usr/bin/env bash
# Acceptance of an assistant quantized to each block type (`specula quantize --type T`) against
# the same target: greedy, K = 3, 96 tokens, the mean over four Debian-style prompts.
#   bench/quantized_assistant.sh TARGET ASSISTANT [TYPE ...]   (default: bf16 and eight types)
# "bf16" is the assistant as given. Prints one line per type: acceptance, tokens per target pass.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
specula="${SPECULA:-$root/build/specula}"
target="$1" assistant="$2"
shift 2
types=("$@")
[[ ${#types[@]} -gt 0 ]] || types=(bf16 q8_0 q6_k q5_k q4_k iq4_xs iq4_nl q4_0)
prompts=(
  "The apt-get command is the basic tool to install and remove packages. To upgrade the system,"
  "The Debian archive is split into main, contrib and non-free. Packages in main"
  "To mount a USB stick, first find its device name with"
  "The /etc/fstab file lists the file systems that are mounted at boot. Each line"
)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '%-7s %10s %9s\n' type acceptance tok/pass
for t in "${types[@]}"; do
  a="$assistant"
  if [[ "$t" != bf16 ]]; then
    a="$work/$t"
    "$specula" quantize "$assistant" "$a" --type "$t" > "$work/log" 2>&1 || {
      cat "$work/log" >&2
      exit 1
    }
  fi
  for p in "${prompts[@]}"; do
    "$specula" bench -m "$target" -md "$a" --drafter model --draft-max 3 -n 96 --reps 1 -p "$p" \
      --json 2>/dev/null
  done | python3 -c '
import json, sys
dec = json.JSONDecoder()
text, at, rows = sys.stdin.read(), 0, []
while text[at:].strip():
    obj, end = dec.raw_decode(text, text.index("{", at))
    rows += [r for r in obj["results"] if r["mode"] == "spec"]
    at = end
print("%-7s %10.3f %9.2f" % (sys.argv[1], sum(r["acceptance_rate"] for r in rows) / len(rows),
                             sum(r["tokens_per_forward"] for r in rows) / len(rows)))' "$t"
  rm -rf "$work/$t"
done
