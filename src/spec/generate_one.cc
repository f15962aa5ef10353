#include "specula/spec/generate_one.h"

#include <algorithm>

#include "specula/spec/batch_engine.h"

namespace specula {

namespace {

// One sequence through the batch engine: the same rounds a server batch runs.
Result<SpecResult> RunOne(TargetModel& target, Drafter* drafter, ThreadPool& pool, KvCache& cache,
                          std::span<const int> prompt, const SeqOptions& seq,
                          const TokenCallback& on_token) {
  if (Status s = ValidatePrompt(prompt, target.config().vocab_size, cache.context()); !s.ok())
    return s;
  BatchEngine engine(target, drafter, pool, {.max_running = 1, .context = cache.context()});
  SpecResult result;
  Status status;
  SeqOptions options = seq;
  options.cache = &cache;
  EmitCallback emit;
  if (on_token) emit = [&on_token](int t, TokenOrigin) { on_token(t); };
  Result<int> id = engine.Add(std::vector<int>(prompt.begin(), prompt.end()), options, emit,
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

Result<SpecResult> GeneratePlain(TargetModel& model, ThreadPool& pool, KvCache& cache,
                                 std::span<const int> prompt, const GenerateOptions& options,
                                 const TokenCallback& on_token) {
  return RunOne(model, nullptr, pool, cache, prompt, {.base = options, .draft_max = 0}, on_token);
}

Result<SpecResult> GenerateSpeculative(TargetModel& target, Drafter& drafter, ThreadPool& pool,
                                       KvCache& cache, std::span<const int> prompt,
                                       const SeqOptions& options, const TokenCallback& on_token) {
  if (options.draft_max < 1) return Error("draft_max: must be >= 1");
  return RunOne(target, &drafter, pool, cache, prompt, options, on_token);
}

}  // namespace specula
