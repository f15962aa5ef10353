// Continuous batching: every sequence's output is what it gets alone, whatever runs beside it,
// joins or leaves (greedy: equal to plain decoding; seeded sampling: equal to the same sequence run
// alone, whose distribution spec_test checks), with chunked prefill, ragged acceptance, queueing
// beyond max_running and cancellation.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "fault_injection.h"
#include "specula/base/thread_pool.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/runtime/generate.h"
#include "specula/spec/batch_engine.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/spec/replay_drafter.h"
#include "test_util.h"

namespace specula {
namespace {

using test::LoadPair;
using Pair = test::LoadedPair;

std::vector<int> Prompt(int n, int vocab, int seed) {
  std::vector<int> p = {2};
  for (int i = 1; i < n; ++i) p.push_back(3 + (seed * 7919 + i * 104729) % (vocab - 3));
  return p;
}

std::vector<int> PlainIds(Gemma4Model& m, std::span<const int> prompt, int n) {
  ThreadPool pool(2);
  auto cache = m.NewCache(256);
  GenerateOptions o;
  o.max_new_tokens = n;
  Result<GenerateResult> r = test::ReferenceGeneratePlain(m, pool, *cache, prompt, o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r->ids : std::vector<int>{};
}

struct Job {
  std::vector<int> prompt;
  SeqOptions opt;
};

// Runs jobs through one engine; jobs[i] joins before round join_round[i]. Returns ids per job.
std::vector<std::vector<int>> RunBatch(Gemma4Model& m, Drafter* d, const std::vector<Job>& jobs,
                                       const std::vector<int>& join_round,
                                       BatchEngine::Options eo) {
  ThreadPool pool(2);
  BatchEngine engine(m, d, pool, eo);
  std::vector<std::vector<int>> streamed(jobs.size()), done(jobs.size());
  std::vector<int> done_calls(jobs.size(), 0);
  std::vector<long> drafted(jobs.size(), 0);  // tokens that came as accepted drafts
  std::vector<long> accepted(jobs.size(), 0);
  size_t next = 0;
  for (int round = 0; next < jobs.size() || !engine.idle(); ++round) {
    while (next < jobs.size() && join_round[next] <= round) {
      const size_t i = next++;
      Result<int> id = engine.Add(
          jobs[i].prompt, jobs[i].opt,
          [&, i](int t, TokenOrigin o) {
            streamed[i].push_back(t);
            drafted[i] += o == TokenOrigin::kDraft;
          },
          [&, i](const SpecResult& r, const Status& st) {
            EXPECT_TRUE(st.ok()) << st.message();
            done[i] = r.gen.ids;
            accepted[i] = r.spec.accepted;
            ++done_calls[i];
          });
      EXPECT_TRUE(id.ok()) << id.status().message();
    }
    engine.Step();
    EXPECT_LE(engine.running(), eo.max_running);
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(done_calls[i], 1) << "job " << i;
    EXPECT_EQ(streamed[i], done[i]) << "job " << i;
    // Every accepted draft token is emitted as one, except those after a stop inside the last
    // round's drafts.
    EXPECT_LE(drafted[i], accepted[i]) << "job " << i;
    EXPECT_GT(drafted[i], accepted[i] - std::max(1, jobs[i].opt.draft_max)) << "job " << i;
  }
  return done;
}

TEST(Batch, GreedyEverySequenceEqualsPlainDecoding) {
  for (const auto& [preset, centroid] :
       {std::pair<std::string, bool>{"e2b-tiny", true}, {"31b-tiny", false}}) {
    Pair p = LoadPair(preset, centroid);
    Gemma4Model& m = *p.target;
    const int V = m.config().vocab_size;
    MtpDrafter mtp(*p.assistant);
    // A replay drafter that is right 70% of the time per sequence: ragged acceptance every round.
    std::vector<Job> jobs;
    std::vector<std::vector<int>> expected;
    const int lengths[] = {5, 40, 3, 17, 60, 9, 1, 25};
    const int budgets[] = {48, 30, 64, 20, 40, 55, 35, 1};
    const int drafts[] = {3, 0, 4, 2, 6, 1, 3, 2};
    ReplayDrafter replay({}, V, 0.3, 7);
    for (int i = 0; i < 8; ++i) {
      Job j{Prompt(lengths[i], V, i + 1), {}};
      j.opt.base.max_new_tokens = budgets[i];
      j.opt.draft_max = drafts[i];
      expected.push_back(PlainIds(m, j.prompt, budgets[i]));
      std::vector<int> seq = j.prompt;
      seq.insert(seq.end(), expected.back().begin(), expected.back().end());
      replay.SetSequence(i, seq);
      jobs.push_back(std::move(j));
    }
    // 8 sequences, at most 3 running, 7 prompt rows per round; some join while others decode.
    const std::vector<int> join = {0, 0, 1, 1, 5, 9, 9, 20};
    const BatchEngine::Options eo{.max_running = 3, .context = 256, .prefill_rows = 7};
    for (Drafter* d : {static_cast<Drafter*>(&mtp), static_cast<Drafter*>(&replay)}) {
      const std::vector<std::vector<int>> got = RunBatch(m, d, jobs, join, eo);
      for (size_t i = 0; i < jobs.size(); ++i)
        EXPECT_EQ(got[i], expected[i]) << preset << " sequence " << i;
    }
  }
}

// A loaded model keeps no per-call state (each engine and drafter owns its pass buffers), so two
// engines on two threads share one target and one assistant and each gets what it gets alone.
TEST(Batch, TwoEnginesOnOneLoadedPairEachGetWhatTheyGetAlone) {
  Pair p = LoadPair("e2b-tiny", true);
  Gemma4Model& m = *p.target;
  const int V = m.config().vocab_size;
  std::vector<Job> greedy, sampled;
  for (int i = 0; i < 4; ++i) {
    Job g{Prompt(6 + 9 * i, V, 40 + i), {}};
    g.opt.base.max_new_tokens = 40;
    g.opt.draft_max = 1 + i;
    greedy.push_back(g);
    Job s{Prompt(30 - 7 * i, V, 50 + i), {}};
    s.opt.base.max_new_tokens = 40;
    s.opt.base.sampling.temperature = 0.9f;
    s.opt.base.sampling.seed = 7 + static_cast<uint64_t>(i);
    s.opt.draft_max = 3 - i % 2;
    sampled.push_back(s);
  }
  const std::vector<int> join = {0, 0, 3, 5};
  const BatchEngine::Options eo{.max_running = 2, .context = 256, .prefill_rows = 8};
  std::vector<std::vector<int>> alone[2];
  {
    MtpDrafter d(*p.assistant);
    alone[0] = RunBatch(m, &d, greedy, join, eo);
    alone[1] = RunBatch(m, &d, sampled, join, eo);
  }
  std::vector<std::vector<int>> together[2];
  std::thread other([&] {
    MtpDrafter d(*p.assistant);
    together[1] = RunBatch(m, &d, sampled, join, eo);
  });
  MtpDrafter d(*p.assistant);
  together[0] = RunBatch(m, &d, greedy, join, eo);
  other.join();
  for (int e = 0; e < 2; ++e) {
    for (size_t i = 0; i < greedy.size(); ++i) {
      EXPECT_FALSE(alone[e][i].empty());
      EXPECT_EQ(together[e][i], alone[e][i]) << "engine " << e << " sequence " << i;
    }
  }
  for (size_t i = 0; i < greedy.size(); ++i)
    EXPECT_EQ(alone[0][i], PlainIds(m, greedy[i].prompt, 40));
}

TEST(Batch, SeededSamplingEqualsTheSequenceAlone) {
  Pair p = LoadPair("e2b-tiny", true);
  Gemma4Model& m = *p.target;
  MtpDrafter mtp(*p.assistant);
  std::vector<Job> jobs;
  for (int i = 0; i < 5; ++i) {
    Job j{Prompt(4 + 5 * i, m.config().vocab_size, 10 + i), {}};
    j.opt.base.max_new_tokens = 30 + 3 * i;
    j.opt.base.sampling.temperature = 0.8f + 0.1f * static_cast<float>(i);
    j.opt.base.sampling.top_k = i == 2 ? 0 : 40;
    j.opt.base.sampling.top_p = i == 3 ? 0.9f : 1.0f;
    j.opt.base.sampling.seed = 100 + static_cast<uint64_t>(i);
    j.opt.draft_max = i % 3 + 1 - (i == 4 ? 2 : 0);  // 1, 2, 3, 1, 0 (plain)
    jobs.push_back(std::move(j));
  }
  const BatchEngine::Options eo{.max_running = 8, .context = 256, .prefill_rows = 9};
  const std::vector<std::vector<int>> together = RunBatch(m, &mtp, jobs, {0, 0, 2, 3, 3}, eo);
  std::set<std::vector<int>> distinct;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const std::vector<int> alone = RunBatch(m, &mtp, {jobs[i]}, {0}, eo)[0];
    EXPECT_EQ(together[i], alone) << "sequence " << i;
    distinct.insert(alone);
  }
  EXPECT_EQ(distinct.size(), jobs.size());
}

TEST(Batch, CancelFreesTheSequenceAndSparesTheOthers) {
  Pair p = LoadPair("e2b-tiny", true);
  Gemma4Model& m = *p.target;
  const int V = m.config().vocab_size;
  MtpDrafter mtp(*p.assistant);
  ThreadPool pool(2);
  BatchEngine engine(m, &mtp, pool, {.max_running = 2, .context = 256, .prefill_rows = 64});
  std::vector<int> a_ids, b_ids, c_ids;
  int a_done = 0, c_done = 0;
  int a_id = -1;
  SeqOptions o;
  o.base.max_new_tokens = 40;
  o.draft_max = 3;
  // a cancels itself from its token callback after 5 tokens (as a server does on a stop string).
  Result<int> a = engine.Add(
      Prompt(6, V, 1), o,
      [&](int t, TokenOrigin) {
        a_ids.push_back(t);
        if (a_ids.size() == 5) engine.Cancel(a_id);
      },
      [&](const SpecResult&, const Status&) { ++a_done; });
  ASSERT_TRUE(a.ok());
  a_id = *a;
  Result<int> b = engine.Add(
      Prompt(8, V, 2), o, [&](int t, TokenOrigin) { b_ids.push_back(t); }, nullptr);
  Result<int> c = engine.Add(
      Prompt(9, V, 3), o, [&](int t, TokenOrigin) { c_ids.push_back(t); },
      [&](const SpecResult&, const Status&) { ++c_done; });  // waits for a free slot
  ASSERT_TRUE(b.ok() && c.ok());
  engine.Cancel(12345);  // unknown ids are ignored
  int rounds = 0;
  while (!engine.idle() && rounds < 1000) {
    engine.Step();
    EXPECT_LE(engine.running(), 2);
    ++rounds;
  }
  EXPECT_EQ(a_ids.size(), 5u);
  EXPECT_EQ(a_done, 1);
  EXPECT_EQ(c_done, 1);
  EXPECT_EQ(b_ids, PlainIds(m, Prompt(8, V, 2), 40));
  EXPECT_EQ(c_ids, PlainIds(m, Prompt(9, V, 3), 40));
}

TEST(Batch, AddRejectsBadSequences) {
  Pair p = LoadPair("e2b-tiny", true);
  Gemma4Model& m = *p.target;
  ThreadPool pool(2);
  BatchEngine plain_only(m, nullptr, pool, {.max_running = 2, .context = 32, .prefill_rows = 8});
  SeqOptions o;
  EXPECT_FALSE(plain_only.Add({}, o, nullptr, nullptr).ok());  // empty prompt
  EXPECT_FALSE(
      plain_only.Add(std::vector<int>(32, 5), o, nullptr, nullptr).ok());  // fills the context
  EXPECT_FALSE(
      plain_only.Add({2, m.config().vocab_size}, o, nullptr, nullptr).ok());  // id out of range
  o.draft_max = 2;
  Result<int> r = plain_only.Add({2, 5}, o, nullptr, nullptr);  // no drafter
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("drafter"), std::string::npos);
  EXPECT_TRUE(plain_only.idle());
}

// ---- failures end only the sequences they concern

struct Ended {
  std::vector<int> ids;  // streamed
  Status status;
  int calls = 0;
};

// Runs the prompts in one engine to the end; every sequence shares every round.
std::vector<Ended> RunToEnd(TargetModel& target, Drafter* drafter,
                            const std::vector<std::vector<int>>& prompts,
                            const std::vector<int>& draft_max, int n) {
  ThreadPool pool(2);
  BatchEngine engine(
      target, drafter, pool,
      {.max_running = static_cast<int>(prompts.size()), .context = 256, .prefill_rows = 256});
  std::vector<Ended> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    SeqOptions o;
    o.base.max_new_tokens = n;
    o.draft_max = draft_max[i];
    Result<int> id = engine.Add(
        prompts[i], o, [&, i](int t, TokenOrigin) { out[i].ids.push_back(t); },
        [&, i](const SpecResult& r, const Status& st) {
          EXPECT_EQ(r.gen.ids, out[i].ids);
          out[i].status = st;
          ++out[i].calls;
        });
    EXPECT_TRUE(id.ok()) << id.status().message();
  }
  for (int round = 0; !engine.idle() && round < 10000; ++round) engine.Step();
  EXPECT_TRUE(engine.idle());
  return out;
}

