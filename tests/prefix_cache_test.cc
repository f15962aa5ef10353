// The prompt cache: a sequence resumed from an earlier one's keys and values computes exactly what
// a cold one computes (logits and hidden rows bit for bit, generated ids equal), sliding-window
// rings refuse a resume point whose keys they no longer hold, and the cache stays within its bytes.
#include "specula/spec/prefix_cache.h"

#include <gtest/gtest.h>

#include <cstring>

#include "specula/base/thread_pool.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/spec/batch_engine.h"
#include "specula/spec/mtp_drafter.h"
#include "test_util.h"

namespace specula {
namespace {

std::vector<int> Tokens(int n, int vocab, int seed) {
  std::vector<int> p = {2};
  for (int i = 1; i < n; ++i) p.push_back(3 + (seed * 7919 + i * 104729) % (vocab - 3));
  return p;
}

// Runs `ids` through `cache` in chunks of `chunk` rows; returns every row's logits and hidden.
ForwardOutput RunRows(const Gemma4Model& m, ThreadPool& pool, KvCache& cache,
                      std::span<const int> ids, int chunk) {
  ForwardOutput all;
  for (size_t at = 0; at < ids.size(); at += static_cast<size_t>(chunk)) {
    const size_t n = std::min(ids.size() - at, static_cast<size_t>(chunk));
    ForwardOutput out;
    EXPECT_TRUE(
        m.Forward({.ids = ids.subspan(at, n), .cache = &cache, .all_logits = true}, pool, &out)
            .ok());
    all.logits.insert(all.logits.end(), out.logits.begin(), out.logits.end());
    all.hidden.insert(all.hidden.end(), out.hidden.begin(), out.hidden.end());
  }
  return all;
}

class PrefixResume : public ::testing::TestWithParam<std::string> {};

TEST_P(PrefixResume, ResumedRowsEqualColdRowsBitForBit) {
  test::LoadedPair p = test::LoadPair(GetParam(), false);
  const Gemma4Model& m = *p.target;
  const int V = m.config().vocab_size, H = m.config().hidden_size;
  const int W = m.config().sliding_window;  // 16 in the tiny presets
  ThreadPool pool(2);
  const std::vector<int> first = Tokens(60, V, 1);
  // A small headroom makes the sliding rings wrap: they hold only the last W + 4 positions.
  auto source = m.NewCache(256, 4);
  RunRows(m, pool, *source, first, 7);
  const KvPrefix saved = source->SavePrefix();
  EXPECT_EQ(saved.length, 60);
  EXPECT_EQ(source->PrefixBytes(), saved.bytes());  // sized without the copy, wrapped rings too
  EXPECT_EQ(source->FirstResume(), saved.FirstResume());
  const bool sliding = m.config().LastKvOwner(AttnType::kSliding) >= 0;
  EXPECT_EQ(saved.FirstResume(), sliding ? 60 - (W + 4) + W - 1 : 1);
  for (int n : {60, saved.FirstResume(), saved.FirstResume() - 1}) {
    if (n < 1) continue;
    std::vector<int> second(first.begin(), first.begin() + n);
    const std::vector<int> more = Tokens(25, V, 2 + n);
    second.insert(second.end(), more.begin() + 1, more.end());
    auto resumed = m.NewCache(256);
    const bool loaded = resumed->LoadPrefix(saved, n);
    EXPECT_EQ(loaded, n >= saved.FirstResume()) << "n = " << n;
    if (!loaded) {
      EXPECT_EQ(resumed->length(), 0);
      continue;
    }
    auto cold = m.NewCache(256);
    const ForwardOutput want = RunRows(m, pool, *cold, second, 9);
    const ForwardOutput got =
        RunRows(m, pool, *resumed, std::span<const int>(second).subspan(static_cast<size_t>(n)), 5);
    const size_t rows = second.size() - static_cast<size_t>(n);
    ASSERT_EQ(got.logits.size(), rows * static_cast<size_t>(V));
    EXPECT_EQ(0, std::memcmp(got.logits.data(), want.logits.data() + static_cast<size_t>(n) * V,
                             got.logits.size() * sizeof(float)))
        << "n = " << n;
    EXPECT_EQ(0, std::memcmp(got.hidden.data(), want.hidden.data() + static_cast<size_t>(n) * H,
                             got.hidden.size() * sizeof(float)))
        << "n = " << n;
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, PrefixResume,
                         ::testing::Values("e2b-tiny", "31b-tiny", "26b-a4b-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

struct Turn {
  std::vector<int> ids;
  int cached = 0;
};

// Where a turn's prefix comes from: nowhere (each turn in a fresh engine, no prompt cache), the
// prompt cache (each turn in a fresh engine, sharing one PrefixCache), or the engine's idle slot
// (one engine for every turn, no prompt cache).
enum class Source { kCold, kPromptCache, kSlot };

// Runs prompts one after another; returns each one's ids and cached tokens.
std::vector<Turn> Converse(const test::LoadedPair& p, Source source,
                           const std::vector<std::vector<int>>& prompts, const SeqOptions& opt) {
  ThreadPool pool(2);
  MtpDrafter drafter(*p.assistant);
  PrefixCache cache(size_t{1} << 30);
  const BatchEngine::Options eo{.max_running = 2,
                                .context = 512,
                                .prefill_rows = 16,
                                .prefix_cache = source == Source::kPromptCache ? &cache : nullptr};
  std::unique_ptr<BatchEngine> engine;
  std::vector<Turn> turns;
  for (const std::vector<int>& prompt : prompts) {
    if (!engine || source != Source::kSlot) {
      engine = std::make_unique<BatchEngine>(*p.target, &drafter, pool, eo);
    }
    Turn t;
    Result<int> id = engine->Add(prompt, opt, nullptr, [&](const SpecResult& r, const Status& st) {
      EXPECT_TRUE(st.ok()) << st.message();
      t.ids = r.gen.ids;
      t.cached = r.gen.stats.cached_tokens;
      EXPECT_EQ(r.spec.prompt_cached, t.cached);
    });
    EXPECT_TRUE(id.ok());
    while (!engine->idle()) engine->Step();
    turns.push_back(t);
  }
  if (source == Source::kPromptCache) {
    EXPECT_GT(cache.bytes(), 0u);
  }
  return turns;
}

// Prompts of 40 and more tokens cross e2b-tiny's sliding window of 16, and turn 3 rolls a slot
// back over its whole answer.
TEST(PrefixCache, AConversationResumesEachTurnAndDecodesAsCold) {
  const test::LoadedPair p = test::LoadPair("e2b-tiny", true);
  const int V = p.target->config().vocab_size;
  ASSERT_LT(p.target->config().sliding_window, 40);
  for (const int draft_max : {0, 3}) {
    for (const bool sampled : {false, true}) {
      SeqOptions opt;
      opt.base.max_new_tokens = 30;
      opt.draft_max = draft_max;
      if (sampled) {
        opt.base.sampling.temperature = 0.9f;
        opt.base.sampling.seed = 11;
      }
      const std::string what =
          std::string(sampled ? "sampled" : "greedy") + ", draft_max " + std::to_string(draft_max);
      // Turn 1; turn 2 re-sends turn 1 and its answer, then new tokens; turn 3 regenerates turn 2.
      const std::vector<int> first = Tokens(40, V, 3);
      const std::vector<Turn> cold1 = Converse(p, Source::kCold, {first}, opt);
      std::vector<int> second = first;
      second.insert(second.end(), cold1[0].ids.begin(), cold1[0].ids.end());
      const std::vector<int> more = Tokens(12, V, 4);
      second.insert(second.end(), more.begin() + 1, more.end());
      const std::vector<std::vector<int>> prompts = {first, second, second};
      const std::vector<Turn> cold = Converse(p, Source::kCold, prompts, opt);
      for (const Source source : {Source::kPromptCache, Source::kSlot}) {
        const std::vector<Turn> warm = Converse(p, source, prompts, opt);
        const std::string where = what + (source == Source::kSlot ? ", slot" : ", prompt cache");
        for (size_t i = 0; i < prompts.size(); ++i) {
          EXPECT_EQ(cold[i].cached, 0);
          EXPECT_EQ(warm[i].ids, cold[i].ids) << "turn " << i << ", " << where;
        }
        EXPECT_EQ(warm[0].cached, 0);
        // Turn 1's cache ends at its last fed token: the answer's last token is computed again.
        EXPECT_EQ(warm[1].cached, static_cast<int>(first.size() + cold1[0].ids.size()) - 1)
            << where;
        EXPECT_EQ(warm[2].cached, static_cast<int>(second.size()) - 1) << where;  // all but one
      }
    }
  }
}

// One engine, two slots, no prompt cache: conversations A and B alternate and each resumes its
// own slot; a third takes the least recently used slot (A's), and A then starts cold. A slot
// whose ring no longer holds the resume point is not resumed.
TEST(PrefixCache, SlotsKeepTheirOwnConversationsAndRefuseWhatTheRingLost) {
  const test::LoadedPair p = test::LoadPair("e2b-tiny", true);
  const int V = p.target->config().vocab_size;
  ThreadPool pool(2);
  MtpDrafter drafter(*p.assistant);
  SeqOptions opt;
  opt.draft_max = 3;
  BatchEngine engine(*p.target, &drafter, pool,
                     {.max_running = 2, .context = 512, .prefill_rows = 16});
  const auto run = [&](BatchEngine& e, const std::vector<int>& prompt, int max_new) {
    SeqOptions o = opt;
    o.base.max_new_tokens = max_new;
    Turn t;
    Result<int> id = e.Add(prompt, o, nullptr, [&](const SpecResult& r, const Status& st) {
      EXPECT_TRUE(st.ok()) << st.message();
      t.ids = r.gen.ids;
      t.cached = r.gen.stats.cached_tokens;
    });
    EXPECT_TRUE(id.ok());
    while (!e.idle()) e.Step();
    return t;
  };
  const auto cold = [&](const std::vector<int>& prompt, int max_new) {
    BatchEngine fresh(*p.target, &drafter, pool, {.max_running = 1, .context = 512});
    return run(fresh, prompt, max_new).ids;
  };
  // The next turn: the prompt, its answer and new tokens.
  const auto next = [&](std::vector<int> prompt, const Turn& answer, int seed) {
    prompt.insert(prompt.end(), answer.ids.begin(), answer.ids.end());
    const std::vector<int> more = Tokens(6, V, seed);
    prompt.insert(prompt.end(), more.begin() + 1, more.end());
    return prompt;
  };
  const auto resumes_answer = [](const std::vector<int>& prompt, const Turn& t) {
    return static_cast<int>(prompt.size() + t.ids.size()) - 1;
  };
  const std::vector<int> a1 = Tokens(40, V, 3), b1 = Tokens(40, V, 5), c1 = Tokens(40, V, 7);
  const Turn ta1 = run(engine, a1, 20), tb1 = run(engine, b1, 20);
  const std::vector<int> a2 = next(a1, ta1, 11), b2 = next(b1, tb1, 12);
  const Turn ta2 = run(engine, a2, 20), tb2 = run(engine, b2, 20);
  EXPECT_EQ(ta2.cached, resumes_answer(a1, ta1));
  EXPECT_EQ(tb2.cached, resumes_answer(b1, tb1));
  const Turn tc1 = run(engine, c1, 20);  // both slots idle, A's used least recently: C takes it
  EXPECT_EQ(tc1.cached, 0);
  const std::vector<int> b3 = next(b2, tb2, 13), a3 = next(a2, ta2, 14);
  const Turn tb3 = run(engine, b3, 20), ta3 = run(engine, a3, 20);
  EXPECT_EQ(tb3.cached, resumes_answer(b2, tb2));
  EXPECT_LT(ta3.cached, static_cast<int>(a1.size()));  // C's slot shares at most a few tokens
  for (const auto& [prompt, t] :
       {std::pair{&a2, &ta2}, {&b2, &tb2}, {&c1, &tc1}, {&b3, &tb3}, {&a3, &ta3}}) {
    EXPECT_EQ(t->ids, cold(*prompt, 20)) << "prompt of " << prompt->size() << " tokens";
  }

  // A 40-token prompt answered in 200 tokens: the slot's sliding rings (window 16 + 64 rows of
  // headroom) hold positions 159 .. 238. Resuming at 140 would need keys from 125 on: refused,
  // computed cold; resuming at 220 is served.
  BatchEngine one(*p.target, &drafter, pool, {.max_running = 1, .context = 512});
  const std::vector<int> d1 = Tokens(40, V, 9);
  const Turn td1 = run(one, d1, 200);
  ASSERT_EQ(td1.ids.size(), 200u);
  const auto prefix = [&](size_t answer_tokens) {
    std::vector<int> prompt = d1;
    prompt.insert(prompt.end(), td1.ids.begin(),
                  td1.ids.begin() + static_cast<long>(answer_tokens));
    prompt.push_back(td1.ids[answer_tokens] == 1 ? 2 : 1);  // then a token of its own
    return prompt;
  };
  const std::vector<int> far = prefix(100), near = prefix(180);
  const Turn tfar = run(one, far, 8);
  EXPECT_EQ(tfar.cached, 0);
  EXPECT_EQ(tfar.ids, cold(far, 8));
  const Turn td2 = run(one, d1, 200);  // the slot again holds d1 and its whole answer
  EXPECT_EQ(td2.ids, td1.ids);
  const Turn tnear = run(one, near, 8);
  EXPECT_EQ(tnear.cached, 220);
  EXPECT_EQ(tnear.ids, cold(near, 8));
}

TEST(PrefixCache, StaysWithinItsBytesAndDropsWhatANewerEntryCovers) {
  const test::LoadedPair p = test::LoadPair("31b-tiny", false);  // no sliding layer among them
  const Gemma4Model& m = *p.target;
  const int V = m.config().vocab_size;
  ThreadPool pool(1);
  const std::vector<int> ids = Tokens(50, V, 5);
  auto c = m.NewCache(128);
  RunRows(m, pool, *c, std::span<const int>(ids).first(20), 20);
  const size_t one = c->SavePrefix().bytes();
  PrefixCache cache(4 * one);
  cache.Put(ids, *c);
  RunRows(m, pool, *c, std::span<const int>(ids).subspan(20, 10), 10);
  cache.Put(ids, *c);  // 30 positions of the same tokens: stands for the 20-position entry
  EXPECT_EQ(cache.entries(), 1u);
  for (int seed = 6; seed < 12; ++seed) {
    auto other = m.NewCache(128);
    const std::vector<int> t = Tokens(20, V, seed);
    RunRows(m, pool, *other, t, 20);
    cache.Put(t, *other);
    EXPECT_LE(cache.bytes(), 4 * one);
  }
  EXPECT_LE(cache.entries(), 4u);
  // The conversation's entry was used least recently: it went first, and only the first token,
  // which every prompt here shares, is found.
  auto fresh = m.NewCache(128);
  EXPECT_EQ(cache.Load(ids, 49, *fresh), 1);
  // The newest entry is there and resumes all but the last token.
  auto again = m.NewCache(128);
  EXPECT_EQ(cache.Load(Tokens(20, V, 11), 19, *again), 19);
  EXPECT_EQ(again->length(), 19);
  // Entries now: seeds 9-11 (a fourth would pass the budget by its ids). Seed 9's tokens again,
  // the least recently used (a repeated prompt answered in one token): still one entry of the same
  // size, now the most recently used, so the next newcomer evicts seed 10 instead.
  ASSERT_EQ(cache.entries(), 3u);
  const size_t bytes = cache.bytes();
  auto repeat = m.NewCache(128);
  RunRows(m, pool, *repeat, Tokens(20, V, 9), 20);
  cache.Put(Tokens(20, V, 9), *repeat);
  EXPECT_EQ(cache.bytes(), bytes);
  EXPECT_EQ(cache.entries(), 3u);
  auto newcomer = m.NewCache(128);
  RunRows(m, pool, *newcomer, Tokens(20, V, 12), 20);
  cache.Put(Tokens(20, V, 12), *newcomer);
  for (const auto& [seed, resumed] : {std::pair{9, 19}, {10, 1}, {11, 19}}) {
    auto c2 = m.NewCache(128);
    EXPECT_EQ(cache.Load(Tokens(20, V, seed), 19, *c2), resumed) << "seed " << seed;
  }
}

}  // namespace
}  // namespace specula
