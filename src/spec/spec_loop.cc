#include "specula/spec/spec_loop.h"

#include <algorithm>

#include "specula/base/json.h"
#include "specula/base/sysinfo.h"
#include "specula/base/thread_pool.h"
#include "specula/models/gemma4.h"
#include "specula/spec/verifier.h"

namespace specula {
Result<SpecResult> GenerateSpeculative(Gemma4Model& target, Drafter& drafter, ThreadPool& pool,
                                       KvCache& cache, std::span<const int> prompt,
                                       const SpecOptions& options, const TokenCallback& on_token) {
  const GenerateOptions& base = options.base;
  const int V = target.config().vocab_size, H = target.config().hidden_size;
  if (Status s = ValidatePrompt(prompt, V, cache.context()); !s.ok()) return s;
  if (Status s = base.sampling.Validate(); !s.ok()) return s;
  if (base.max_new_tokens < 0) return Error("-n/--n-predict: must be >= 0");
  if (options.draft_max < 1) return Error("--draft-max: must be >= 1");
  if (cache.length() != 0) return Error("speculative generation needs an empty KV cache");

  SpecResult res;
  GenerateStats& st = res.gen.stats;
  st.prompt_tokens = static_cast<int>(prompt.size());
  if (base.max_new_tokens == 0) return res;

  Sampler sampler(base.sampling);
  ForwardOutput out;
  const double t0 = NowSeconds();
  if (Status s = Prefill(target, pool, cache, prompt, base.prefill_chunk, &out, &st.target_forwards); !s.ok()) return s;
  const double t1 = NowSeconds();
  st.prefill_s = t1 - t0;

  // State between rounds: positions 0..P-1 committed; x pending at P; h = hidden of P-1.
  int P = cache.length();
  int x = sampler.Sample(out.logits.data(), V);
  std::vector<float> h(out.hidden.end() - H, out.hidden.end());
  std::vector<int>& ids = res.gen.ids;
  bool done = false;
  auto emit = [&](int t) {
    ids.push_back(t);
    if (on_token) on_token(t);
    if (std::find(base.stop_ids.begin(), base.stop_ids.end(), t) != base.stop_ids.end()) {
      res.gen.stop = StopReason::kStopToken;
      done = true;
    } else if (static_cast<int>(ids.size()) >= base.max_new_tokens) {
      res.gen.stop = StopReason::kLength;
      done = true;
    }
  };
  emit(x);
  std::vector<int> batch;
  while (!done) {
    if (P >= cache.context()) {
      res.gen.stop = StopReason::kContext;
      break;
    }
    // Draft no more than the budget, the context and the sliding-window headroom allow.
    int k = options.policy ? std::min(options.policy->NextLength(), options.draft_max) : options.draft_max;
    k = std::min({k, base.max_new_tokens - static_cast<int>(ids.size()) - 1, cache.context() - P - 1});
    k = std::max(k, 0);
    Draft draft;
    if (k > 0) {
      draft = drafter.Propose({.token = x,
                               .hidden = h,
                               .pos = P,
                               .cache = &cache,
                               .max_tokens = k,
                               .stop_ids = base.stop_ids,
                               .min_confidence = options.policy ? options.policy->MinConfidence() : 0.0f,
                               .sampling = &base.sampling,
                               .rng = &sampler},
                              pool);
    }
    const int K = static_cast<int>(draft.tokens.size());
    batch.assign(1, x);
    batch.insert(batch.end(), draft.tokens.begin(), draft.tokens.end());
    if (Status s = target.Forward({.ids = batch, .cache = &cache, .all_logits = true}, pool, &out); !s.ok()) return s;
    ++st.target_forwards;
    VerifyOutcome v = base.sampling.greedy()
                          ? VerifyGreedy(out.logits.data(), V, draft.tokens)
                          : VerifyRejection(out.logits.data(), V, draft.tokens, draft.q, sampler);
    if (K > 0) {
      SpecStats& s = res.spec;
      ++s.draft_rounds;
      s.drafted += K;
      s.accepted += v.accepted;
      s.round_tokens += v.accepted + 1;
      if (static_cast<int>(s.drafted_per_position.size()) < K) {
        s.drafted_per_position.resize(static_cast<size_t>(K), 0);
        s.accepted_per_position.resize(static_cast<size_t>(K), 0);
      }
      for (int i = 0; i < K; ++i) s.drafted_per_position[static_cast<size_t>(i)]++;
      for (int i = 0; i < v.accepted; ++i) s.accepted_per_position[static_cast<size_t>(i)]++;
      if (options.policy) options.policy->Observe(K, v.accepted);
      if (options.trace) {
        *options.trace << nlohmann::ordered_json{{"pos", P}, {"drafted", draft.tokens}, {"accepted", v.accepted}, {"bonus", v.next_token}}.dump() << "\n";
      }
    }
    for (int i = 0; i < v.accepted && !done; ++i) emit(draft.tokens[static_cast<size_t>(i)]);
    if (done) break;
    // Keep x_P and the accepted drafts; drop the rejected rows from every cache layer.
    if (Status s = cache.Truncate(P + v.accepted + 1); !s.ok()) return s;
    h.assign(out.hidden.begin() + static_cast<long>(v.accepted) * H, out.hidden.begin() + static_cast<long>(v.accepted + 1) * H);
    P += v.accepted + 1;
    x = v.next_token;
    emit(x);
  }
  st.decode_s = NowSeconds() - t1;
  st.generated_tokens = static_cast<int>(ids.size());
  return res;
}

}  // namespace specula
