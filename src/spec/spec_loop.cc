#include "specula/spec/spec_loop.h"

#include <algorithm>

#include "specula/models/gemma4.h"
#include "specula/spec/batch_engine.h"

namespace specula {
Result<SpecResult> GenerateSpeculative(Gemma4Model& target, Drafter& drafter, ThreadPool& pool,
                                       KvCache& cache, std::span<const int> prompt,
                                       const SpecOptions& options, const TokenCallback& on_token) {
  if (Status s = ValidatePrompt(prompt, target.config().vocab_size, cache.context()); !s.ok())
    return s;
  if (options.draft_max < 1) return Error("--draft-max: must be >= 1");
  // One sequence through the batch engine: the same rounds a server batch runs.
  BatchEngine engine(
      target, &drafter, pool,
      {.max_running = 1, .context = cache.context(), .prefill_rows = options.base.prefill_chunk});
  SpecResult result;
  Result<int> id = engine.Add(std::vector<int>(prompt.begin(), prompt.end()),
                              {.base = options.base,
                               .draft_max = options.draft_max,
                               .policy = options.policy,
                               .trace = options.trace,
                               .cache = &cache},
                              on_token, [&](const SpecResult& r) { result = r; });
  if (!id.ok()) return id.status();
  while (!engine.idle()) {
    if (Status s = engine.Step(); !s.ok()) return s;
  }
  return result;
}

}  // namespace specula
