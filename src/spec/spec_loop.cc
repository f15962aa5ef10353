#include "specula/spec/spec_loop.h"

#include <algorithm>

#include "specula/models/gemma4.h"
#include "specula/spec/batch_engine.h"

namespace specula {

void SpecStats::Record(int k, int n) {
  ++draft_rounds;
  drafted += k;
  accepted += n;
  round_tokens += n + 1;
  if (static_cast<int>(drafted_per_position.size()) < k) {
    drafted_per_position.resize(static_cast<size_t>(k), 0);
    accepted_per_position.resize(static_cast<size_t>(k), 0);
  }
  for (int j = 0; j < k; ++j) drafted_per_position[static_cast<size_t>(j)]++;
  for (int j = 0; j < n; ++j) accepted_per_position[static_cast<size_t>(j)]++;
}

void SpecStats::Add(const SpecStats& o) {
  target_forwards += o.target_forwards;
  decode_forwards += o.decode_forwards;
  experts_read += o.experts_read;
  forward_s += o.forward_s;
  draft_s += o.draft_s;
  prompt_tokens += o.prompt_tokens;
  prompt_cached += o.prompt_cached;
  generated += o.generated;
  draft_rounds += o.draft_rounds;
  drafted += o.drafted;
  accepted += o.accepted;
  round_tokens += o.round_tokens;
  if (drafted_per_position.size() < o.drafted_per_position.size()) {
    drafted_per_position.resize(o.drafted_per_position.size(), 0);
    accepted_per_position.resize(o.drafted_per_position.size(), 0);
  }
  for (size_t p = 0; p < o.drafted_per_position.size(); ++p) {
    drafted_per_position[p] += o.drafted_per_position[p];
    accepted_per_position[p] += o.accepted_per_position[p];
  }
}
namespace {

// One sequence through the batch engine: the same rounds a server batch runs.
Result<SpecResult> RunOne(Gemma4Model& target, Drafter* drafter, ThreadPool& pool, KvCache& cache,
                          std::span<const int> prompt, const SeqOptions& seq,
                          const TokenCallback& on_token) {
  if (Status s = ValidatePrompt(prompt, target.config().vocab_size, cache.context()); !s.ok())
    return s;
  BatchEngine engine(
      target, drafter, pool,
      {.max_running = 1, .context = cache.context(), .prefill_rows = seq.base.prefill_chunk});
  SpecResult result;
  Status status;
  SeqOptions options = seq;
  options.cache = &cache;
  Result<int> id = engine.Add(std::vector<int>(prompt.begin(), prompt.end()), options, on_token,
                              [&](const SpecResult& r, const Status& st) {
                                result = r;
                                status = st;
                              });
  if (!id.ok()) return id.status();
  while (!engine.idle()) engine.Step();
  if (!status.ok()) return status;
  return result;
}

}  // namespace

Result<SpecResult> GeneratePlain(Gemma4Model& model, ThreadPool& pool, KvCache& cache,
                                 std::span<const int> prompt, const GenerateOptions& options,
                                 const TokenCallback& on_token) {
  return RunOne(model, nullptr, pool, cache, prompt, {.base = options, .draft_max = 0}, on_token);
}

Result<SpecResult> GenerateSpeculative(Gemma4Model& target, Drafter& drafter, ThreadPool& pool,
                                       KvCache& cache, std::span<const int> prompt,
                                       const SpecOptions& options, const TokenCallback& on_token) {
  if (options.draft_max < 1) return Error("draft_max: must be >= 1");
  return RunOne(target, &drafter, pool, cache, prompt,
                {.base = options.base,
                 .draft_max = options.draft_max,
                 .policy = options.policy,
                 .trace = options.trace},
                on_token);
}

}  // namespace specula
