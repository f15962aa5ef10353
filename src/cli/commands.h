// Subcommands of the `specula` tool. Each registers its flags on a CLI11 subcommand and returns a
// runner; runners print "specula: error: ..." on failure and return the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "specula/base/status.h"

namespace specula::cli {

using Runner = std::function<int()>;

Runner AddGenerate(CLI::App& app);
Runner AddTokenize(CLI::App& app);
Runner AddInspect(CLI::App& app);
Runner AddMakeRandom(CLI::App& app);
Runner AddBench(CLI::App& app);
Runner AddQuantize(CLI::App& app);
Runner AddConvert(CLI::App& app);
Runner AddServe(CLI::App& app);
Runner AddScore(CLI::App& app);

int Fail(const std::string& message);  // prints the one-line error, returns 1

// Comma-separated token ids ("2,9259,236764"), used as is; errors start with `where` (the flag).
specula::Result<std::vector<int>> ParseTokenIds(const std::string& text, const std::string& where);

// Text files given with -f/--file are never read past this: beyond it a prompt cannot fit any
// Gemma 4 context (256k tokens) unless its tokens averaged over 1 KB, and reading on would only
// hold a device like /dev/zero in memory until allocation fails.
inline constexpr uint64_t kMaxPromptFileBytes = uint64_t{256} << 20;

// Positions per sequence: -c/--ctx-size when given (> 0), else 4096; never beyond the model's.
inline int ContextSize(int flag, int model_max) {
  return std::min(flag > 0 ? flag : 4096, model_max);
}

}  // namespace specula::cli
