#!/usr/bin/env bash
# `make format-check`: C++ sources as clang-format (.clang-format: Google, 100 columns) writes
# them, and no line over 100 characters in C++, CMake, Python, shell or the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t cpp < <(git ls-files '*.cc' '*.h')
clang-format --dry-run -Werror "${cpp[@]}"
mapfile -t all < <(git ls-files '*.cc' '*.h' '*.py' '*.sh' 'CMakeLists.txt' '*/CMakeLists.txt' \
  'Makefile' '.ci/run')
python3 - "${all[@]}" <<'PY'
import sys
bad = [f"{path}:{n}: {len(line)} characters"
       for path in sys.argv[1:]
       for n, line in enumerate(open(path, encoding="utf-8").read().splitlines(), 1)
       if len(line) > 100]
print("\n".join(bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
echo "format-check: ok"
