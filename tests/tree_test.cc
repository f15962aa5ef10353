// Token-tree verification: a tree pass against the chains of its paths (logits, hidden states and
// positions bit for bit), keeping one path of the cache across sliding-ring wraps, the tree
// verifier's walk, and lossless decoding with tree drafts (greedy output equal to plain decoding;
// sampled output with the target's distribution).
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "sampled_law.h"
#include "specula/base/thread_pool.h"
#include "specula/models/gemma4.h"
#include "specula/spec/batch_engine.h"
#include "specula/spec/generate_one.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/spec/mtp_tree_drafter.h"
#include "specula/spec/verifier.h"
#include "test_util.h"

namespace specula {
namespace {

using test::RandomIds;

// Rows of a tree pass and their parents (-1: the cached prefix). Row 0 is the pending token.
// `keep`: rows whose path the cache keeps in a second run.
struct TreeCase {
  std::vector<int> ids, parents, keep;
};

// Row t's path from the root: the rows it attends to among the tree's, in order.
std::vector<int> PathTo(const std::vector<int>& parents, int t) {
  std::vector<int> path;
  for (int a = t; a >= 0; a = parents[static_cast<size_t>(a)]) path.insert(path.begin(), a);
  return path;
}

ForwardOutput Forward(Gemma4Model& m, ThreadPool& pool, KvCache& cache, std::span<const int> ids) {
  ForwardOutput out;
  Status s = m.Forward({.ids = ids, .cache = &cache, .all_logits = true}, pool, &out);
  EXPECT_TRUE(s.ok()) << s.message();
  return out;
}

// Every row of a tree pass equals the last row of a chain pass over its path (what plain decoding
// of that path computes), bit for bit, on every model family and past the sliding window. Keeping
// a path's rows (KvCache::KeepPath) leaves the cache the chain built: the next step agrees too.
TEST(Tree, RowsEqualTheirPathsAsChainsAndKeepPathEqualsTheChainCache) {
  for (const char* preset : {"e2b-tiny", "31b-tiny", "26b-a4b-tiny"}) {
    auto loaded = Gemma4Model::Load(test::MakePreset(preset));
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    Gemma4Model& model = **loaded;
    const int V = model.config().vocab_size, H = model.config().hidden_size;
    ThreadPool pool(2);
    // 0 <- 1 <- 3 <- 6 <- 9, 0 <- 2 <- 5, 1 <- 4 <- 7, 3 <- 8: siblings, uneven depths.
    const TreeCase bushy{
        .ids = RandomIds(10, V, 4), .parents = {-1, 0, 0, 1, 1, 2, 3, 4, 3, 6}, .keep = {9, 5}};
    // Three siblings, then a chain of 19 under the first: deeper than the 16-position sliding
    // window, and with row indices ahead of depths, so only the mask can hide a deep row's first
    // ancestors (its key range counts rows).
    TreeCase deep{.ids = RandomIds(23, V, 6), .parents = {-1, 0, 0, 0, 1}, .keep = {22, 3}};
    for (int t = 5; t < 23; ++t) deep.parents.push_back(t - 1);
    for (const TreeCase& tree : {bushy, deep}) {
      for (const int prompt_len : {5, 37}) {  // 37: the 16-token sliding ring has wrapped
        const std::vector<int> prompt = RandomIds(prompt_len, V, 9);
        auto cache = model.NewCache(96, 24);
        Forward(model, pool, *cache, prompt);
        std::unique_ptr<PassScratch> scratch = model.NewScratch();
        const int T = static_cast<int>(tree.ids.size());
        const BatchSeq seq{
            .ids = tree.ids, .cache = cache.get(), .logit_rows = T, .parents = tree.parents};
        BatchOutput out;
        ASSERT_TRUE(model.ForwardBatch({&seq, 1}, pool, *scratch, &out).ok());
        ASSERT_EQ(cache->length(), prompt_len + T);
        for (int t = 0; t < T; ++t) {
          const std::vector<int> path = PathTo(tree.parents, t);
          std::vector<int> ids;
          for (int r : path) ids.push_back(tree.ids[static_cast<size_t>(r)]);
          auto chain_cache = model.NewCache(96, 24);
          Forward(model, pool, *chain_cache, prompt);
          const ForwardOutput chain = Forward(model, pool, *chain_cache, ids);
          const size_t last = ids.size() - 1;
          ASSERT_EQ(0, std::memcmp(&out.logits[static_cast<size_t>(t * V)], &chain.logits[last * V],
                                   static_cast<size_t>(V) * sizeof(float)))
              << preset << " prompt " << prompt_len << " row " << t << " logits";
          ASSERT_EQ(0, std::memcmp(&out.hidden[static_cast<size_t>(t * H)], &chain.hidden[last * H],
                                   static_cast<size_t>(H) * sizeof(float)))
              << preset << " prompt " << prompt_len << " row " << t << " hidden";
          if (std::find(tree.keep.begin(), tree.keep.end(), t) == tree.keep.end()) continue;
          auto kept = model.NewCache(96, 24);
          Forward(model, pool, *kept, prompt);
          BatchOutput again;
          const BatchSeq seq2{
              .ids = tree.ids, .cache = kept.get(), .logit_rows = T, .parents = tree.parents};
          ASSERT_TRUE(model.ForwardBatch({&seq2, 1}, pool, *scratch, &again).ok());
          ASSERT_TRUE(kept->KeepPath(prompt_len, path).ok());
          ASSERT_EQ(kept->length(), chain_cache->length());
          const std::vector<int> next = RandomIds(3, V, 77);
          const ForwardOutput a = Forward(model, pool, *kept, next);
          const ForwardOutput b = Forward(model, pool, *chain_cache, next);
          ASSERT_EQ(a.logits, b.logits)
              << preset << " prompt " << prompt_len << " after path " << t;
        }
      }
    }
  }
}

TEST(Tree, BadParentsAreRefusedAndKeepPathChecksItsRows) {
  auto loaded = Gemma4Model::Load(test::MakePreset("e2b-tiny"));
  ASSERT_TRUE(loaded.ok());
  Gemma4Model& model = **loaded;
  ThreadPool pool(1);
  auto cache = model.NewCache(64, 4);
  std::unique_ptr<PassScratch> scratch = model.NewScratch();
  const std::vector<int> ids = {2, 5, 6};
  for (const std::vector<int>& parents :
       {std::vector<int>{-1, 1, 0}, std::vector<int>{-1, 0, -2}, std::vector<int>{-1, 0}}) {
    const BatchSeq seq{.ids = ids, .cache = cache.get(), .logit_rows = 3, .parents = parents};
    BatchOutput out;
    const Status s = model.ForwardBatch({&seq, 1}, pool, *scratch, &out);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("tree parents"), std::string::npos) << s.message();
    EXPECT_EQ(cache->length(), 0);
  }
  // A forest (two roots) is a tree of the cached prefix: fine.
  const std::vector<int> forest = {-1, -1, 1};
  const BatchSeq seq{.ids = ids, .cache = cache.get(), .logit_rows = 3, .parents = forest};
  BatchOutput out;
  ASSERT_TRUE(model.ForwardBatch({&seq, 1}, pool, *scratch, &out).ok());
  EXPECT_FALSE(cache->KeepPath(0, std::vector<int>{1, 0}).ok());  // not ascending
  EXPECT_FALSE(cache->KeepPath(0, std::vector<int>{0, 3}).ok());  // beyond the pass
  EXPECT_FALSE(cache->KeepPath(1, std::vector<int>{0, 0}).ok());
  EXPECT_EQ(cache->length(), 3);
  EXPECT_TRUE(cache->KeepPath(0, std::vector<int>{1, 2}).ok());
  EXPECT_EQ(cache->length(), 2);
  // A tree of more rows than the sliding ring holds, after it wrapped: its path cannot be kept (the
  // ring overwrote rows it needs), and the cache is left as it was.
  auto small = model.NewCache(64, 4);
  const std::vector<int> prompt = RandomIds(30, model.config().vocab_size, 1);
  const BatchSeq fill{.ids = prompt, .cache = small.get(), .logit_rows = 1, .parents = {}};
  ASSERT_TRUE(model.ForwardBatch({&fill, 1}, pool, *scratch, &out).ok());
  // 24 rows: more than the ring's 16 + 4 slots hold.
  std::vector<int> chain24(24);
  for (int t = 0; t < 24; ++t) chain24[static_cast<size_t>(t)] = t - 1;
  const std::vector<int> ids24 = RandomIds(24, model.config().vocab_size, 2);
  const BatchSeq big{.ids = ids24, .cache = small.get(), .logit_rows = 24, .parents = chain24};
  ASSERT_TRUE(model.ForwardBatch({&big, 1}, pool, *scratch, &out).ok());
  const Status s = small->KeepPath(30, std::vector<int>{0, 1, 2});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("headroom"), std::string::npos) << s.message();
  EXPECT_EQ(small->length(), 54);
}