// A prompt whose first token marks it for FaultyTarget (healthy prompts start with BOS = 2).
std::vector<int> Marked(std::vector<int> prompt) {
  prompt[0] = 7;
  return prompt;
}

TEST(BatchFaults, TargetFailureEndsOnlyTheSequenceAtFault) {
  Pair p = LoadPair("e2b-tiny", true);
  Gemma4Model& m = *p.target;
  const int V = m.config().vocab_size;
  MtpDrafter mtp(*p.assistant);
  const std::vector<int> a = Prompt(6, V, 1), b = Marked(Prompt(7, V, 2)), c = Prompt(9, V, 3);
  // b fails in decoding (its cache past the prompt), then in prefill (from position 0).
  for (int fail_from : {12, 0}) {
    test::FaultyTarget faulty(m, {{/*marker token*/ 7, fail_from}});
    const std::vector<Ended> r = RunToEnd(faulty, &mtp, {a, b, c}, {3, 3, 0}, 30);
    EXPECT_GT(faulty.failures.load(), 0);
    for (const Ended& e : r) EXPECT_EQ(e.calls, 1);
    EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
    EXPECT_TRUE(r[2].status.ok()) << r[2].status.message();
    EXPECT_EQ(r[0].ids, PlainIds(m, a, 30));
    EXPECT_EQ(r[2].ids, PlainIds(m, c, 30));
    ASSERT_FALSE(r[1].status.ok()) << "fail_from " << fail_from;
    EXPECT_NE(r[1].status.message().find("injected target failure"), std::string::npos);
    // What b emitted before it failed is what it would have emitted.
    const std::vector<int> b_plain = PlainIds(m, b, 30);
    ASSERT_LE(r[1].ids.size(), b_plain.size());
    EXPECT_TRUE(std::equal(r[1].ids.begin(), r[1].ids.end(), b_plain.begin()));
    EXPECT_EQ(r[1].ids.empty(), fail_from == 0);
  }
}

