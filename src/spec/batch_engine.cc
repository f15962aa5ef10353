#include "specula/spec/batch_engine.h"

#include <algorithm>
#include <cassert>

#include "specula/base/json.h"
#include "specula/base/sysinfo.h"
#include "specula/base/thread_pool.h"
#include "specula/spec/prefix_cache.h"
#include "specula/spec/verifier.h"

namespace specula {

struct BatchEngine::Seq {
  int id = 0;
  std::vector<int> prompt;
  std::vector<int> history;  // the prompt, then every emitted token (what lookup drafters read)
  SeqOptions opt;
  EmitCallback on_token;
  DoneCallback on_done;
  std::unique_ptr<KvCache> own_cache;
  KvCache* cache = nullptr;
  std::unique_ptr<Sampler> sampler;
  SpecResult res;
  double t_start = 0.0, t_first = 0.0;
  bool cancelled = false;
  bool done = false;
  Status error;  // why the sequence failed (passed to on_done)

  // Prefill progress, then the decode state: positions 0..P-1 committed, x pending at P, h the
  // hidden row of P-1.
  size_t prefilled = 0;
  int P = 0;
  int x = 0;
  std::vector<float> h;

  // This round's rows.
  int first_row = 0;
  std::vector<int> rows;
  std::vector<int> row_parents;  // a tree draft's rows: -1 for x, then each draft's parent row
  Draft draft;

  bool in_prefill() const { return prefilled < prompt.size(); }
  Drafter* drafter(Drafter* engine_default) const {
    return opt.drafter != nullptr ? opt.drafter : engine_default;
  }

  // Emits one generated token; returns false once the sequence is finished.
  bool Emit(int t, TokenOrigin origin) {
    if (cancelled) return false;
    res.gen.ids.push_back(t);
    history.push_back(t);
    if (on_token) on_token(t, origin);
    const GenerateOptions& b = opt.base;
    if (IsStop(b.stop_ids, t)) {
      res.gen.stop = StopReason::kStopToken;
      done = true;
    } else if (static_cast<int>(res.gen.ids.size()) >= b.max_new_tokens) {
      res.gen.stop = StopReason::kLength;
      done = true;
    }
    return !done && !cancelled;
  }
};

BatchEngine::BatchEngine(TargetModel& target, Drafter* drafter, ThreadPool& pool,
                         const Options& options)
    : target_(target),
      drafter_(drafter),
      pool_(pool),
      options_(options),
      scratch_(target.NewScratch()) {}

BatchEngine::~BatchEngine() = default;

Result<int> BatchEngine::Add(std::vector<int> prompt, const SeqOptions& options,
                             EmitCallback on_token, DoneCallback on_done) {
  const GenerateOptions& base = options.base;
  const int context = options.cache ? options.cache->context() : options_.context;
  if (Status s = ValidatePrompt(prompt, target_.config().vocab_size, context); !s.ok()) return s;
  if (Status s = base.sampling.Validate(); !s.ok()) return s;
  if (base.max_new_tokens < 0) return Error("max_new_tokens: must be >= 0");
  if (options.draft_max < 0) return Error("draft_max: must be >= 0");
  if (options.draft_max > 0 && drafter_ == nullptr && options.drafter == nullptr)
    return Error("speculative decoding needs a drafter (-md)");
  if (options.cache && options.cache->length() != 0)
    return Error("a sequence needs an empty KV cache");
  auto s = std::make_unique<Seq>();
  s->id = next_id_++;
  s->prompt = std::move(prompt);
  s->opt = options;
  s->on_token = std::move(on_token);
  s->on_done = std::move(on_done);
  s->t_start = NowSeconds();
  s->res.gen.stats.prompt_tokens = static_cast<int>(s->prompt.size());
  const int id = s->id;
  waiting_.push_back(std::move(s));
  return id;
}

void BatchEngine::Cancel(int id) {
  for (auto& s : running_) {
    if (s->id == id) s->cancelled = true;
  }
  for (auto& s : waiting_) {
    if (s->id == id) s->cancelled = true;
  }
}

void BatchEngine::Finish(Seq& s) {
  if (options_.prefix_cache && s.cache && s.error.ok()) {
    std::vector<int> ids = s.prompt;
    ids.insert(ids.end(), s.res.gen.ids.begin(), s.res.gen.ids.end());
    options_.prefix_cache->Put(ids, *s.cache);
  }
  GenerateStats& st = s.res.gen.stats;
  st.generated_tokens = static_cast<int>(s.res.gen.ids.size());
  if (s.t_first > 0) st.decode_s = NowSeconds() - s.t_first;
  if (s.own_cache && s.error.ok()) {
    // Resumes read only ids' positions, so a cache holding more rows than tokens emitted is safe.
    const auto held =
        std::min(static_cast<long>(s.own_cache->length()), static_cast<long>(s.history.size()));
    idle_.push_back({.cache = std::move(s.own_cache),
                     .ids = std::vector<int>(s.history.begin(), s.history.begin() + held)});
  }
  s.own_cache.reset();
  if (Drafter* d = s.drafter(drafter_); d != nullptr) d->Release(s.id);
  if (s.on_done) s.on_done(s.res, s.error);
}

void BatchEngine::Fail(Seq& s, const Status& status) {
  s.error = status;
  s.done = true;
  Finish(s);
}

void BatchEngine::Admit() {
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_running) {
    std::unique_ptr<Seq> s = std::move(waiting_.front());
    waiting_.pop_front();
    if (s->cancelled || s->opt.base.max_new_tokens == 0) {
      Finish(*s);
      continue;
    }
    s->sampler = std::make_unique<Sampler>(s->opt.base.sampling, &pool_);
    s->history = s->prompt;
    TakeCache(*s);
    running_.push_back(std::move(s));
  }
}

