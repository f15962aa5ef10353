// Token-tree verification: a tree pass against the chains of its paths (logits, hidden states and
// positions bit for bit), keeping one path of the cache across sliding-ring wraps, the tree
// verifier's walk, and lossless decoding with tree drafts (greedy output equal to plain decoding;
// sampled output with the target's distribution).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "specula/base/thread_pool.h"
#include "specula/models/gemma4.h"
#include "test_util.h"

namespace specula {
namespace {

std::vector<int> RandomIds(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> ids = {2};
  while (static_cast<int>(ids.size()) < n)
    ids.push_back(static_cast<int>(rng() % static_cast<uint32_t>(vocab)));
  return ids;
}

// Rows of a tree pass and their parents (-1: the cached prefix). Row 0 is the pending token.
struct TreeCase {
  std::vector<int> ids, parents;
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
    const std::vector<int> tree_ids = RandomIds(10, V, 4);
    // 0 <- 1 <- 3 <- 6 <- 9, 0 <- 2 <- 5, 1 <- 4 <- 7, 3 <- 8: siblings, uneven depths.
    const TreeCase tree{.ids = tree_ids, .parents = {-1, 0, 0, 1, 1, 2, 3, 4, 3, 6}};
    for (const int prompt_len : {5, 37}) {  // 37: the 16-token sliding ring has wrapped
      const std::vector<int> prompt = RandomIds(prompt_len, V, 9);
      auto cache = model.NewCache(96, 12);
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
        auto chain_cache = model.NewCache(96, 12);
        Forward(model, pool, *chain_cache, prompt);
        const ForwardOutput chain = Forward(model, pool, *chain_cache, ids);
        const size_t last = ids.size() - 1;
        ASSERT_EQ(0, std::memcmp(&out.logits[static_cast<size_t>(t * V)], &chain.logits[last * V],
                                 static_cast<size_t>(V) * sizeof(float)))
            << preset << " prompt " << prompt_len << " row " << t << " logits";
        ASSERT_EQ(0, std::memcmp(&out.hidden[static_cast<size_t>(t * H)], &chain.hidden[last * H],
                                 static_cast<size_t>(H) * sizeof(float)))
            << preset << " prompt " << prompt_len << " row " << t << " hidden";
        if (t != 9 && t != 5) continue;  // keep the deepest path of each branch, then step on
        auto kept = model.NewCache(96, 12);
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
        ASSERT_EQ(a.logits, b.logits) << preset << " prompt " << prompt_len << " after path " << t;
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
}

}  // namespace
}  // namespace specula