// Logits rows where `best[r]` is row r's argmax (vocabulary 6).
std::vector<float> Rows(const std::vector<int>& best) {
  std::vector<float> l(best.size() * 6, 0.0f);
  for (size_t r = 0; r < best.size(); ++r) l[r * 6 + static_cast<size_t>(best[r])] = 5.0f;
  return l;
}

TEST(Tree, GreedyWalkFollowsTheTargetsChoiceThroughSiblings) {
  Sampler greedy(SamplingParams{});
  //        x: row 0 -> token 3
  //  d0=1  d1=3  d2=4     (children of x; d1 matches)
  //  d3=2 (of d1) d4=5 (of d1) d5=0 (of d0)
  // rows: 0 x, 1 d0, 2 d1, 3 d2, 4 d3, 5 d4, 6 d5
  const std::vector<int> tokens = {1, 3, 4, 2, 5, 0};
  const std::vector<int> parents = {-1, -1, -1, 1, 1, 0};
  TreeOutcome t = VerifyTree(Rows({3, 0, 5, 0, 0, 1, 0}).data(), 6, tokens, parents, greedy);
  EXPECT_EQ(t.path, (std::vector<int>{1, 4}));  // d1 (3), then d4 (5): row 5 says 1
  EXPECT_EQ(t.next_token, 1);
  t = VerifyTree(Rows({2, 0, 0, 0, 0, 0, 0}).data(), 6, tokens, parents, greedy);
  EXPECT_TRUE(t.path.empty());  // no child of x drafts 2
  EXPECT_EQ(t.next_token, 2);
  t = VerifyTree(Rows({1, 0, 0, 0, 0, 0, 3}).data(), 6, tokens, parents, greedy);
  EXPECT_EQ(t.path, (std::vector<int>{0, 5}));  // d0, then d5 (0), a leaf: row 6 gives the bonus
  EXPECT_EQ(t.next_token, 3);
}

