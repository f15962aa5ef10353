// Subcommands of the `specula` tool. Each registers its flags on a CLI11 subcommand and returns a
// runner; runners print "specula: error: ..." on failure and return the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "specula/base/status.h"
#include "specula/formats/generation_config.h"
#include "specula/tokenizer/tokenizer.h"

namespace specula {
class Gemma4Assistant;
class Gemma4Model;
}  // namespace specula

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

// Compute threads: -t/--threads when given (> 0), else the physical cores.
int ThreadCount(int flag);

// -t/--threads and -c/--ctx-size, with the meaning ThreadCount and ContextSize give them.
void AddThreadsFlag(CLI::App& c, int& threads);
void AddCtxSizeFlag(CLI::App& c, int& ctx_size);

// --top-k, --top-p, --min-p and --seed, one meaning wherever a command samples: bound to plain
// values, or to optionals that generation_config.json fills when unset.
template <typename Int, typename Float>
void AddSamplingFilterFlags(CLI::App& c, Int& top_k, Float& top_p, Float& min_p, uint64_t& seed) {
  c.add_option("--top-k", top_k, "top-k (0 = off)");
  c.add_option("--top-p", top_p, "top-p (1 = off)");
  c.add_option("--min-p", min_p, "min-p (0 = off)");
  c.add_option("--seed", seed, "sampling seed (default 0)");
}

// -t/--threads and -c/--ctx-size as generate, serve and score take them (0: the default).
Status CheckThreadsAndContext(int threads, int ctx_size);

// A target checkpoint (-m) and the sampling defaults of its generation_config.json.
// The target checkpoint (-m): the model, its generation config and, if asked for, its tokenizer. A
// .gguf file is parsed once for all three (its 262k-token vocabulary takes a while to parse).
struct Target {
  std::unique_ptr<Gemma4Model> model;
  GenerationConfig generation;
  std::unique_ptr<Tokenizer> tokenizer;  // null unless with_tokenizer
};
Result<Target> LoadTarget(const std::string& path, bool with_tokenizer);

// The MTP assistant in `dir` (-md/--draft), checked against `target`; null when `dir` is empty.
Result<std::unique_ptr<Gemma4Assistant>> LoadAssistant(const std::string& dir,
                                                       const Gemma4Model& target);

}  // namespace specula::cli