TEST(BatchFaults, DrafterFailureEndsOnlyTheSequenceAtFault) {
  Pair p = LoadPair("e2b-tiny", true);
  Gemma4Model& m = *p.target;
  const int V = m.config().vocab_size;
  MtpDrafter mtp(*p.assistant);
  test::FaultyDrafter faulty(mtp, /*failing_seqs=*/{1});  // engine ids follow Add order
  const std::vector<int> a = Prompt(6, V, 1), b = Prompt(7, V, 2), c = Prompt(9, V, 3);
  const std::vector<Ended> r = RunToEnd(m, &faulty, {a, b, c}, {3, 2, 4}, 30);
  EXPECT_TRUE(r[0].status.ok());
  EXPECT_TRUE(r[2].status.ok());
  EXPECT_EQ(r[0].ids, PlainIds(m, a, 30));
  EXPECT_EQ(r[2].ids, PlainIds(m, c, 30));
  ASSERT_FALSE(r[1].status.ok());
  EXPECT_NE(r[1].status.message().find("drafter"), std::string::npos);
  EXPECT_EQ(r[1].ids.size(), 1u);  // the first token comes from prefill, before any draft
}

TEST(BatchFaults, FailedRollbackEndsTheSequenceWithAnError) {
  Pair p = LoadPair("e2b-tiny", true);
  Gemma4Model& m = *p.target;
  const int V = m.config().vocab_size;
  MtpDrafter mtp(*p.assistant);
  // No sliding-window headroom: once the 16-slot ring wraps, rejecting a draft cannot be undone.
  test::FaultyTarget shallow(m, /*fail_from=*/{});
  shallow.set_rollback_headroom(0);
  const std::vector<int> a = Prompt(6, V, 1), b = Prompt(7, V, 2);
  const std::vector<Ended> r = RunToEnd(shallow, &mtp, {a, b}, {3, 0}, 60);
  ASSERT_FALSE(r[0].status.ok());
  EXPECT_NE(r[0].status.message().find("KV cache rollback"), std::string::npos);
  const std::vector<int> a_plain = PlainIds(m, a, 60);
  ASSERT_LT(r[0].ids.size(), a_plain.size());
  EXPECT_TRUE(std::equal(r[0].ids.begin(), r[0].ids.end(), a_plain.begin()));
  EXPECT_TRUE(r[1].status.ok());  // plain decoding never rolls back
  EXPECT_EQ(r[1].ids, PlainIds(m, b, 60));
}

}  // namespace
}  // namespace specula
