// Lossless speculative decoding: greedy speculative output equals plain greedy output token for
// token (random MTP pairs, partially correct replay drafters, every K), edge cases, and the
// distribution of sampled speculative output.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "sampled_law.h"
#include "specula/base/json.h"
#include "specula/base/thread_pool.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/runtime/generate.h"
#include "specula/spec/generate_one.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/spec/replay_drafter.h"
#include "test_util.h"

namespace specula {
namespace {

using test::LoadPair;
using Fixture = test::LoadedPair;

const std::vector<int> kPrompt = {2, 461, 364, 446, 450};

GenerateResult Plain(Gemma4Model& m, std::span<const int> prompt, int n, std::vector<int> stop = {},
                     int ctx = 1200) {
  ThreadPool pool(2);
  auto cache = m.NewCache(ctx);
  GenerateOptions o;
  o.max_new_tokens = n;
  o.stop_ids = std::move(stop);
  Result<GenerateResult> r = test::ReferenceGeneratePlain(m, pool, *cache, prompt, o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return *r;
}

SpecResult Spec(Gemma4Model& m, Drafter& d, std::span<const int> prompt, int n, int k,
                std::vector<int> stop = {}, int ctx = 1200, DraftPolicy* policy = nullptr,
                SamplingParams sp = {}) {
  ThreadPool pool(2);
  auto cache = m.NewCache(ctx, k + 1);  // the smallest headroom that works: exercises ring rollback
  SeqOptions o;
  o.base.max_new_tokens = n;
  o.base.stop_ids = std::move(stop);
  o.base.sampling = sp;
  o.draft_max = k;
  o.policy = policy;
  Result<SpecResult> r = GenerateSpeculative(m, d, pool, *cache, prompt, o, nullptr);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : SpecResult{};
}

std::vector<int> Sequence(std::span<const int> prompt, const std::vector<int>& gen) {
  std::vector<int> s(prompt.begin(), prompt.end());
  s.insert(s.end(), gen.begin(), gen.end());
  return s;
}

class SpecEqualsPlain : public ::testing::TestWithParam<std::pair<std::string, bool>> {};

TEST_P(SpecEqualsPlain, GreedyOver1000TokensForEveryK) {
  Fixture f = LoadPair(GetParam().first, GetParam().second);
  const GenerateResult plain = Plain(*f.target, kPrompt, 1000);  // 1000 tokens: ~60 sliding windows
  ASSERT_EQ(plain.ids.size(), 1000u);
  // A model stuck repeating itself would make equality trivial; these random models are not.
  EXPECT_GT(std::set<int>(plain.ids.begin(), plain.ids.end()).size(), 100u);
  EXPECT_GT(std::set<int>(plain.ids.begin() + 500, plain.ids.end()).size(), 50u);
  MtpDrafter mtp(*f.assistant);
  for (int k : {1, 2, 3, 4, 6, 8}) {
    const SpecResult s = Spec(*f.target, mtp, kPrompt, 1000, k);
    ASSERT_EQ(s.gen.ids, plain.ids) << "MTP drafter, K=" << k;
    EXPECT_GT(s.spec.drafted, 0);
    // A partially correct drafter exercises every acceptance length and rollback depth.
    ReplayDrafter noisy(Sequence(kPrompt, plain.ids), 512, /*corrupt_prob=*/0.25, /*seed=*/k);
    const SpecResult r = Spec(*f.target, noisy, kPrompt, 1000, k);
    ASSERT_EQ(r.gen.ids, plain.ids) << "noisy replay, K=" << k;
    EXPECT_GT(r.spec.acceptance_rate(), 0.3) << k;
    EXPECT_LT(r.spec.acceptance_rate(), 0.95) << k;
    // Plain decoding takes one pass per token after the first, and one for the prompt.
    EXPECT_LT(r.spec.target_forwards, static_cast<long>(plain.ids.size()));
  }
}

INSTANTIATE_TEST_SUITE_P(Pairs, SpecEqualsPlain,
                         ::testing::Values(std::make_pair(std::string("e2b-tiny"), true),
                                           std::make_pair(std::string("31b-tiny"), false),
                                           std::make_pair(std::string("26b-a4b-tiny"), false)),
                         [](const auto& i) {
                           return test::ParamName(i.param.first +
                                                  (i.param.second ? "_centroid" : "_dense"));
                         });

// A sequence that ends inside its accepted drafts (budget or stop id) leaves its cache as plain
// decoding does: every generated token but the last fed, no row of a draft after it.
TEST(Spec, ASequenceEndingInsideItsDraftsLeavesThePlainCache) {
  Fixture f = LoadPair("e2b-tiny", true);
  const GenerateResult plain = Plain(*f.target, kPrompt, 40);
  ReplayDrafter replay(Sequence(kPrompt, plain.ids), 512);
  ThreadPool pool(2);
  for (int n : {7, 8, 9, 10}) {  // 1 + 5 tokens, then a round of 4 drafts + 1 that the budget cuts
    auto cache = f.target->NewCache(256, 5);
    SeqOptions o;
    o.base.max_new_tokens = n;
    o.draft_max = 4;
    Result<SpecResult> r =
        GenerateSpeculative(*f.target, replay, pool, *cache, kPrompt, o, nullptr);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->gen.ids.size(), static_cast<size_t>(n));
    EXPECT_EQ(cache->length(), static_cast<int>(kPrompt.size()) + n - 1) << n;
  }
  // A stop id among the drafts of a round.
  auto cache = f.target->NewCache(256, 5);
  SeqOptions o;
  o.base.max_new_tokens = 40;
  o.base.stop_ids = {plain.ids[8]};
  o.draft_max = 4;
  Result<SpecResult> r = GenerateSpeculative(*f.target, replay, pool, *cache, kPrompt, o, nullptr);
  ASSERT_TRUE(r.ok());
  const auto stop_at =
      std::find(plain.ids.begin(), plain.ids.end(), plain.ids[8]) - plain.ids.begin();
  ASSERT_EQ(r->gen.ids.size(), static_cast<size_t>(stop_at + 1));
  EXPECT_EQ(cache->length(), static_cast<int>(kPrompt.size() + r->gen.ids.size()) - 1);
}

TEST(Spec, PerfectReplayReachesFullAcceptance) {
  Fixture f = LoadPair("e2b-tiny", true);
  const GenerateResult plain = Plain(*f.target, kPrompt, 301);
  ReplayDrafter replay(Sequence(kPrompt, plain.ids), 512);
  const SpecResult s = Spec(*f.target, replay, kPrompt, 301, 4);
  EXPECT_EQ(s.gen.ids, plain.ids);
  EXPECT_EQ(s.spec.acceptance_rate(), 1.0);
  EXPECT_EQ(s.spec.mean_tokens_per_round(), 5.0);  // 300 tokens after the first in 60 rounds of K+1
  EXPECT_EQ(s.spec.draft_rounds, 60);
  EXPECT_EQ(s.spec.target_forwards, 61);  // prefill + 60 verify passes
  EXPECT_EQ(s.spec.accepted_per_position, (std::vector<long>{60, 60, 60, 60}));
}

// Every round must hand the drafter the pending token at position P and the target's post-norm
// hidden state of position P-1 (the row whose logits produced that token), bit for bit.
class CheckingDrafter : public Drafter {
 public:
  CheckingDrafter(Drafter& inner, std::vector<int> sequence, std::vector<float> hidden, int h)
      : inner_(inner), sequence_(std::move(sequence)), hidden_(std::move(hidden)), h_(h) {}
  Draft Propose(const DraftRequest& r, ThreadPool& pool) override {
    ++calls;
    EXPECT_EQ(r.token, sequence_[static_cast<size_t>(r.pos)]) << "pending token at " << r.pos;
    EXPECT_EQ(r.cache->length(), r.pos) << "the cache must hold exactly the committed positions";
    EXPECT_EQ(0, std::memcmp(r.hidden.data(), &hidden_[static_cast<size_t>(r.pos - 1) * h_],
                             h_ * sizeof(float)))
        << "hidden row for position " << r.pos - 1;
    EXPECT_TRUE(std::equal(r.history.begin(), r.history.end(), sequence_.begin(),
                           sequence_.begin() + r.pos + 1))
        << "history must be positions 0.." << r.pos;
    return inner_.Propose(r, pool);
  }
  int calls = 0;