// Drafts a tree around the target's known greedy output: at every round the true continuation
// lies along a random path of random length, among wrong siblings, with wrong branches beside it.
// It records how many drafts the target should accept.
class OracleTreeDrafter : public Drafter {
 public:
  OracleTreeDrafter(std::vector<int> prompt, std::vector<int> out, int vocab)
      : prompt_(std::move(prompt)), out_(std::move(out)), vocab_(vocab) {}
  Draft Propose(const DraftRequest& r, ThreadPool&) override {
    std::mt19937 rng(static_cast<uint32_t>(r.pos * 7919 + r.max_tokens));
    // history = prompt + out[0 .. e): out[e] on is what the target will say.
    const size_t e = r.history.size() - prompt_.size();
    const auto truth = [&](size_t depth) { return out_[e + depth]; };
    const auto wrong = [&](size_t depth) {
      int t = static_cast<int>(rng() % static_cast<uint32_t>(vocab_));
      return t == truth(depth) ? (t + 1) % vocab_ : t;
    };
    Draft d;
    std::vector<int> depth;
    const auto add = [&](int token, int parent) {
      d.tokens.push_back(token);
      d.parents.push_back(parent);
      depth.push_back(parent < 0 ? 0 : depth[static_cast<size_t>(parent)] + 1);
      return static_cast<int>(d.tokens.size()) - 1;
    };
    const int budget = r.max_tokens;
    const int want = static_cast<int>(rng() % static_cast<uint32_t>(budget + 1));
    int node = -1, placed = 0;
    while (static_cast<int>(d.tokens.size()) < budget) {
      // A wrong sibling first now and then, so the true child is not always the first.
      const size_t at = static_cast<size_t>(node < 0 ? 0 : depth[static_cast<size_t>(node)] + 1);
      if (placed < want && e + at < out_.size() && rng() % 3 != 0) {
        node = add(truth(at), node);
        ++placed;
      } else {
        // A wrong token under a random node of the true path (never its true child's token).
        const int parent = static_cast<int>(rng() % static_cast<uint32_t>(placed + 1)) - 1;
        int p = node;
        for (int up = placed - 1; up > parent; --up) p = d.parents[static_cast<size_t>(p)];
        const size_t dp = static_cast<size_t>(p < 0 ? 0 : depth[static_cast<size_t>(p)] + 1);
        if (e + dp >= out_.size()) break;
        add(wrong(dp), p);
      }
    }
    expected_ += placed;
    nodes_ += static_cast<long>(d.tokens.size());
    return d;
  }
  void Observe(int, const Draft&, std::span<const int> path) override {
    accepted_ += static_cast<long>(path.size());
  }
  long expected_ = 0, accepted_ = 0, nodes_ = 0;

