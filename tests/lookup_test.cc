// Prompt lookup and hybrid drafting: the n-gram search against a brute-force reference, the
// continuation rules, the hybrid's choice of source, and lossless decoding with both drafters
// (greedy output equal to plain decoding; sampled output with the target's distribution).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "sampled_law.h"
#include "specula/base/thread_pool.h"
#include "specula/runtime/generate.h"
#include "specula/spec/batch_engine.h"
#include "specula/spec/generate_one.h"
#include "specula/spec/hybrid_drafter.h"
#include "specula/spec/mtp_drafter.h"
#include "test_util.h"

namespace specula {
namespace {

// The definition: the longest n (max_n down to min_n) whose suffix occurs earlier, ending before
// the history's end, at its most recent such place.
NgramMatch NaiveFind(const std::vector<int>& h, const NgramOptions& o) {
  const int len = static_cast<int>(h.size());
  for (int n = o.max_n; n >= o.min_n; --n) {
    for (int j = len - n - 1; j >= 0; --j) {  // an occurrence h[j, j + n) ending before len
      bool same = true;
      for (int t = 0; t < n && same; ++t) same = h[j + t] == h[len - n + t];
      if (same) return {.length = n, .start = j + n};
    }
  }
  return {};
}

TEST(Lookup, FindsTheLongestMostRecentMatchLikeBruteForce) {
  std::mt19937 rng(7);
  int matched = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int len = 1 + static_cast<int>(rng() % 60);
    const int alphabet = 2 + static_cast<int>(rng() % 6);  // small: many repeats and overlaps
    std::vector<int> h(static_cast<size_t>(len));
    for (int& t : h) t = static_cast<int>(rng() % static_cast<unsigned>(alphabet));
    const int min_n = 1 + static_cast<int>(rng() % 3);
    const NgramOptions o{.min_n = min_n, .max_n = min_n + static_cast<int>(rng() % 4)};
    const NgramMatch want = NaiveFind(h, o);
    const NgramMatch got = FindNgram(h, o);
    ASSERT_EQ(got.length, want.length) << "trial " << trial;
    if (want.length > 0) {
      ASSERT_EQ(got.start, want.start) << "trial " << trial;
    }
    matched += want.length > 0;
  }
  EXPECT_GT(matched, 1000);  // the trials did exercise matches
}

TEST(Lookup, ContinuationRepeatsPatternsAndStopsAtStopIdsAndLength) {
  // ... 5 6 7 8 | 5 6 -> continues 7 8, then into its own proposals: 5 6 7 8 5 ...
  const std::vector<int> h = {1, 5, 6, 7, 8, 5, 6};
  const NgramOptions o{.min_n = 2, .max_n = 4};
  const NgramMatch m = FindNgram(h, o);
  EXPECT_EQ(m.length, 2);
  EXPECT_EQ(m.start, 3);
  EXPECT_EQ(NgramContinuation(h, m, 7, {}).tokens, (std::vector<int>{7, 8, 5, 6, 7, 8, 5}));
  const std::vector<int> stop = {8};
  EXPECT_EQ(NgramContinuation(h, m, 7, stop).tokens, (std::vector<int>{7, 8}));
  EXPECT_EQ(NgramContinuation(h, m, 1, {}).tokens, (std::vector<int>{7}));
  EXPECT_TRUE(NgramContinuation(h, {}, 7, {}).tokens.empty());
  // The suffix of length 4 (8 5 6 | ...) has no earlier occurrence of length 3 or more.
  EXPECT_EQ(FindNgram(h, {.min_n = 3, .max_n = 4}).length, 0);
  // A run of one token matches itself shifted by one.
  const std::vector<int> run = {3, 9, 9, 9, 9};
  const NgramMatch r = FindNgram(run, o);
  EXPECT_EQ(r.length, 3);
  EXPECT_EQ(NgramContinuation(run, r, 3, {}).tokens, (std::vector<int>{9, 9, 9}));
  EXPECT_FALSE((NgramOptions{.min_n = 0, .max_n = 2}).Validate().ok());
  EXPECT_FALSE((NgramOptions{.min_n = 3, .max_n = 2}).Validate().ok());
}

// A model drafter that always proposes `tokens`, counting its calls and verdicts.
class FixedDrafter : public Drafter {
 public:
  explicit FixedDrafter(std::vector<int> tokens) : tokens_(std::move(tokens)) {}
  Draft Propose(const DraftRequest& r, ThreadPool&) override {
    ++calls;
    Draft d;
    d.tokens.assign(
        tokens_.begin(),
        tokens_.begin() + std::min<long>(r.max_tokens, static_cast<long>(tokens_.size())));
    return d;
  }
  void Observe(int, const Draft& d, std::span<const int> path) override {
    ++observed;
    EXPECT_EQ(d.source, DraftSource::kModel);
    EXPECT_LE(path.size(), d.tokens.size());
  }
  int calls = 0, observed = 0;