 private:
  Drafter& inner_;
  std::vector<int> sequence_;
  std::vector<float> hidden_;
  size_t h_;
};

TEST(Spec, DrafterGetsTheRightTokenPositionHiddenRowAndHistory) {
  Fixture f = LoadPair("e2b-tiny", true);
  const GenerateResult plain = Plain(*f.target, kPrompt, 200);
  const std::vector<int> seq = Sequence(kPrompt, plain.ids);
  ThreadPool pool(1);
  auto cache = f.target->NewCache(256);
  ForwardOutput all;
  ASSERT_TRUE(f.target->Forward({.ids = seq, .cache = cache.get()}, pool, &all).ok());
  for (double corrupt : {0.0, 0.3}) {
    ReplayDrafter replay(seq, 512, corrupt, 4);
    CheckingDrafter check(replay, seq, all.hidden, f.target->config().hidden_size);
    const SpecResult s = Spec(*f.target, check, kPrompt, 200, 3);
    EXPECT_EQ(s.gen.ids, plain.ids);
    EXPECT_EQ(check.calls, s.spec.draft_rounds);
    EXPECT_GT(check.calls, 40);
  }
}

TEST(Spec, StopTokenInsideADraft) {
  Fixture f = LoadPair("31b-tiny", false);
  const GenerateResult free_run = Plain(*f.target, kPrompt, 200);
  // Pick a token whose first occurrence is well inside the run as the stop id.
  int stop = -1;
  size_t at = 0;
  for (size_t i = 3; i < free_run.ids.size() && stop < 0; ++i) {
    if (std::find(free_run.ids.begin(), free_run.ids.begin() + static_cast<long>(i),
                  free_run.ids[i]) == free_run.ids.begin() + static_cast<long>(i)) {
      stop = free_run.ids[i];
      at = i;
    }
  }
  ASSERT_GE(stop, 0);
  const GenerateResult plain = Plain(*f.target, kPrompt, 200, {stop});
  ASSERT_EQ(plain.ids.size(), at + 1);
  EXPECT_EQ(plain.stop, StopReason::kStopToken);
  for (int k : {3, 8}) {
    ReplayDrafter replay(Sequence(kPrompt, free_run.ids), 512);  // keeps drafting past the stop id
    const SpecResult s = Spec(*f.target, replay, kPrompt, 200, k, {stop});
    EXPECT_EQ(s.gen.ids, plain.ids);
    EXPECT_EQ(s.gen.stop, StopReason::kStopToken);
  }
}

TEST(Spec, BudgetEndsInsideADraftAndKExceedsBudget) {
  Fixture f = LoadPair("e2b-tiny", true);
  for (int n : {1, 2, 3, 23}) {
    const GenerateResult plain = Plain(*f.target, kPrompt, n);
    ReplayDrafter replay(Sequence(kPrompt, Plain(*f.target, kPrompt, 40).ids), 512);
    const SpecResult s = Spec(*f.target, replay, kPrompt, n, 8);
    EXPECT_EQ(s.gen.ids, plain.ids) << n;
    EXPECT_EQ(s.gen.stop, StopReason::kLength);
  }
}

TEST(Spec, OneTokenPromptAndContextLimit) {
  Fixture f = LoadPair("e2b-tiny", true);
  const std::vector<int> one = {2};
  MtpDrafter mtp(*f.assistant);
  EXPECT_EQ(Spec(*f.target, mtp, one, 60, 4).gen.ids, Plain(*f.target, one, 60).ids);
  // Context of 20: plain stops with 15 tokens (positions 5..19), and so must speculation.
  const GenerateResult plain = Plain(*f.target, kPrompt, 100, {}, 20);
  EXPECT_EQ(plain.stop, StopReason::kContext);
  ReplayDrafter replay(Sequence(kPrompt, Plain(*f.target, kPrompt, 40).ids), 512);
  const SpecResult s = Spec(*f.target, replay, kPrompt, 100, 6, {}, 20);
  EXPECT_EQ(s.gen.ids, plain.ids);
  EXPECT_EQ(s.gen.stop, StopReason::kContext);
}

// Plain decoding runs through the batch engine (K = 0): it must equal the written-out loop token
// for token, greedy and seeded sampling, ending at a stop id, the budget or the context alike.
TEST(Spec, PlainDecodingThroughTheEngineEqualsTheReferenceLoop) {
  Fixture f = LoadPair("e2b-tiny", true);
  ThreadPool pool(2);
  const std::vector<int> long_prompt(300, 461);  // more rows than one prefill chunk of 256
  struct Case {
    std::vector<int> prompt;
    int n, ctx;
    std::vector<int> stop;
    SamplingParams sp;
  };
  const GenerateResult free_run = Plain(*f.target, kPrompt, 30);
  const std::vector<Case> cases = {
      {kPrompt, 80, 1200, {}, {}},
      {kPrompt, 30, 1200, {free_run.ids[12]}, {}},  // stops at a token it would emit
      {kPrompt, 100, 20, {}, {}},                   // the context ends it
      {long_prompt, 20, 1200, {}, {}},
      {kPrompt, 60, 1200, {}, {.temperature = 0.8f, .top_k = 40, .seed = 9}},
      {kPrompt, 60, 1200, {}, {.temperature = 1.0f, .seed = 3}},
  };
  for (const Case& c : cases) {
    GenerateOptions o;
    o.max_new_tokens = c.n;
    o.stop_ids = c.stop;
    o.sampling = c.sp;
    auto c1 = f.target->NewCache(c.ctx), c2 = f.target->NewCache(c.ctx);
    Result<GenerateResult> ref = test::ReferenceGeneratePlain(*f.target, pool, *c1, c.prompt, o);
    std::vector<int> streamed;
    Result<SpecResult> run =
        GeneratePlain(*f.target, pool, *c2, c.prompt, o, [&](int t) { streamed.push_back(t); });
    ASSERT_TRUE(ref.ok() && run.ok());
    const GenerateResult* got = &run->gen;
    EXPECT_EQ(got->ids, ref->ids) << c.n << " " << c.ctx << " T " << c.sp.temperature;
    EXPECT_EQ(got->stop, ref->stop);
    EXPECT_EQ(streamed, got->ids);
    EXPECT_EQ(got->stats.generated_tokens, static_cast<int>(got->ids.size()));
    EXPECT_EQ(run->spec.generated, static_cast<long>(got->ids.size()));
    EXPECT_EQ(run->spec.draft_rounds, 0);
    // A pass per prompt chunk, then one per token after the first.
    if (!got->ids.empty()) {
      EXPECT_EQ(run->spec.decode_forwards, static_cast<long>(got->ids.size()) - 1);
    }
  }
  EXPECT_EQ(free_run.stop, StopReason::kLength);
}

TEST(Spec, AdaptivePolicyPausesUselessDraftingAndStaysLossless) {
  Fixture f = LoadPair("e2b-tiny", true);
  const GenerateResult plain = Plain(*f.target, kPrompt, 300);
  MtpDrafter mtp(*f.assistant);  // random weights: almost nothing is accepted
  const SpecResult fixed = Spec(*f.target, mtp, kPrompt, 300, 4);
  AdaptivePolicy adaptive({.max_k = 4});
  const SpecResult adapt = Spec(*f.target, mtp, kPrompt, 300, 4, {}, 1200, &adaptive);
  EXPECT_EQ(adapt.gen.ids, plain.ids);
  EXPECT_EQ(fixed.gen.ids, plain.ids);
  EXPECT_LT(adapt.spec.drafted * 5, fixed.spec.drafted);  // drafting mostly paused
  // With a perfect drafter the adaptive policy keeps drafting at full length.
  ReplayDrafter replay(Sequence(kPrompt, plain.ids), 512);
  AdaptivePolicy adaptive2({.max_k = 4, .min_confidence = 0.0f});
  const SpecResult full = Spec(*f.target, replay, kPrompt, 300, 4, {}, 1200, &adaptive2);
  EXPECT_EQ(full.gen.ids, plain.ids);
  EXPECT_EQ(full.spec.acceptance_rate(), 1.0);
  EXPECT_GT(full.spec.mean_tokens_per_round(), 4.9);
}

// The cost-aware policy on the real engine: whatever K it picks, the output stays the target's.
TEST(Spec, CostAwarePolicyStaysLossless) {
  for (const auto& [preset, centroid] :
       {std::pair<std::string, bool>{"e2b-tiny", true}, {"26b-a4b-tiny", false}}) {
    SCOPED_TRACE(preset);
    Fixture f = LoadPair(preset, centroid);
    const GenerateResult plain = Plain(*f.target, kPrompt, 300);
    MtpDrafter mtp(*f.assistant);
    CostAwarePolicy useless({.max_k = 6});
    const SpecResult r = Spec(*f.target, mtp, kPrompt, 300, 6, {}, 1200, &useless);
    // How often it drafts follows the passes' measured times, which a loaded machine moves
    // (CostAwarePolicyUnit checks the decisions on fixed costs); the output never moves.
    EXPECT_EQ(r.gen.ids, plain.ids);
    ReplayDrafter noisy(Sequence(kPrompt, plain.ids), 512, 0.2, 3);
    CostAwarePolicy good({.max_k = 6});
    const SpecResult g = Spec(*f.target, noisy, kPrompt, 300, 6, {}, 1200, &good);
    EXPECT_EQ(g.gen.ids, plain.ids);
    EXPECT_GT(g.spec.drafted, 0);
  }
}

TEST(Spec, TraceHasOneLinePerRound) {
  Fixture f = LoadPair("e2b-tiny", true);
  const GenerateResult plain = Plain(*f.target, kPrompt, 50);
  ReplayDrafter replay(Sequence(kPrompt, plain.ids), 512, 0.3, 1);
  std::ostringstream trace;
  ThreadPool pool(1);
  auto cache = f.target->NewCache(100);
  SeqOptions o;
  o.base.max_new_tokens = 50;
  o.draft_max = 3;
  o.trace = &trace;
  Result<SpecResult> r = GenerateSpeculative(*f.target, replay, pool, *cache, kPrompt, o, nullptr);
  ASSERT_TRUE(r.ok());
  std::istringstream lines(trace.str());
  std::string line;
  int n = 0, accepted = 0;
  int pos = static_cast<int>(kPrompt.size());
  while (std::getline(lines, line)) {
    const Json j = Json::parse(line);
    EXPECT_EQ(j["pos"], pos);  // rounds start where the previous one left off
    accepted += j["accepted"].get<int>();
    pos += j["accepted"].get<int>() + 1;
    EXPECT_LE(j["drafted"].size(), 3u);
    ++n;
  }
  EXPECT_EQ(n, r->spec.draft_rounds);
  EXPECT_EQ(accepted, r->spec.accepted);
}

// The decode time splits into target passes, drafter steps and the rest: the first two are
// measured inside the decode phase only (the prefill pass is not in decode_s) and never overlap.
TEST(Spec, DecodeTimeSplitsIntoPassesDraftsAndTheRest) {
  Fixture f = LoadPair("e2b-tiny", true);
  ThreadPool pool(1);
  auto cache = f.target->NewCache(160);
  MtpDrafter mtp(*f.assistant);
  SeqOptions o;
  o.base.max_new_tokens = 60;
  o.draft_max = 3;
  Result<SpecResult> r = GenerateSpeculative(*f.target, mtp, pool, *cache, kPrompt, o, nullptr);
  ASSERT_TRUE(r.ok());
  const SpecStats& s = r->spec;
  EXPECT_GT(s.forward_s, 0.0);
  EXPECT_GT(s.draft_s, 0.0);
  EXPECT_LE(s.forward_s + s.draft_s, r->gen.stats.decode_s);
}

// Sampled speculative decoding must keep the target's distribution. The second generated token is
// the first one produced by a speculative round; conditioned on the first token its distribution
// must equal the target's processed distribution after prompt + first token (chi-square).
class SpecSampling : public ::testing::TestWithParam<std::string> {};

TEST_P(SpecSampling, SampledOutputHasTheTargetDistribution) {
  Fixture f = LoadPair(GetParam(), GetParam() == "e2b-tiny");
  const SamplingParams sp{.temperature = 1.0f, .top_k = 4};
  MtpDrafter mtp(*f.assistant);  // drafts sampled from its centroid-head q
  // Replay guesses a fixed likely continuation: its point-mass drafts are sometimes accepted.
  std::vector<int> guess = kPrompt;
  guess.insert(guess.end(), {13, 13, 13});
  ReplayDrafter replay(guess, 512);
  // Random drafters are rarely accepted here; this one often is (q uniform over p's support).
  test::UniformOverSupportDrafter often(*f.target);
  const std::pair<const char*, Drafter*> drafters[] = {
      {"MTP drafter", &mtp}, {"replay drafter", &replay}, {"uniform-over-support drafter", &often}};
  for (const auto& [name, d] : drafters) {
    const int runs = test::LawRuns(3000);
    const test::SampledLaw law =
        test::CheckSampledLaw(*f.target, *d, kPrompt, sp, runs, std::hash<std::string>()(name));
    EXPECT_EQ(law.outside_support, 0) << name;
    EXPECT_GE(law.drafted, 2 * runs) << name;  // every run verified two drafts
    if (!test::kJudgeLaw) continue;
    EXPECT_LT(law.chi2, law.Bound()) << name << " dof " << law.dof;
    if (d == &often) {  // (about 5,000 of 6,500: acceptance, rejection and bonus all exercised)
      EXPECT_GT(law.accepted, 2000) << name;
      EXPECT_LT(law.accepted, law.drafted - 600) << name;
    }
  }
}

// The dense E2B shape with its centroid head, and the mixture-of-experts 26B-A4B shape.
INSTANTIATE_TEST_SUITE_P(Targets, SpecSampling, ::testing::Values("e2b-tiny", "26b-a4b-tiny"),
                         [](const auto& i) { return test::ParamName(i.param); });

TEST(AdaptivePolicyUnit, GrowsShrinksAndPauses) {
  AdaptivePolicy p({.max_k = 4,
                    .min_confidence = 0.2f,
                    .low_acceptance = 0.15,
                    .pause_rounds = 3,
                    .smoothing = 0.5});
  EXPECT_EQ(p.NextLength({}), 4);
  p.Observe(4, 1);
  EXPECT_EQ(p.NextLength({}), 2);  // shrink to accepted + 1
  p.Observe(2, 2);
  EXPECT_EQ(p.NextLength({}), 3);  // grow after a fully accepted round
  p.Observe(3, 0);
  p.Observe(1, 0);
  p.Observe(1, 0);  // the moving average falls below 0.15: pause
  EXPECT_EQ(p.NextLength({}), 0);
  EXPECT_EQ(p.NextLength({}), 0);
  EXPECT_EQ(p.NextLength({}), 0);
  EXPECT_EQ(p.NextLength({}), 1);  // probe again
  EXPECT_FLOAT_EQ(p.MinConfidence(), 0.2f);
}

// The cost-aware policy against synthetic costs and acceptance: it drafts as far as pays.
struct PolicyRun {
  std::map<int, int> chosen;  // K -> rounds, over the last half
  int drafting = 0;           // rounds with K > 0, over all
};

PolicyRun RunPolicy(const std::function<double(int)>& pass, double draft_step, double accept,
                    int rounds, RoundInfo round = {}) {
  PassCosts costs;
  for (int r = 1; r <= 12; ++r) costs.RecordPass(r, pass(r));
  costs.RecordDraft(1, draft_step);
  round.costs = &costs;
  CostAwarePolicy p({.max_k = 8});
  std::mt19937 rng(5);
  std::bernoulli_distribution ok(accept);
  PolicyRun run;
  for (int i = 0; i < rounds; ++i) {
    const int k = p.NextLength(round);
    if (i >= rounds / 2) run.chosen[k]++;
    if (k == 0) continue;
    ++run.drafting;
    int n = 0;
    while (n < k && ok(rng)) ++n;
    p.Observe(k, n);
  }
  return run;
}

int MostChosen(const PolicyRun& r) {
  return std::max_element(r.chosen.begin(), r.chosen.end(),
                          [](const auto& a, const auto& b) { return a.second < b.second; })
      ->first;
}

TEST(CostAwarePolicyUnit, DraftsAsFarAsItPays) {
  const auto cheap = [](int rows) { return 1.0 + 0.02 * (rows - 1); };  // memory-bound, dense
  // A useless drafter is tried, then left alone but for a probe every 32 rounds.
  const PolicyRun useless = RunPolicy(cheap, 0.03, 0.0, 640);
  EXPECT_LT(useless.drafting, 640 / 32 + 15);
  EXPECT_EQ(MostChosen(useless), 0);
  // A perfect drafter with cheap verification drafts the longest K.
  EXPECT_EQ(MostChosen(RunPolicy(cheap, 0.01, 1.0, 200)), 8);
  // Verification as dear as one pass per row never pays.
  EXPECT_EQ(MostChosen(RunPolicy([](int rows) { return 1.0 * rows; }, 0.01, 1.0, 200)), 0);
  // MoE-like: each row reaches more experts. With acceptance 0.6, K = 2 maximises
  // E[K] / cost(K) = (1 - 0.6^(K+1)) / 0.4 / (1 + 0.17 K): 1.37, 1.46, 1.44, 1.39 for K = 1..4.
  EXPECT_EQ(
      MostChosen(RunPolicy([](int rows) { return 1.0 + 0.15 * (rows - 1); }, 0.02, 0.6, 2000)), 2);
  // In a batch the pass is shared: 24 other rows of 6 sequences make a draft row relatively cheap.
  const auto shared = [](int rows) { return 1.0 + 0.05 * (rows - 1); };
  EXPECT_GT(MostChosen(RunPolicy(shared, 0.02, 0.6, 2000,
                                 {.costs = nullptr, .other_rows = 24, .other_sequences = 6})),
            0);
}

// A drafter that fails every probe is probed 32, 64, 128, 256, 256, ... plain rounds apart; one
// accepted probe brings the gap back to 32.
TEST(CostAwarePolicyUnit, ProbesBackOffWhileTheDrafterFails) {
  PassCosts costs;
  for (int r = 1; r <= 4; ++r) costs.RecordPass(r, 1.0 + 0.05 * (r - 1));
  costs.RecordDraft(1, 0.5);  // a dear draft step: drafting pays only when it is right
  const RoundInfo round{.costs = &costs};
  CostAwarePolicy p({.max_k = 4});
  std::vector<int> probes;
  for (int i = 0; i < 1500; ++i) {
    const int k = p.NextLength(round);
    if (k == 0) continue;
    EXPECT_EQ(k, 1) << "round " << i;
    probes.push_back(i);
    p.Observe(k, 0);
  }
  ASSERT_GE(probes.size(), 7u);
  EXPECT_EQ(probes[0], 31);  // drafting this dear is not worth an untried guess: a probe at 32
  std::vector<int> gaps;
  for (size_t i = 1; i < probes.size(); ++i) gaps.push_back(probes[i] - probes[i - 1]);
  EXPECT_EQ(std::vector<int>(gaps.begin(), gaps.begin() + 5),
            (std::vector<int>{64, 128, 256, 256, 256}));
  // An accepted probe brings the gap back to 32.
  int k = 0;
  while ((k = p.NextLength(round)) == 0) {
  }
  p.Observe(k, 1);
  int waited = 0;
  while (p.NextLength(round) == 0) ++waited;
  EXPECT_EQ(waited, 31);
}

TEST(PassCostsUnit, MovingAveragesInterpolationAndMonotonicity) {
  PassCosts c;
  EXPECT_TRUE(c.empty());
  EXPECT_DOUBLE_EQ(c.Pass(3), 1.1);  // the optimistic guess before any measurement
  c.RecordPass(1, 10.0);
  c.RecordPass(5, 14.0);
  EXPECT_DOUBLE_EQ(c.Pass(1), 10.0);
  EXPECT_DOUBLE_EQ(c.Pass(3), 12.0);         // linear between measured row counts
  EXPECT_NEAR(c.Pass(7), 14.0 * 1.1, 1e-9);  // beyond: 5 % per row
  c.RecordPass(5, 4.0);                      // a noisy sample moves the average a fifth of the way
  EXPECT_NEAR(c.Pass(5), 12.0, 1e-9);
  for (int i = 0; i < 20; ++i) c.RecordPass(5, 0.5);
  EXPECT_DOUBLE_EQ(c.Pass(5), 10.0);  // its average fell below the one-row pass: raised to it
  c.RecordDraft(4, 2.0);
  EXPECT_DOUBLE_EQ(c.DraftStep(), 0.5);
}

}  // namespace
}  // namespace specula