// Where `s` could resume in `slot`'s cache: the prefix they share, at most `max_length` (see
// TakeCache), if the sliding rings still hold what a query there needs; 0 otherwise. A slot is
// taken only for at least half of what it holds: every prompt shares the chat template's first
// tokens with every slot, and a new conversation must not wipe another's slot for those
// (llama.cpp's slot similarity, 0.5).
int BatchEngine::SlotResume(const Slot& slot, const Seq& s, int max_length) const {
  if (slot.cache->headroom() < HeadroomFor(s.opt.draft_max)) return 0;
  const int n = std::min(static_cast<int>(CommonPrefix(slot.ids, s.prompt)), max_length);
  const bool most = 2 * static_cast<size_t>(n) >= slot.ids.size();
  return n > 0 && most && slot.cache->CheckRollback(n).ok() ? n : 0;
}

void BatchEngine::TakeCache(Seq& s) {
  // At least the prompt's last token is computed: the first generated token comes from its logits.
  const int max_length = s.opt.resume ? static_cast<int>(s.prompt.size()) - 1 : 0;
  int hit = 0;
  if (s.opt.cache) {
    s.cache = s.opt.cache;
    if (options_.prefix_cache) hit = options_.prefix_cache->Load(s.prompt, max_length, *s.cache);
  } else {
    // The idle slot sharing the longest prefix (the most recent of equals), unless the prompt
    // cache holds a longer one.
    int best = -1, best_n = 0;
    for (int i = 0; i < static_cast<int>(idle_.size()); ++i) {
      const int n = SlotResume(idle_[static_cast<size_t>(i)], s, max_length);
      if (n > 0 && n >= best_n) {
        best = i;
        best_n = n;
      }
    }
    const int copy_n =
        options_.prefix_cache ? options_.prefix_cache->Match(s.prompt, max_length) : 0;
    if (best >= 0 && best_n >= copy_n) {
      s.own_cache = std::move(idle_[static_cast<size_t>(best)].cache);
      idle_.erase(idle_.begin() + best);
      [[maybe_unused]] const Status truncated = s.own_cache->Truncate(best_n);
      assert(truncated.ok() && "SlotResume checked the rollback");
      hit = best_n;
    } else {
      // A fresh cache while fewer than max_running exist (idle slots keep their conversations);
      // then the memory of the least recently used slot with enough sliding-window headroom (it
      // lets a verify round be rolled back after the ring wrapped), or else the least recently
      // used slot is dropped for a fresh cache.
      const int headroom = HeadroomFor(s.opt.draft_max);
      const auto owned = std::count_if(running_.begin(), running_.end(),
                                       [](const auto& r) { return r->own_cache != nullptr; });
      if (!idle_.empty() &&
          static_cast<int>(owned + static_cast<long>(idle_.size())) >= options_.max_running) {
        auto victim = std::find_if(idle_.begin(), idle_.end(), [&](const Slot& slot) {
          return slot.cache->headroom() >= headroom;
        });
        if (victim != idle_.end()) {
          s.own_cache = std::move(victim->cache);
          s.own_cache->Clear();
        } else {
          victim = idle_.begin();
        }
        idle_.erase(victim);
      }
      if (!s.own_cache) s.own_cache = target_.NewCache(options_.context, headroom);
      if (options_.prefix_cache) {
        hit = options_.prefix_cache->Load(s.prompt, max_length, *s.own_cache);
      }
    }
    s.cache = s.own_cache.get();
  }
  s.prefilled = static_cast<size_t>(hit);
  s.res.gen.stats.cached_tokens = hit;
  s.res.spec.prompt_tokens = static_cast<long>(s.prompt.size());
  s.res.spec.prompt_cached = hit;
  counters_.prompt_tokens += static_cast<long>(s.prompt.size());
  counters_.prompt_cached += hit;
}

