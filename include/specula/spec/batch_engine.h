// Continuous batching for plain and speculative decoding.
//
// A finished sequence's cache stays with the engine as an idle slot (at most max_running caches
// exist, busy or idle, as llama.cpp's server keeps its slots): a new sequence resumes in place the
// idle slot sharing the longest prefix with it, if that is at least half of what the slot holds,
// or else a longer prompt-cache copy; otherwise it gets a fresh cache, or once every slot exists
// the least recently used slot's memory.
//
// Each round builds ONE target forward from every running sequence: prompt chunks of sequences
// still in prefill (a shared row budget, so a long prompt never stalls the others), one row for
// plain decoders, and x + K drafts for speculative ones. Before it, the drafter runs one batched
// forward per draft step for all drafting sequences. After it, every sequence verifies its own
// rows (ragged acceptance), rolls back its own cache and emits its tokens. Sequences join and
// leave between rounds.
//
// A sequence's output does not depend on what else is in the batch: forward rows are
// batch-invariant bit for bit, and every sequence owns its sampler, policy and cache. So greedy
// output equals GeneratePlain's, and a seeded sampled sequence equals itself run alone.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <ostream>
#include <vector>

#include "specula/models/target_model.h"
#include "specula/spec/draft_policy.h"
#include "specula/spec/drafter.h"
#include "specula/spec/spec_stats.h"

namespace specula {

struct SeqOptions {
  GenerateOptions base;
  int draft_max = 0;              // 0: plain decoding; needs a drafter otherwise
  DraftPolicy* policy = nullptr;  // borrowed; nullptr: always draft_max
  std::ostream* trace = nullptr;  // one JSON line per verify round
  KvCache* cache = nullptr;       // borrowed, empty; nullptr: the engine allocates one
  Drafter* drafter = nullptr;     // borrowed; nullptr: the engine's
  bool resume = true;  // false: compute the whole prompt, resuming no slot or prompt-cache copy
};

// How a generated token came: the target's own choice (the first token after the prompt, every
// plain-decoding token, the token after each verify), or a draft token the target accepted.
enum class TokenOrigin : uint8_t { kTarget, kDraft };
using EmitCallback = std::function<void(int token, TokenOrigin origin)>;

// `status` is OK when the sequence stopped normally (stop token, length, context, cancellation);
// otherwise the model, drafter or cache failed for it and `result` holds what came before.
using DoneCallback = std::function<void(const SpecResult& result, const Status& status)>;

class PrefixCache;

class BatchEngine {
 public:
  struct Options {
    int max_running = 8;     // sequences decoding at once; later ones wait in a FIFO
    int context = 4096;      // positions per sequence (engine-allocated caches)
    int prefill_rows = 256;  // prompt rows per round, shared by all sequences in prefill
    // Borrowed: where sequences resume the longest prompt prefix seen before and leave their own
    // (at the prompt's end and when they finish). nullptr: every prompt is computed.
    PrefixCache* prefix_cache = nullptr;
  };

  BatchEngine(TargetModel& target, Drafter* drafter, ThreadPool& pool, const Options& options);
  ~BatchEngine();

  // Validates and queues a sequence (prompt ids in range and shorter than the context, sampling
  // settings, draft_max). on_token sees every generated id, and how it came, as it is decided;
  // on_done runs once
  // when the sequence finishes or is cancelled. Returns the sequence id.
  Result<int> Add(std::vector<int> prompt, const SeqOptions& options, EmitCallback on_token,
                  DoneCallback on_done);
  // Ends a sequence (may be called from its callbacks): no more tokens are emitted for it, and at
  // the next round its cache becomes an idle slot. Unknown or finished ids are ignored.
  void Cancel(int id);
  // One round. A failure ends only the sequences it concerns, through their on_done: when a batched
  // target or drafter pass fails, its sequences are run one by one so that the others go on.
  void Step();

  bool idle() const { return running_.empty() && waiting_.empty(); }
  int running() const { return static_cast<int>(running_.size()); }
  int waiting() const { return static_cast<int>(waiting_.size()); }
  const SpecStats& counters() const { return counters_; }

 private:
  struct Seq;  // one sequence's prompt, options, cache, sampler and progress

  struct Slot {  // a finished sequence's cache, kept for the next one
    std::unique_ptr<KvCache> cache;
    std::vector<int> ids;  // [cache->length()] the tokens it holds
  };

  void Admit();
  // Gives `s` a cache resumed at the longest prefix an idle slot or the prompt cache holds.
  void TakeCache(Seq& s);
  int SlotResume(const Slot& slot, const Seq& s, int max_length) const;
  void Finish(Seq& s);
  void Fail(Seq& s, const Status& status);
  void PlanPrefill();
  void DraftRound();
  void DraftWith(Drafter& drafter, std::span<const DraftRequest> requests,
                 std::span<Seq* const> drafting);
  Status Forward(std::span<Seq* const> seqs);
  // Adds the last target pass to `stats` as a decode pass of its scope.
  void CountDecodePass(SpecStats& stats) const;
  void ForwardAndSettle(const std::vector<Seq*>& seqs);
  void Settle(Seq& s, size_t index);
  void SettleVerify(Seq& s, const float* logits, const float* hidden);

  TargetModel& target_;
  Drafter* drafter_;
  ThreadPool& pool_;
  const Options options_;
  int next_id_ = 0;
  std::deque<std::unique_ptr<Seq>> waiting_;
  std::vector<std::unique_ptr<Seq>> running_;
  std::vector<Slot> idle_;  // least recently used first
  SpecStats counters_;      // since the engine started
  PassCosts costs_;
  // Reused across rounds: 16 rows of logits are 16 MiB, which a fresh buffer pays for again in
  // page faults and zeroing every round.
  BatchOutput out_;
  std::unique_ptr<PassScratch> scratch_;  // the target's pass buffers, this engine's own
  double last_pass_s_ = 0.0;              // the last target pass, in seconds
};

}  // namespace specula
