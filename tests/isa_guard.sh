#!/usr/bin/env bash
# Fails if code built for an AVX-512 target holds a VEX-encoded (AVX-VNNI) dot-product instruction.
# Highway 1.0.3 compiles its AVX3_DL target with `avxvnni` enabled, so the compiler may fuse a
# vpmaddwd and an add into VEX `vpdpwssd`, which faults on CPUs with AVX512-VNNI but no AVX-VNNI
# (Ice Lake, Zen 4) although BestKernels picks AVX3_DL there. The kernels' own VNNI instructions
# are EVEX (zmm) on AVX3_DL and VEX only in the AVX2 target's AVX-VNNI variant.
# Usage: tests/isa_guard.sh BINARY
set -euo pipefail
bin=$1
found=$(objdump -d --no-show-raw-insn -C "$bin" |
  awk '/^[0-9a-f]+ <.*>:$/ { fn = $0 } /\{vex\} *vpdp/ { print fn " " $0 }' |
  grep -E 'N_AVX3(_DL)?::' || true)
if [[ -n $found ]]; then
  echo "isa_guard: VEX dot-product instructions in AVX-512 target code:"
  echo "$found" | head -20
  exit 1
fi
count=$(objdump -d --no-show-raw-insn -C "$bin" | grep -c 'vpdpwssd' || true)
echo "isa_guard: $count vpdpwssd instructions, none VEX-encoded in AVX-512 target code"
if [[ $count -eq 0 ]]; then
  echo "isa_guard: expected the VNNI kernels in $bin"
  exit 1
fi