void BatchEngine::Step() {
  // Drop finished and cancelled sequences, then fill free slots from the queue.
  for (auto& s : running_) {
    if (s->cancelled && !s->done) {
      s->done = true;
      Finish(*s);
    }
  }
  std::erase_if(running_, [](const std::unique_ptr<Seq>& s) { return s->done; });
  Admit();
  if (running_.empty()) return;

  for (auto& s : running_) {
    s->rows.clear();
    s->row_parents.clear();
    s->draft = Draft{};
  }
  PlanPrefill();
  DraftRound();

  // One target forward for every sequence's rows: a prompt chunk, or x followed by its drafts.
  std::vector<Seq*> batch;
  for (auto& sp : running_) {
    Seq& s = *sp;
    if (s.done || (s.rows.empty() && s.in_prefill())) continue;  // no prefill budget this round
    if (!s.in_prefill()) {
      s.rows.assign(1, s.x);
      s.rows.insert(s.rows.end(), s.draft.tokens.begin(), s.draft.tokens.end());
      if (!s.draft.parents.empty()) {
        s.row_parents.assign(1, -1);
        for (int p : s.draft.parents) s.row_parents.push_back(p + 1);
      }
    }
    batch.push_back(&s);
  }
  if (!batch.empty()) ForwardAndSettle(batch);
}

// Prompt chunks for sequences still in prefill, from a row budget shared by all of them (so a long
// prompt never stalls the others).
void BatchEngine::PlanPrefill() {
  int prefill_left = std::max(1, options_.prefill_rows);
  for (auto& sp : running_) {
    Seq& s = *sp;
    if (!s.in_prefill()) continue;
    const size_t n =
        std::min<size_t>(static_cast<size_t>(prefill_left), s.prompt.size() - s.prefilled);
    prefill_left -= static_cast<int>(n);
    s.rows.assign(s.prompt.begin() + static_cast<long>(s.prefilled),
                  s.prompt.begin() + static_cast<long>(s.prefilled + n));
  }
}

