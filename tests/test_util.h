// Helpers for tests: temp dirs, generated checkpoints, running the CLI.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/runtime/generate.h"
#include "specula/spec/drafter.h"
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

// n token ids, BOS (2) first, then uniform draws below vocab from a generator seeded with seed.
std::vector<int> RandomIds(int n, int vocab, uint32_t seed);

// Seeded sampling through the batch engine must not depend on the batch: each prompt decoded alone
// and all of them decoded together (other rows and measured costs in every round) give the same
// tokens. A fresh drafter from make_drafter serves each run; every prompt samples at temperature
// 1 with top-k 8 and its own seed, for max_new_tokens tokens of up to draft_max drafts a round.
struct SeededBatchCheck {
  std::function<std::unique_ptr<Drafter>()> make_drafter;
  std::span<const std::vector<int>> prompts;
  int max_new_tokens = 50;
  int draft_max = 3;
};
void ExpectSeededSameAloneAndBatched(Gemma4Model& target, const SeededBatchCheck& check);

}  // namespace specula::test