 private:
  std::vector<int> prompt_, out_;
  int vocab_;
};

// Generates into `cache` (default: a fresh one with the smallest headroom a round fits in, which
// exercises the ring's rollback), stopping at `stop` when it is not -1.
SpecResult Decode(Gemma4Model& m, Drafter* d, std::span<const int> prompt, int n, int k,
                  SamplingParams sp = {}, int stop = -1, KvCache* borrowed = nullptr) {
  ThreadPool pool(2);
  std::unique_ptr<KvCache> own = borrowed ? nullptr : m.NewCache(1200, k + 1);
  KvCache* cache = borrowed ? borrowed : own.get();
  SeqOptions o;
  o.base.max_new_tokens = n;
  o.base.sampling = sp;
  if (stop >= 0) o.base.stop_ids = {stop};
  o.draft_max = k;
  Result<SpecResult> r = d ? GenerateSpeculative(m, *d, pool, *cache, prompt, o, nullptr)
                           : GeneratePlain(m, pool, *cache, prompt, o.base, nullptr);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : SpecResult{};
}

class TreeEqualsPlain : public ::testing::TestWithParam<std::string> {};

// Trees of every shape (the true path at any sibling and depth, wrong branches beside it), with
// the smallest sliding-window headroom a tree fits in: the output is plain decoding's, and the
// target accepts exactly the true path each time.
TEST_P(TreeEqualsPlain, GreedyWithOracleTreesAtManySizes) {
  auto loaded = Gemma4Model::Load(test::MakePreset(GetParam()));
  ASSERT_TRUE(loaded.ok());
  Gemma4Model& m = **loaded;
  const std::vector<int> prompt = RandomIds(40, m.config().vocab_size, 3);
  const SpecResult plain = Decode(m, nullptr, prompt, 150, 0);
  ASSERT_EQ(plain.gen.ids.size(), 150u);
  for (int k : {1, 2, 5, 12}) {
    OracleTreeDrafter oracle(prompt, plain.gen.ids, m.config().vocab_size);
    const SpecResult t = Decode(m, &oracle, prompt, 150, k);
    ASSERT_EQ(t.gen.ids, plain.gen.ids) << "K=" << k;
    EXPECT_EQ(oracle.accepted_, oracle.expected_) << "K=" << k;
    EXPECT_EQ(t.spec.accepted, oracle.accepted_) << "K=" << k;
    EXPECT_GT(t.spec.accepted, 0) << "K=" << k;
    EXPECT_EQ(t.spec.tree_rounds, t.spec.draft_rounds) << "K=" << k;
    EXPECT_EQ(t.spec.drafted, oracle.nodes_) << "K=" << k;
    EXPECT_LT(t.spec.target_forwards, 150) << "K=" << k;
  }
  // A stop token the target emits inside an accepted path: the output ends there as plain
  // decoding's does, and the cache holds exactly the rows plain decoding's holds (no row of
  // another branch): a further step on each gives the same logits.
  const int stop = plain.gen.ids[90];
  ThreadPool pool(1);
  auto plain_cache = m.NewCache(1200, 13);
  const SpecResult want = Decode(m, nullptr, prompt, 150, 0, {}, stop, plain_cache.get());
  ASSERT_EQ(want.gen.stop, StopReason::kStopToken);
  bool inside = false;
  for (int k : {5, 12}) {
    OracleTreeDrafter oracle(prompt, plain.gen.ids, m.config().vocab_size);
    auto cache = m.NewCache(1200, 13);
    const SpecResult t = Decode(m, &oracle, prompt, 150, k, {}, stop, cache.get());
    ASSERT_EQ(t.gen.ids, want.gen.ids) << "K=" << k;
    ASSERT_EQ(cache->length(), plain_cache->length()) << "K=" << k;
    const std::vector<int> next = RandomIds(2, m.config().vocab_size, 31);
    auto copy = m.NewCache(1200, 13);
    ASSERT_TRUE(copy->LoadPrefix(plain_cache->SavePrefix(), plain_cache->length()));
    ASSERT_EQ(Forward(m, pool, *cache, next).logits, Forward(m, pool, *copy, next).logits);
    inside |= t.spec.accepted > 0 && t.gen.ids.size() < 150;
  }
  EXPECT_TRUE(inside);
}

