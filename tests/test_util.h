// Helpers for tests: temp dirs, generated checkpoints, running the CLI.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/runtime/generate.h"
#include "src/testing/random_checkpoint.h"

namespace specula::test {

// A fresh directory under the test tmp root, unique per test name.
std::string TempDir(const std::string& name);

// Generates (once per process and name) a checkpoint from a preset, with optional tweaks.
std::string MakeCheckpoint(const std::string& name, const RandomTargetSpec& spec);
std::string MakePreset(const std::string& preset, DType dtype = DType::kBF16);

// A target preset plus a matching random assistant: {target_dir, assistant_dir}.
std::pair<std::string, std::string> MakePair(const std::string& preset, bool centroid_head);

// MakePair, loaded: the target and its assistant (load failures are test failures).
struct LoadedPair {
  std::unique_ptr<Gemma4Model> target;
  std::unique_ptr<Gemma4Assistant> assistant;
};
LoadedPair LoadPair(const std::string& preset, bool centroid_head);

// The plain decoding loop written out (the prompt in one forward, then one forward per token,
// sampling with one Sampler): the oracle that the engine's plain and speculative decoding are
// checked against.
Result<GenerateResult> ReferenceGeneratePlain(Gemma4Model& model, ThreadPool& pool, KvCache& cache,
                                              std::span<const int> prompt,
                                              const GenerateOptions& options);

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};
// Runs `specula <args>` (args are passed through the shell; quote them).
RunResult RunCli(const std::string& args);

// `name` with every character that is not a letter or digit replaced by '_': a gtest parameter
// name.
std::string ParamName(std::string name);

}  // namespace specula::test