// One batched drafter call for every decoding sequence that drafts this round.
void BatchEngine::DraftRound() {
  // A policy weighs its drafts against the rows the pass carries anyway: the prompt chunks, one
  // row per decoding sequence and the drafts chosen before its own.
  int planned = 0, decoding = 0;
  for (auto& sp : running_) {
    planned += static_cast<int>(sp->rows.size());
    decoding += !sp->in_prefill() && !sp->done;
  }
  std::vector<DraftRequest> requests;
  std::vector<Seq*> drafting;
  for (auto& sp : running_) {
    Seq& s = *sp;
    if (s.in_prefill()) continue;
    const GenerateOptions& base = s.opt.base;
    const RoundInfo round{
        .costs = &costs_, .other_rows = planned + decoding - 1, .other_sequences = decoding - 1};
    int k =
        s.opt.policy ? std::min(s.opt.policy->NextLength(round), s.opt.draft_max) : s.opt.draft_max;
    // No more drafts than the budget and the context allow.
    k = std::min({k, base.max_new_tokens - static_cast<int>(s.res.gen.ids.size()) - 1,
                  s.cache->context() - s.P - 1});
    if (k <= 0) continue;
    planned += k;
    requests.push_back({.token = s.x,
                        .hidden = s.h,
                        .pos = s.P,
                        .cache = s.cache,
                        .max_tokens = k,
                        .stop_ids = base.stop_ids,
                        .min_confidence = s.opt.policy ? s.opt.policy->MinConfidence() : 0.0f,
                        .sampling = &base.sampling,
                        .rng = s.sampler.get(),
                        .seq = s.id,
                        .history = s.history,
                        .round = round});
    drafting.push_back(&s);
  }
  // One batched call per drafter (requests may choose their own).
  std::vector<Drafter*> used;
  for (Seq* s : drafting) {
    if (std::find(used.begin(), used.end(), s->drafter(drafter_)) == used.end())
      used.push_back(s->drafter(drafter_));
  }
  for (Drafter* d : used) {
    std::vector<DraftRequest> group;
    std::vector<Seq*> seqs;
    for (size_t i = 0; i < drafting.size(); ++i) {
      if (drafting[i]->drafter(drafter_) != d) continue;
      group.push_back(requests[i]);
      seqs.push_back(drafting[i]);
    }
    DraftWith(*d, group, seqs);
  }
}

void BatchEngine::DraftWith(Drafter& drafter, std::span<const DraftRequest> requests,
                            std::span<Seq* const> drafting) {
  const double t0 = NowSeconds();
  Result<std::vector<Draft>> drafts = drafter.ProposeBatch(requests, pool_);
  if (drafts.ok()) {
    // The longest model draft: one drafter forward per step for all sequences (lookup drafts
    // cost no step, and must not make steps look free).
    size_t steps = 0;
    for (const Draft& d : *drafts) {
      const size_t own = d.steps >= 0                      ? static_cast<size_t>(d.steps)
                         : d.source == DraftSource::kModel ? d.tokens.size()
                                                           : 0;
      steps = std::max(steps, own);
    }
    const double seconds = NowSeconds() - t0;
    if (steps > 0) costs_.RecordDraft(static_cast<int>(steps), seconds);
    counters_.draft_s += seconds;
    for (size_t i = 0; i < drafting.size(); ++i) {
      drafting[i]->draft = std::move((*drafts)[i]);
      drafting[i]->res.spec.draft_s += seconds;
    }
    return;
  }
  if (requests.size() == 1) {
    Fail(*drafting[0], drafts.status().WithContext("drafter"));
    return;
  }
  // Find the sequences at fault: the others keep drafting as if nothing had happened.
  for (size_t i = 0; i < drafting.size(); ++i) {
    Result<std::vector<Draft>> one = drafter.ProposeBatch(requests.subspan(i, 1), pool_);
    if (one.ok()) {
      drafting[i]->draft = std::move((*one)[0]);
    } else {
      Fail(*drafting[i], one.status().WithContext("drafter"));
    }
  }
}