// Sequences drafting chains, trees and nothing share the engine's passes: each gets plain
// decoding's output alone.
TEST(Tree, AGreedyBatchOfChainsTreesAndPlainGetsEachItsPlainOutput) {
  test::LoadedPair f = test::LoadPair("e2b-tiny", false);
  const int V = f.target->config().vocab_size;
  MtpDrafter chain(*f.assistant);
  MtpTreeDrafter tree(*f.assistant, {.width = 3});
  ThreadPool pool(2);
  BatchEngine engine(*f.target, &chain, pool, {.max_running = 4, .context = 256});
  std::vector<std::vector<int>> prompts, out(4);
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(RandomIds(12 + 7 * i, V, 50 + static_cast<uint32_t>(i)));
    SeqOptions o;
    o.base.max_new_tokens = 60;
    o.draft_max = i == 3 ? 0 : 2 + 2 * i;
    o.drafter = i % 2 == 1 ? &tree : nullptr;  // chain, tree, chain, plain
    ASSERT_TRUE(engine
                    .Add(prompts.back(), o, nullptr,
                         [&out, i](const SpecResult& r, const Status& s) {
                           EXPECT_TRUE(s.ok()) << s.message();
                           out[static_cast<size_t>(i)] = r.gen.ids;
                         })
                    .ok());
  }
  while (!engine.idle()) engine.Step();
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(out[static_cast<size_t>(i)], Decode(*f.target, nullptr, prompts[i], 60, 0).gen.ids)
        << "sequence " << i;
}