 private:
  std::vector<int> tokens_;
};

TEST(Hybrid, TakesTheLookupWhileItPaysAndTheModelWhenItFails) {
  ThreadPool pool(1);
  FixedDrafter model({40, 41, 42});
  HybridOptions o;
  o.tree = false;  // one source per round (the tree choice: HybridTreeTest)
  HybridDrafter hybrid(model, o);
  const std::vector<int> history = {1, 2, 3, 4, 5, 1, 2, 3};  // "1 2 3" recurs: lookup has 4 5 1
  // A request at sequence `seq` over `h` (no target state: neither drafter here reads it).
  const auto request = [](int seq, std::span<const int> h) {
    DraftRequest r;
    r.token = h.back();
    r.pos = static_cast<int>(h.size()) - 1;
    r.max_tokens = 3;
    r.seq = seq;
    r.history = h;
    return r;
  };
  const DraftRequest req = request(0, history);
  // Untried sources look alike; the lookup costs no draft step, so it goes first.
  Draft d = hybrid.Propose(req, pool);
  EXPECT_EQ(d.source, DraftSource::kLookup);
  EXPECT_EQ(d.tokens, (std::vector<int>{4, 5, 1}));
  // Rejected again and again, it gives way to the model, which is accepted.
  for (int round = 0; round < 6; ++round) {
    d = hybrid.Propose(req, pool);
    const std::vector<int> all = {0, 1, 2};
    hybrid.Observe(0, d, std::span(all).first(d.source == DraftSource::kLookup ? 0 : 3));
  }
  EXPECT_EQ(hybrid.Propose(req, pool).source, DraftSource::kModel);
  EXPECT_GT(model.calls, 0);
  EXPECT_GT(model.observed, 0);
  // Another sequence starts afresh; a released one too.
  EXPECT_EQ(hybrid.Propose(request(1, history), pool).source, DraftSource::kLookup);
  hybrid.Release(0);
  EXPECT_EQ(hybrid.Propose(req, pool).source, DraftSource::kLookup);
  // No match: the model drafts.
  const std::vector<int> fresh = {1, 2, 3, 4};
  EXPECT_EQ(hybrid.Propose(request(2, fresh), pool).source, DraftSource::kModel);
}

SpecResult Decode(Gemma4Model& m, Drafter* d, std::span<const int> prompt, int n, int k,
                  SamplingParams sp = {}) {
  ThreadPool pool(2);
  auto cache = m.NewCache(1200, k + 1);  // the smallest headroom: exercises ring rollback
  SeqOptions o;
  o.base.max_new_tokens = n;
  o.base.sampling = sp;
  o.draft_max = k;
  Result<SpecResult> r = d ? GenerateSpeculative(m, *d, pool, *cache, prompt, o, nullptr)
                           : GeneratePlain(m, pool, *cache, prompt, o.base, nullptr);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : SpecResult{};
}

struct Simulated {
  long rounds = 0, drafted = 0, accepted = 0;
};

// The rounds a lookup drafter goes through when the target's greedy output is `out`: each round
// drafts from the history so far and keeps the drafts that agree with `out`, then the target's
// own token. Rounds are bounded by the budget as the engine bounds them.
Simulated SimulateLookup(const std::vector<int>& prompt, const std::vector<int>& out,
                         const NgramOptions& o, int max_k) {
  Simulated s;
  const int n = static_cast<int>(out.size());
  int emitted = 1;  // the prompt's pass gives the first token
  while (emitted < n) {
    const int k = std::min(max_k, n - emitted - 1);
    std::vector<int> history = prompt;
    history.insert(history.end(), out.begin(), out.begin() + emitted);
    const Draft d = k > 0 ? NgramContinuation(history, FindNgram(history, o), k, {}) : Draft{};
    int accepted = 0;
    while (accepted < static_cast<int>(d.tokens.size()) &&
           d.tokens[static_cast<size_t>(accepted)] == out[static_cast<size_t>(emitted + accepted)])
      ++accepted;
    if (!d.tokens.empty()) {
      ++s.rounds;
      s.drafted += static_cast<long>(d.tokens.size());
      s.accepted += accepted;
    }
    emitted += accepted + 1;
  }
  return s;
}

class LookupEqualsPlain : public ::testing::TestWithParam<std::string> {};

TEST_P(LookupEqualsPlain, GreedyForLookupAndHybridAtEveryK) {
  test::LoadedPair f = test::LoadPair(GetParam(), false);
  // A prompt that holds the model's own continuation of its start, then that start again: the
  // model continues partly as before, so lookup drafts are both accepted and rejected.
  const std::vector<int> start = {2, 461, 364, 446, 450, 17, 33, 91};
  std::vector<int> prompt = start;
  const SpecResult first = Decode(*f.target, nullptr, start, 48, 0);
  prompt.insert(prompt.end(), first.gen.ids.begin(), first.gen.ids.end());
  prompt.insert(prompt.end(), start.begin(), start.end());
  const SpecResult plain = Decode(*f.target, nullptr, prompt, 400, 0);
  ASSERT_EQ(plain.gen.ids.size(), 400u);
  MtpDrafter mtp(*f.assistant);
  for (int k : {1, 3, 8}) {
    NgramDrafter lookup({.min_n = 1, .max_n = 3});
    const SpecResult l = Decode(*f.target, &lookup, prompt, 400, k);
    ASSERT_EQ(l.gen.ids, plain.gen.ids) << "lookup, K=" << k;
    EXPECT_GT(l.spec.lookup_drafted, 0) << k;
    EXPECT_EQ(l.spec.lookup_drafted, l.spec.drafted);
    EXPECT_EQ(l.spec.lookup_accepted, l.spec.accepted);
    // Which drafts were accepted follows from the plain output alone.
    const Simulated want = SimulateLookup(prompt, plain.gen.ids, {.min_n = 1, .max_n = 3}, k);
    EXPECT_EQ(l.spec.draft_rounds, want.rounds) << k;
    EXPECT_EQ(l.spec.drafted, want.drafted) << k;
    EXPECT_EQ(l.spec.accepted, want.accepted) << k;
    EXPECT_LT(l.spec.accepted, l.spec.drafted) << k;
    HybridOptions ho;
    ho.ngram = {.min_n = 1, .max_n = 3};
    HybridDrafter hybrid(mtp, ho);
    const SpecResult h = Decode(*f.target, &hybrid, prompt, 400, k);
    ASSERT_EQ(h.gen.ids, plain.gen.ids) << "hybrid, K=" << k;
    EXPECT_GT(h.spec.lookup_drafted, 0) << k;
    EXPECT_LT(h.spec.lookup_drafted, h.spec.drafted) << "the model never drafted, K=" << k;
    if (k > 1) {
      EXPECT_GT(h.spec.tree_rounds, 0) << "no tree of both sources, K=" << k;
    }
  }
}

TEST(Hybrid, ABatchGetsEachSequenceItsOwnSourceAndTokens) {
  ThreadPool pool(1);
  FixedDrafter model({40, 41, 42});
  HybridOptions o;
  o.tree = false;
  HybridDrafter hybrid(model, o);
  const std::vector<int> repeats = {1, 2, 3, 4, 5, 1, 2, 3};  // lookup: 4 5 1
  const std::vector<int> fresh = {7, 8, 9, 10};               // no match: the model
  const std::vector<int> other = {6, 7, 6, 7};                // lookup: 6 7 6
  std::vector<DraftRequest> reqs(3);
  const std::vector<int>* histories[] = {&repeats, &fresh, &other};
  for (int i = 0; i < 3; ++i) {
    reqs[i].token = histories[i]->back();
    reqs[i].pos = static_cast<int>(histories[i]->size()) - 1;
    reqs[i].max_tokens = 3;
    reqs[i].seq = 10 + i;
    reqs[i].history = *histories[i];
  }
  Result<std::vector<Draft>> drafts = hybrid.ProposeBatch(reqs, pool);
  ASSERT_TRUE(drafts.ok());
  ASSERT_EQ(drafts->size(), 3u);
  EXPECT_EQ((*drafts)[0].source, DraftSource::kLookup);
  EXPECT_EQ((*drafts)[0].tokens, (std::vector<int>{4, 5, 1}));
  EXPECT_EQ((*drafts)[1].source, DraftSource::kModel);
  EXPECT_EQ((*drafts)[1].tokens, (std::vector<int>{40, 41, 42}));
  EXPECT_EQ((*drafts)[2].source, DraftSource::kLookup);
  EXPECT_EQ((*drafts)[2].tokens, (std::vector<int>{6, 7, 6}));
  EXPECT_EQ(model.calls, 1);  // one model call, for the sequence the lookup could not serve
}

TEST(Hybrid, MergeChainsSharesThePrefixOnceAndBranchesWhereTheyDiffer) {
  Draft a, b;
  a.tokens = {4, 5, 1};
  a.source = DraftSource::kLookup;
  b.tokens = {4, 9, 8};
  std::vector<uint8_t> member;
  Draft t = MergeChains(a, b, &member);
  EXPECT_EQ(t.tokens, (std::vector<int>{4, 5, 1, 9, 8}));
  EXPECT_EQ(t.parents, (std::vector<int>{-1, 0, 1, 0, 3}));
  EXPECT_EQ(member, (std::vector<uint8_t>{3, 1, 1, 2, 2}));
  EXPECT_EQ(t.sources[0], DraftSource::kLookup);
  EXPECT_EQ(t.sources[3], DraftSource::kModel);
  b.tokens = {7};  // no shared prefix: a sibling of the first node
  t = MergeChains(a, b, &member);
  EXPECT_EQ(t.parents, (std::vector<int>{-1, 0, 1, -1}));
  b.tokens = {4, 5};  // all shared: no branch
  t = MergeChains(a, b, &member);
  EXPECT_EQ(t.tokens, a.tokens);
  EXPECT_EQ(member, (std::vector<uint8_t>{3, 3, 1}));
}

// Both sources untried: the tree of both pays (either may be right). A branch that keeps failing
// is then dropped, whichever it is.
TEST(Hybrid, TreeOfBothUntilOneSourceKeepsFailing) {
  ThreadPool pool(1);
  const std::vector<int> history = {1, 2, 3, 4, 5, 1, 2, 3};  // lookup: 4 5 1 ...
  DraftRequest req;
  req.token = 3;
  req.pos = 7;
  req.max_tokens = 4;
  req.history = history;
  for (const bool lookup_right : {true, false}) {
    FixedDrafter model({40, 41, 42, 43});
    HybridDrafter hybrid(model, HybridOptions{});
    Draft d = hybrid.Propose(req, pool);
    ASSERT_FALSE(d.parents.empty()) << "a tree of both first";
    EXPECT_EQ(d.tokens[0], 4);
    EXPECT_NE(std::find(d.tokens.begin(), d.tokens.end(), 40), d.tokens.end());
    for (int round = 0; round < 12; ++round) {
      d = hybrid.Propose(req, pool);
      // The path: the right source's nodes, as far as they go.
      std::vector<int> path;
      const DraftSource right = lookup_right ? DraftSource::kLookup : DraftSource::kModel;
      for (size_t i = 0; i < d.tokens.size(); ++i) {
        const DraftSource s = d.sources.empty() ? d.source : d.sources[i];
        if (s == right) path.push_back(static_cast<int>(i));
      }
      hybrid.Observe(0, d, path);
    }
    d = hybrid.Propose(req, pool);
    EXPECT_TRUE(d.parents.empty()) << "lookup right: " << lookup_right;
    EXPECT_EQ(d.source, lookup_right ? DraftSource::kLookup : DraftSource::kModel);
  }
  // Nothing to draft: an empty draft, from either source.
  FixedDrafter model({40});
  HybridDrafter hybrid(model, HybridOptions{});
  req.max_tokens = 0;
  EXPECT_TRUE(hybrid.Propose(req, pool).tokens.empty());
  EXPECT_EQ(model.calls, 0);
}

// Counts what the engine tells a drafter about each sequence.
class CountingDrafter : public NgramDrafter {
 public:
  CountingDrafter() : NgramDrafter({.min_n = 1, .max_n = 3}) {}
  void Observe(int seq, const Draft&, std::span<const int>) override {
    EXPECT_EQ(released.count(seq), 0u);
  }
  void Release(int seq) override { EXPECT_TRUE(released.insert(seq).second) << seq; }
  std::set<int> released;
};

TEST(Lookup, EverySequenceIsReleasedOnceWhateverEndsIt) {
  test::LoadedPair f = test::LoadPair("e2b-tiny", false);
  ThreadPool pool(2);
  CountingDrafter counting;
  BatchEngine engine(*f.target, &counting, pool, {.max_running = 2, .context = 256});
  std::vector<int> ids;
  for (int i = 0; i < 5; ++i) {
    SeqOptions o;
    o.base.max_new_tokens = i == 4 ? 0 : 40;  // the last ends before it starts
    o.draft_max = 3;
    Result<int> id = engine.Add({2, 461, 364, 446, 461, 364}, o, nullptr, nullptr);
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  engine.Step();
  engine.Step();
  engine.Cancel(ids[1]);  // running
  engine.Cancel(ids[3]);  // waiting
  while (!engine.idle()) engine.Step();
  EXPECT_EQ(counting.released, std::set<int>(ids.begin(), ids.end()));
}

TEST(Hybrid, ASeededSampledSequenceGetsTheSameTokensAloneAndBatched) {
  test::LoadedPair f = test::LoadPair("e2b-tiny", true);
  MtpDrafter mtp(*f.assistant);
  HybridOptions ho;
  ho.ngram = {.min_n = 1, .max_n = 3};
  const std::vector<std::vector<int>> prompts = {
      {2, 461, 364, 446, 461, 364}, {2, 17, 33, 17, 33}, {2, 91, 250, 13, 91}};
  test::ExpectSeededSameAloneAndBatched(
      *f.target, {.make_drafter = [&] { return std::make_unique<HybridDrafter>(mtp, ho); },
                  .prompts = prompts,
                  .max_new_tokens = 60,
                  .draft_max = 3});
}

// The hybrid mixes point-mass lookup drafts with the model's sampled ones; sampled output keeps
// the target's law. The prompt starts with every token the target may sample first (found by
// growing that set until the distribution after the whole prompt stays inside it), so a 1-token
// lookup match always exists and the hybrid tries it first.
TEST(Hybrid, SampledOutputHasTheTargetDistribution) {
  test::LoadedPair f = test::LoadPair("e2b-tiny", true);
  const SamplingParams sp{.temperature = 1.0f, .top_k = 4};
  const std::vector<int> start = {2, 461, 364, 446, 450};
  std::vector<int> likely;
  std::vector<int> prompt = start;
  for (int round = 0; round < 20; ++round) {
    ThreadPool pool(1);
    auto cache = f.target->NewCache(128);
    ForwardOutput out;
    ASSERT_TRUE(f.target->Forward({.ids = prompt, .cache = cache.get()}, pool, &out).ok());
    const int vocab = f.target->config().vocab_size;
    bool grew = false;
    for (const auto& [tok, p] :
         TokenWeights(sp, out.logits.data() + out.logits.size() - vocab, vocab)
             .ToDistribution()
             .probs) {
      if (std::find(likely.begin(), likely.end(), tok) != likely.end()) continue;
      likely.push_back(tok);
      grew = true;
    }
    if (!grew) break;
    prompt = likely;
    prompt.insert(prompt.end(), start.begin(), start.end());
  }
  // As the hybrid's model: a drafter that is often accepted (q uniform over p's support).
  test::UniformOverSupportDrafter often(*f.target);
  HybridOptions ho;
  ho.ngram = {.min_n = 1, .max_n = 3};
  HybridDrafter hybrid(often, ho);
  const int runs = test::LawRuns(1500);
  const test::SampledLaw law = test::CheckSampledLaw(*f.target, hybrid, prompt, sp, runs, 77);
  EXPECT_EQ(law.outside_support, 0);
  if (test::kJudgeLaw) {
    EXPECT_LT(law.chi2, law.Bound()) << "dof " << law.dof;
  }
  EXPECT_GE(law.drafted, runs);                                    // every run verified a draft ...
  EXPECT_GT(law.lookup_drafted, runs / 10) << law.lookup_drafted;  // ... many from the lookup
  EXPECT_LT(law.lookup_drafted, law.drafted) << law.lookup_drafted;
  EXPECT_GT(law.accepted, runs / 10);
}

INSTANTIATE_TEST_SUITE_P(Targets, LookupEqualsPlain, ::testing::Values("e2b-tiny", "26b-a4b-tiny"),
                         [](const auto& i) { return test::ParamName(i.param); });

}  // namespace
}  // namespace specula
