// Subcommands of the `specula` tool. Each registers its flags on a CLI11 subcommand and returns a
// runner; runners print "specula: error: ..." on failure and return the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <functional>

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

int Fail(const std::string& message);  // prints the one-line error, returns 1

// Positions per sequence: -c/--ctx-size when given (> 0), else 4096; never beyond the model's.
inline int ContextSize(int flag, int model_max) {
  return std::min(flag > 0 ? flag : 4096, model_max);
}

}  // namespace specula::cli
