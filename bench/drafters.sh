#!/usr/bin/env bash
# Drafters by task kind: for each prompt in bench/tasks (free continuation, a text to repeat, a
# structured list), `specula bench` with the assistant's chain, prompt lookup, the hybrid and the
# assistant's token tree, one run each (plain and speculative interleaved); prints tokens per
# target pass and the speedup.
#   bench/drafters.sh TARGET ASSISTANT [K] [N]     (defaults: K = 3, N = 64 tokens, 3 reps)
# The tree gets TREE_K nodes (default 2K) of width TREE_WIDTH (default 2).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
specula="${SPECULA:-$root/build/specula}"
target="$1" assistant="$2" k="${3:-3}" n="${4:-64}"
tree_k="${TREE_K:-$((2 * k))}" tree_width="${TREE_WIDTH:-2}"
printf '%-11s %-7s %8s %8s %8s %8s\n' task drafter tok/pass accept tok/s speedup
for task in "$root"/bench/tasks/*.txt; do
  for drafter in model lookup hybrid tree; do
    kk="$k"
    [[ "$drafter" == tree ]] && kk="$tree_k"
    "$specula" bench -m "$target" -md "$assistant" --drafter "$drafter" --draft-max "$kk" -n "$n" \
      --tree-width "$tree_width" --reps 3 -p "$(cat "$task")" --json 2>/dev/null |
      python3 -c '
import json, sys
r = [x for x in json.load(sys.stdin)["results"] if x["mode"] == "spec"][0]
print("%-11s %-7s %8.2f %8.2f %8.1f %7.2fx" % (sys.argv[1], sys.argv[2], r["tokens_per_forward"],
      r["acceptance_rate"], r["decode_tok_per_s"], r["speedup"]))' \
      "$(basename "$task" .txt)" "$drafter"
  done
done
