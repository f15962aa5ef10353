#include "sampled_law.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "specula/base/thread_pool.h"
#include "specula/spec/generate_one.h"

namespace specula::test {

Draft UniformOverSupportDrafter::Propose(const DraftRequest& r, ThreadPool& pool) {
  Draft d;
  const int vocab = target_.config().vocab_size;
  std::vector<int> ids(r.history.begin(), r.history.end());
  for (int k = 0; k < r.max_tokens; ++k) {
    auto [it, fresh] = support_.try_emplace(ids);
    if (fresh) {
      auto cache = target_.NewCache(static_cast<int>(ids.size()) + 1);
      ForwardOutput out;
      EXPECT_TRUE(target_.Forward({.ids = ids, .cache = cache.get()}, pool, &out).ok());
      const float* last = out.logits.data() + out.logits.size() - static_cast<size_t>(vocab);
      it->second = TokenWeights(*r.sampling, last, vocab).ToDistribution();
      for (auto& [tok, prob] : it->second.probs)
        prob = 1.0f / static_cast<float>(it->second.probs.size());
    }
    TokenDistribution q = it->second;
    const size_t pick =
        std::min(q.probs.size() - 1, static_cast<size_t>(r.rng->Uniform() * q.probs.size()));
    d.tokens.push_back(q.probs[pick].first);
    ids.push_back(d.tokens.back());
    d.q.push_back(std::move(q));
  }
  return d;
}

SampledLaw CheckSampledLaw(Gemma4Model& target, Drafter& drafter, std::span<const int> prompt,
                           const SamplingParams& sampling, int runs, uint64_t seed0) {
  ThreadPool pool(1);
  const int vocab = target.config().vocab_size;
  const int context = static_cast<int>(prompt.size()) + 8;
  // counts[tokens before][next token]
  std::map<std::vector<int>, std::map<int, int>> counts;
  SampledLaw law;
  for (int run = 0; run < runs; ++run) {
    auto cache = target.NewCache(context, 3);
    SeqOptions o;
    o.base.max_new_tokens = 4;  // the budget leaves two drafts after the first token
    o.base.sampling = sampling;
    o.base.sampling.seed = seed0 + static_cast<uint64_t>(run);
    o.draft_max = 2;
    Result<SpecResult> r = GenerateSpeculative(target, drafter, pool, *cache, prompt, o, nullptr);
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok() || r->gen.ids.size() != 4) continue;
    law.drafted += r->spec.drafted;
    law.accepted += r->spec.accepted;
    law.lookup_drafted += r->spec.lookup_drafted;
    for (size_t i = 0; i < 4; ++i) {
      counts[std::vector<int>(r->gen.ids.begin(), r->gen.ids.begin() + static_cast<long>(i))]
            [r->gen.ids[i]]++;
    }
  }
  for (const auto& [before, row] : counts) {
    auto cache = target.NewCache(context);
    std::vector<int> ids(prompt.begin(), prompt.end());
    ids.insert(ids.end(), before.begin(), before.end());
    ForwardOutput out;
    EXPECT_TRUE(target.Forward({.ids = ids, .cache = cache.get()}, pool, &out).ok());
    const float* last = out.logits.data() + out.logits.size() - static_cast<size_t>(vocab);
    std::map<int, double> p;
    for (const auto& [tok, prob] : TokenWeights(sampling, last, vocab).ToDistribution().probs)
      p[tok] = prob;
    int total = 0;
    for (const auto& [tok, c] : row) {
      total += c;
      law.outside_support += p.count(tok) ? 0 : 1;
    }
    for (const auto& [tok, prob] : p) {
      const double e = total * prob;
      const auto it = row.find(tok);
      law.chi2 += std::pow((it == row.end() ? 0 : it->second) - e, 2) / e;
    }
    law.dof += static_cast<int>(p.size()) - 1;
  }
  return law;
}

}  // namespace specula::test
