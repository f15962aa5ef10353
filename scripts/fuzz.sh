#!/usr/bin/env bash
# Runs each libFuzzer harness of BUILD (configured with -DSPECULA_FUZZ=ON) for SECONDS with its
# dictionary, starting from its seed corpus tests/fuzz/corpus/NAME copied into
# BUILD/fuzz-corpus/NAME
# (inputs the fuzzer finds stay out of the repo). Inputs that crash, leak, hang or run out of memory
# are written to BUILD/fuzz-artifacts/. Exits non-zero if any harness failed.
#   scripts/fuzz.sh BUILD SECONDS [NAME...]
set -euo pipefail
build=${1:?usage: fuzz.sh BUILD SECONDS [NAME...]}
seconds=${2:?usage: fuzz.sh BUILD SECONDS [NAME...]}
shift 2
names=("$@")
((${#names[@]})) || names=(safetensors config gguf tokenizer openai_request)
root=$(cd "$(dirname "$0")/.." && pwd)
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

failed=()
for name in "${names[@]}"; do
  corpus=$build/fuzz-corpus/$name
  artifacts=$build/fuzz-artifacts
  log=$build/fuzz-$name.log
  mkdir -p "$corpus" "$artifacts"
  cp -n "$root/tests/fuzz/corpus/$name/"* "$corpus/"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
    -dict="$root/tests/fuzz/$name.dict" -artifact_prefix="$artifacts/$name-")
  # Building a tokenizer costs about as much as its JSON is long: small inputs keep the rate up.
  [[ $name == tokenizer ]] && args+=(-max_len=2048)
  if "$build/fuzz/fuzz_$name" "${args[@]}" "$corpus" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "fuzz_$name: ok, $runs runs in ${seconds}s ($rate/s)"
  else
    echo "fuzz_$name: FAILED (log: $log)"
    # What went wrong, the frames in our code (nlohmann's run for lines) and where the input is.
    grep -m 1 -E 'ERROR: |runtime error: |what\(\): ' "$log" || true
    grep -m 12 -E '^ +#[0-9]+ .*/(src|tests/fuzz)/' "$log" |
      sed -E 's/ in (.{100}).*( \/)/ in \1...\2/' || true
    grep -E '^SUMMARY|Test unit written to' "$log" || true
    failed+=("$name")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]}"
  exit 1
fi