Status BatchEngine::Forward(std::span<Seq* const> seqs) {
  std::vector<BatchSeq> batch;
  for (Seq* s : seqs) {
    // Decoding rows all need logits; a prompt chunk needs its last row's only if it ends the
    // prompt.
    int logit_rows = static_cast<int>(s->rows.size());
    if (s->in_prefill()) logit_rows = s->prefilled + s->rows.size() == s->prompt.size() ? 1 : 0;
    batch.push_back(
        {.ids = s->rows, .cache = s->cache, .logit_rows = logit_rows, .parents = s->row_parents});
  }
  const double t0 = NowSeconds();
  Status st = target_.ForwardBatch(batch, pool_, *scratch_, &out_);
  if (st.ok()) {
    int rows = 0;
    for (const BatchSeq& b : batch) rows += static_cast<int>(b.ids.size());
    last_pass_s_ = NowSeconds() - t0;
    costs_.RecordPass(rows, last_pass_s_);
    ++counters_.target_forwards;
    if (std::any_of(seqs.begin(), seqs.end(), [](const Seq* s) { return !s->in_prefill(); }))
      CountDecodePass(counters_);
  }
  return st;
}

void BatchEngine::CountDecodePass(SpecStats& stats) const {
  ++stats.decode_forwards;
  stats.experts_read += out_.experts_read;
  stats.forward_s += last_pass_s_;
}

void BatchEngine::ForwardAndSettle(const std::vector<Seq*>& seqs) {
  if (Status st = Forward(seqs); st.ok() || seqs.size() == 1) {
    for (size_t i = 0; i < seqs.size(); ++i) {
      if (st.ok()) {
        Settle(*seqs[i], i);
      } else {
        Fail(*seqs[i], st);
      }
    }
    return;
  }
  // A failed pass changed no cache: run each sequence alone, so only the ones at fault end.
  for (Seq* s : seqs) {
    if (Status st = Forward({&s, 1}); st.ok()) {
      Settle(*s, 0);
    } else {
      Fail(*s, st);
    }
  }
}

// Sequence `index` of the last forward: finish a prompt chunk or verify the drafts, emit tokens.
void BatchEngine::Settle(Seq& s, size_t index) {
  const size_t V = static_cast<size_t>(target_.config().vocab_size);
  const size_t H = static_cast<size_t>(target_.config().hidden_size);
  ++s.res.spec.target_forwards;
  // (data() + offset: a sequence may have no logit rows, and the buffer may be empty)
  const float* logits = out_.logits.data() + static_cast<size_t>(out_.logit_offset[index]) * V;
  const float* hidden = out_.hidden.data() + static_cast<size_t>(out_.row_offset[index]) * H;
  const size_t before = s.res.gen.ids.size();
  if (s.in_prefill()) {
    s.prefilled += s.rows.size();
    if (s.in_prefill()) return;
    s.t_first = NowSeconds();
    s.res.gen.stats.prefill_s = s.t_first - s.t_start;
    if (options_.prefix_cache) options_.prefix_cache->Put(s.prompt, *s.cache);
    s.P = s.cache->length();
    s.x = s.sampler->Sample(logits, static_cast<int>(V));
    s.h.assign(hidden + (s.rows.size() - 1) * H, hidden + s.rows.size() * H);
    s.Emit(s.x, TokenOrigin::kTarget);
  } else {
    CountDecodePass(s.res.spec);
    SettleVerify(s, logits, hidden);
  }
  const long emitted = static_cast<long>(s.res.gen.ids.size() - before);
  s.res.spec.generated += emitted;
  counters_.generated += emitted;
  if (s.done) Finish(s);
}