// The MTP assistant's trees: greedy output equals plain decoding at every width and size; a
// width-1 tree is the assistant's chain.
TEST_P(TreeEqualsPlain, GreedyWithTheAssistantsTrees) {
  for (const bool centroid : {false, true}) {
    if (centroid && GetParam() != "e2b-tiny") continue;  // the centroid head: E2B/E4B only
    test::LoadedPair f = test::LoadPair(GetParam(), centroid);
    const std::vector<int> prompt = RandomIds(30, f.target->config().vocab_size, 8);
    const SpecResult plain = Decode(*f.target, nullptr, prompt, 80, 0);
    for (const bool by_cost : {false, true}) {
      for (int width : {1, 2, 3}) {
        for (int k : {1, 4, 8}) {
          MtpTreeDrafter tree(*f.assistant, {.width = width, .depth = 0, .by_cost = by_cost});
          const SpecResult t = Decode(*f.target, &tree, prompt, 80, k);
          ASSERT_EQ(t.gen.ids, plain.gen.ids) << "width " << width << " K=" << k;
          EXPECT_GT(t.spec.drafted, 0);
        }
      }
    }
    // Width 1: the chain MtpDrafter drafts, as a tree.
    ThreadPool pool(1);
    auto cache = f.target->NewCache(64);
    ForwardOutput out;
    ASSERT_TRUE(f.target->Forward({.ids = prompt, .cache = cache.get()}, pool, &out).ok());
    const int H = f.target->config().hidden_size;
    DraftRequest req;
    req.token = 5;
    req.hidden = std::span<const float>(out.hidden).last(static_cast<size_t>(H));
    req.pos = static_cast<int>(prompt.size());
    req.cache = cache.get();
    req.max_tokens = 6;
    MtpDrafter chain(*f.assistant);
    MtpTreeDrafter one(*f.assistant, {.width = 1, .depth = 0, .by_cost = false});
    const Draft c = chain.Propose(req, pool), t = one.Propose(req, pool);
    EXPECT_EQ(t.tokens, c.tokens);
    EXPECT_EQ(t.parents, (std::vector<int>{-1, 0, 1, 2, 3, 4}));
    // Width 3: at most max_tokens distinct-sibling nodes, parents first.
    MtpTreeDrafter three(*f.assistant, {.width = 3, .depth = 0, .by_cost = false});
    const Draft w = three.Propose(req, pool);
    EXPECT_EQ(w.tokens.size(), 6u);
    for (size_t i = 0; i < w.tokens.size(); ++i) {
      EXPECT_LT(w.parents[i], static_cast<int>(i));
      for (size_t j = 0; j < i; ++j) {
        EXPECT_FALSE(w.parents[j] == w.parents[i] && w.tokens[j] == w.tokens[i]) << i;
      }
    }
    EXPECT_EQ(w.tokens[0], c.tokens[0]);  // the assistant's first choice ranks first
    EXPECT_GT(std::count(w.parents.begin(), w.parents.end(), -1), 1);  // and has siblings
    // Sized by cost: where rows and steps cost nothing, the whole tree; where each row costs a
    // pass of its own, only the best node (this random assistant's guesses are long shots).
    PassCosts free_rows, dear_rows;
    for (int rows = 1; rows <= 8; ++rows) {
      free_rows.RecordPass(rows, 1.0);
      dear_rows.RecordPass(rows, rows);
    }
    free_rows.RecordDraft(1, 0.0);
    dear_rows.RecordDraft(1, 0.0);
    req.round.costs = &free_rows;
    MtpTreeDrafter sized(*f.assistant, {.width = 3, .depth = 0, .by_cost = true});
    EXPECT_EQ(sized.Propose(req, pool).tokens, w.tokens);
    req.round.costs = &dear_rows;
    const Draft one_node = sized.Propose(req, pool);
    EXPECT_EQ(one_node.tokens, std::vector<int>{w.tokens[0]});
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, TreeEqualsPlain,
                         ::testing::Values("e2b-tiny", "26b-a4b-tiny", "31b-tiny"),
                         [](const auto& i) { return test::ParamName(i.param); });

TEST(Tree, ASeededSampledSequenceGetsTheSameTokensAloneAndBatched) {
  test::LoadedPair f = test::LoadPair("e2b-tiny", true);
  const std::vector<std::vector<int>> prompts = {
      {2, 461, 364, 446, 461, 364}, {2, 17, 33, 17, 33}, {2, 91, 250, 13, 91}};
  test::ExpectSeededSameAloneAndBatched(
      *f.target,
      {.make_drafter =
           [&] { return std::make_unique<MtpTreeDrafter>(*f.assistant, TreeOptions{.width = 2}); },
       .prompts = prompts,
       .max_new_tokens = 50,
       .draft_max = 4});
}

// Two candidates from the target's own sampling support per round: two siblings, or a chain of
// two, chosen at random. The verifier must keep the target's law whichever candidate it takes.
class SupportTreeDrafter : public Drafter {
 public:
  explicit SupportTreeDrafter(Gemma4Model& target) : target_(target) {}
  Draft Propose(const DraftRequest& r, ThreadPool& pool) override {
    std::vector<int> ids(r.history.begin(), r.history.end());
    const auto pick = [&](const std::vector<int>& h, int avoid) {
      const TokenDistribution& s = Support(h, *r.sampling, pool);
      int t =
          s.probs[static_cast<size_t>(r.rng->Uniform() * s.probs.size()) % s.probs.size()].first;
      if (t == avoid && s.probs.size() > 1) t = s.probs[s.probs[0].first == t ? 1 : 0].first;
      return t;
    };
    Draft d;
    d.tokens.push_back(pick(ids, -1));
    d.parents.push_back(-1);
    if (r.max_tokens < 2) return d;
    if (r.rng->Uniform() < 0.5) {
      d.tokens.push_back(pick(ids, d.tokens[0]));  // a sibling
      d.parents.push_back(d.tokens[1] == d.tokens[0] ? 0 : -1);
    } else {
      ids.push_back(d.tokens[0]);
      d.tokens.push_back(pick(ids, -1));  // a child
      d.parents.push_back(0);
    }
    return d;
  }

 private:
  const TokenDistribution& Support(const std::vector<int>& ids, const SamplingParams& sp,
                                   ThreadPool& pool) {
    auto [it, fresh] = support_.try_emplace(ids);
    if (fresh) {
      const int vocab = target_.config().vocab_size;
      auto cache = target_.NewCache(static_cast<int>(ids.size()) + 1);
      ForwardOutput out;
      EXPECT_TRUE(target_.Forward({.ids = ids, .cache = cache.get()}, pool, &out).ok());
      it->second =
          TokenWeights(sp, out.logits.data() + out.logits.size() - vocab, vocab).ToDistribution();
    }
    return it->second;
  }
  Gemma4Model& target_;
  std::map<std::vector<int>, TokenDistribution> support_;
};

TEST(Tree, SampledOutputHasTheTargetDistribution) {
  test::LoadedPair f = test::LoadPair("e2b-tiny", true);
  const SamplingParams sp{.temperature = 1.0f, .top_k = 4};
  SupportTreeDrafter drafter(*f.target);
  const std::vector<int> prompt = {2, 461, 364, 446, 450};
  const int runs = test::LawRuns(1500);
  const test::SampledLaw law = test::CheckSampledLaw(*f.target, drafter, prompt, sp, runs, 91);
  EXPECT_EQ(law.outside_support, 0);
  if (test::kJudgeLaw) {
    EXPECT_LT(law.chi2, law.Bound()) << "dof " << law.dof;
  }
  EXPECT_GE(law.drafted, runs);
  EXPECT_GT(law.accepted, runs / 4);  // the candidates come from the support: often one is taken
}

}  // namespace
}  // namespace specula
