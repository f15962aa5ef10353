#include "specula/runtime/generate.h"

#include <algorithm>

#include "specula/base/sysinfo.h"
#include "specula/base/thread_pool.h"
#include "specula/models/gemma4.h"

namespace specula {
const char* StopReasonName(StopReason r) {
  switch (r) {
    case StopReason::kStopToken:
      return "stop";
    case StopReason::kLength:
      return "length";
    case StopReason::kContext:
      return "context";
  }
  return "?";
}

double GenerateStats::decode_tok_per_s() const {
  // The first token comes from the prefill forward; decode time covers the rest.
  return decode_s > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_s : 0.0;
}

Status ValidatePrompt(std::span<const int> prompt, int vocab, int context) {
  if (prompt.empty()) return Error("prompt: empty prompt (no tokens to condition on)");
  for (int id : prompt) {
    if (id < 0 || id >= vocab) {
      return Error("prompt: token id " + std::to_string(id) + " is out of range [0, " +
                   std::to_string(vocab) + ")");
    }
  }
  if (static_cast<int>(prompt.size()) >= context) {
    return Error("prompt: " + std::to_string(prompt.size()) + " tokens do not fit the context of " +
                 std::to_string(context) + " (need at least one free position)");
  }
  return OkStatus();
}

Status Prefill(Gemma4Model& model, ThreadPool& pool, KvCache& cache, std::span<const int> prompt,
               int chunk, ForwardOutput* out, int* forwards) {
  for (size_t i = 0; i < prompt.size(); i += static_cast<size_t>(chunk)) {
    const size_t n = std::min(prompt.size() - i, static_cast<size_t>(chunk));
    if (Status s = model.Forward({.ids = prompt.subspan(i, n), .cache = &cache}, pool, out);
        !s.ok())
      return s;
    ++*forwards;
  }
  return OkStatus();
}

Result<GenerateResult> GeneratePlain(Gemma4Model& model, ThreadPool& pool, KvCache& cache,
                                     std::span<const int> prompt, const GenerateOptions& options,
                                     const TokenCallback& on_token) {
  const int vocab = model.config().vocab_size;
  if (Status s = ValidatePrompt(prompt, vocab, cache.context()); !s.ok()) return s;
  if (Status s = options.sampling.Validate(); !s.ok()) return s;
  if (options.max_new_tokens < 0) return Error("-n/--n-predict: must be >= 0");
  GenerateResult res;
  res.stats.prompt_tokens = static_cast<int>(prompt.size());
  if (options.max_new_tokens == 0) return res;

  Sampler sampler(options.sampling);
  ForwardOutput out;
  const double t0 = NowSeconds();
  if (Status s = Prefill(model, pool, cache, prompt, options.prefill_chunk, &out,
                         &res.stats.target_forwards);
      !s.ok())
    return s;
  const double t1 = NowSeconds();
  res.stats.prefill_s = t1 - t0;

  int token = sampler.Sample(out.logits.data(), vocab);
  for (;;) {
    res.ids.push_back(token);
    if (on_token) on_token(token);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), token) !=
        options.stop_ids.end()) {
      res.stop = StopReason::kStopToken;
      break;
    }
    if (static_cast<int>(res.ids.size()) >= options.max_new_tokens) {
      res.stop = StopReason::kLength;
      break;
    }
    if (cache.length() >= cache.context()) {
      res.stop = StopReason::kContext;
      break;
    }
    const int one[1] = {token};
    Status s = model.Forward({.ids = one, .cache = &cache}, pool, &out);
    if (!s.ok()) return s;
    ++res.stats.target_forwards;
    ++res.stats.decode_forwards;
    res.stats.experts_read += out.experts_read;
    token = sampler.Sample(out.logits.data(), vocab);
  }
  res.stats.decode_s = NowSeconds() - t1;
  res.stats.generated_tokens = static_cast<int>(res.ids.size());
  return res;
}

}  // namespace specula