// Accepts a prefix of the drafts (or a path of a draft tree), keeps only its rows in the cache and
// emits the accepted tokens and the target's own next token.
void BatchEngine::SettleVerify(Seq& s, const float* logits, const float* hidden) {
  const int V = target_.config().vocab_size;
  const size_t H = static_cast<size_t>(target_.config().hidden_size);
  const Draft& d = s.draft;
  const int K = static_cast<int>(d.tokens.size());
  std::vector<int> path;  // accepted drafts, root first
  int next_token = 0;
  if (!d.parents.empty()) {
    TreeOutcome t = VerifyTree(logits, V, d.tokens, d.parents, *s.sampler);
    path = std::move(t.path);
    next_token = t.next_token;
  } else {
    const VerifyOutcome v = s.opt.base.sampling.greedy()
                                ? VerifyGreedy(logits, V, d.tokens)
                                : VerifyRejection(logits, V, d.tokens, d.q, *s.sampler);
    for (int i = 0; i < v.accepted; ++i) path.push_back(i);
    next_token = v.next_token;
  }
  const int accepted = static_cast<int>(path.size());
  if (K > 0) {
    if (d.parents.empty()) {
      s.res.spec.Record(K, accepted);
      counters_.Record(K, accepted);
    } else {
      std::vector<int> depth(static_cast<size_t>(K));
      int deepest = 0;
      for (int i = 0; i < K; ++i) {
        const int p = d.parents[static_cast<size_t>(i)];
        depth[static_cast<size_t>(i)] = p < 0 ? 1 : depth[static_cast<size_t>(p)] + 1;
        deepest = std::max(deepest, depth[static_cast<size_t>(i)]);
      }
      s.res.spec.RecordTree(K, deepest, accepted);
      counters_.RecordTree(K, deepest, accepted);
    }
    const auto from_lookup = [&](int i) {
      return (d.sources.empty() ? d.source : d.sources[static_cast<size_t>(i)]) ==
             DraftSource::kLookup;
    };
    int lookup_drafted = 0, lookup_accepted = 0;
    for (int i = 0; i < K; ++i) lookup_drafted += from_lookup(i);
    for (int i : path) lookup_accepted += from_lookup(i);
    if (lookup_drafted > 0) {
      s.res.spec.RecordLookup(lookup_drafted, lookup_accepted);
      counters_.RecordLookup(lookup_drafted, lookup_accepted);
    }
    if (s.opt.policy && !d.own_length) s.opt.policy->Observe(K, accepted);
    s.drafter(drafter_)->Observe(s.id, d, path);
    if (s.opt.trace) {
      nlohmann::ordered_json line{{"pos", s.P}, {"drafted", d.tokens}};
      if (!d.parents.empty()) line["parents"] = d.parents;
      line["accepted"] = accepted;
      if (!d.parents.empty()) line["path"] = path;
      line["bonus"] = next_token;
      *s.opt.trace << line.dump() << "\n";
    }
  }
  // A stop id or the token budget may end the sequence inside the accepted drafts.
  int emitted = 0;
  bool live = true;
  while (live && emitted < accepted)
    live = s.Emit(d.tokens[static_cast<size_t>(path[static_cast<size_t>(emitted++)])],
                  TokenOrigin::kDraft);
  // Keep x_P and the drafts the sequence goes on from; drop the rest from every cache layer. A
  // finished sequence keeps no row for its last token, as plain decoding never feeds it: its cache
  // is what a prompt cache entry or a caller's borrowed cache should hold.
  std::vector<int> rows = {0};  // the kept rows of this pass, x_P first
  for (int i : path) rows.push_back(i + 1);
  rows.resize(static_cast<size_t>(live ? accepted + 1 : emitted));
  if (Status st = s.cache->KeepPath(s.P, rows); !st.ok()) {
    s.error = st.WithContext("KV cache rollback");
    s.done = true;
    return;
  }
  if (!live) return;
  const size_t last = static_cast<size_t>(rows.back());
  s.h.assign(hidden + last * H, hidden + (last + 1) * H);
  s.P += accepted + 1;
  s.x = next_token;
  live = s.Emit(s.x, TokenOrigin::kTarget);
  if (live && s.P >= s.cache->context()) {
    s.res.gen.stop = StopReason::kContext;
    s.done = true;
  }
}

}  // namespace specula
