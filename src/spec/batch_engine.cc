#include "specula/spec/batch_engine.h"

#include <algorithm>

#include "specula/base/json.h"
#include "specula/base/sysinfo.h"
#include "specula/base/thread_pool.h"
#include "specula/models/gemma4.h"
#include "specula/spec/verifier.h"

namespace specula {

struct BatchEngine::Seq {
  int id = 0;
  std::vector<int> prompt;
  SeqOptions opt;
  TokenCallback on_token;
  DoneCallback on_done;
  std::unique_ptr<KvCache> own_cache;
  KvCache* cache = nullptr;
  std::unique_ptr<Sampler> sampler;
  SpecResult res;
  double t_start = 0.0, t_first = 0.0;
  bool cancelled = false;
  bool done = false;

  // Prefill progress, then the decode state: positions 0..P-1 committed, x pending at P, h the
  // hidden row of P-1.
  size_t prefilled = 0;
  int P = 0;
  int x = 0;
  std::vector<float> h;

  // This round's rows.
  int first_row = 0;
  std::vector<int> rows;
  Draft draft;

  bool in_prefill() const { return prefilled < prompt.size(); }

  // Emits one generated token; returns false once the sequence is finished.
  bool Emit(int t) {
    if (cancelled) return false;
    res.gen.ids.push_back(t);
    if (on_token) on_token(t);
    const GenerateOptions& b = opt.base;
    if (std::find(b.stop_ids.begin(), b.stop_ids.end(), t) != b.stop_ids.end()) {
      res.gen.stop = StopReason::kStopToken;
      done = true;
    } else if (static_cast<int>(res.gen.ids.size()) >= b.max_new_tokens) {
      res.gen.stop = StopReason::kLength;
      done = true;
    }
    return !done && !cancelled;
  }
};

BatchEngine::BatchEngine(Gemma4Model& target, Drafter* drafter, ThreadPool& pool,
                         const Options& options)
    : target_(target), drafter_(drafter), pool_(pool), options_(options) {}

BatchEngine::~BatchEngine() = default;

Result<int> BatchEngine::Add(std::vector<int> prompt, const SeqOptions& options,
                             TokenCallback on_token, DoneCallback on_done) {
  const GenerateOptions& base = options.base;
  const int context = options.cache ? options.cache->context() : options_.context;
  if (Status s = ValidatePrompt(prompt, target_.config().vocab_size, context); !s.ok()) return s;
  if (Status s = base.sampling.Validate(); !s.ok()) return s;
  if (base.max_new_tokens < 0) return Error("-n/--n-predict: must be >= 0");
  if (options.draft_max < 0) return Error("--draft-max: must be >= 0");
  if (options.draft_max > 0 && drafter_ == nullptr)
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
  GenerateStats& st = s.res.gen.stats;
  st.generated_tokens = static_cast<int>(s.res.gen.ids.size());
  if (s.t_first > 0) st.decode_s = NowSeconds() - s.t_first;
  s.own_cache.reset();
  if (s.on_done) s.on_done(s.res);
}

void BatchEngine::Admit() {
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_running) {
    std::unique_ptr<Seq> s = std::move(waiting_.front());
    waiting_.pop_front();
    if (s->cancelled || s->opt.base.max_new_tokens == 0) {
      Finish(*s);
      continue;
    }
    if (s->opt.cache) {
      s->cache = s->opt.cache;
    } else {
      // Sliding-window headroom lets a verify round be rolled back after the ring wrapped.
      s->own_cache = target_.NewCache(options_.context, std::max(64, s->opt.draft_max + 1));
      s->cache = s->own_cache.get();
    }
    s->sampler = std::make_unique<Sampler>(s->opt.base.sampling);
    running_.push_back(std::move(s));
  }
}

Status BatchEngine::Step() {
  // Drop finished and cancelled sequences, then fill free slots from the queue.
  for (auto& s : running_) {
    if (s->cancelled && !s->done) {
      s->done = true;
      Finish(*s);
    }
  }
  std::erase_if(running_, [](const std::unique_ptr<Seq>& s) { return s->done; });
  Admit();
  if (running_.empty()) return OkStatus();

  // ---- plan the round: prompt chunks, then drafts for decoding sequences
  int prefill_left = std::max(1, options_.prefill_rows);
  std::vector<DraftRequest> requests;
  std::vector<Seq*> drafting;
  for (auto& sp : running_) {
    Seq& s = *sp;
    s.rows.clear();
    s.draft = Draft{};
    if (s.in_prefill()) {
      const size_t n =
          std::min<size_t>(static_cast<size_t>(prefill_left), s.prompt.size() - s.prefilled);
      prefill_left -= static_cast<int>(n);
      s.rows.assign(s.prompt.begin() + static_cast<long>(s.prefilled),
                    s.prompt.begin() + static_cast<long>(s.prefilled + n));
      continue;
    }
    const GenerateOptions& base = s.opt.base;
    int k = s.opt.policy ? std::min(s.opt.policy->NextLength(), s.opt.draft_max) : s.opt.draft_max;
    // No more drafts than the budget, the context and the sliding-window headroom allow.
    k = std::min({k, base.max_new_tokens - static_cast<int>(s.res.gen.ids.size()) - 1,
                  s.cache->context() - s.P - 1});
    if (k > 0) {
      requests.push_back({.token = s.x,
                          .hidden = s.h,
                          .pos = s.P,
                          .cache = s.cache,
                          .max_tokens = k,
                          .stop_ids = base.stop_ids,
                          .min_confidence = s.opt.policy ? s.opt.policy->MinConfidence() : 0.0f,
                          .sampling = &base.sampling,
                          .rng = s.sampler.get(),
                          .seq = s.id});
      drafting.push_back(&s);
    }
  }
  if (!requests.empty()) {
    std::vector<Draft> drafts = drafter_->ProposeBatch(requests, pool_);
    for (size_t i = 0; i < drafting.size(); ++i) drafting[i]->draft = std::move(drafts[i]);
  }

  // ---- one target forward for every sequence's rows
  std::vector<BatchSeq> batch;
  std::vector<Seq*> in_batch;
  for (auto& sp : running_) {
    Seq& s = *sp;
    if (s.rows.empty() && s.in_prefill()) continue;  // no prefill budget left this round
    int logit_rows = 0;
    if (s.in_prefill()) {
      logit_rows = s.prefilled + s.rows.size() == s.prompt.size() ? 1 : 0;
    } else {
      s.rows.assign(1, s.x);
      s.rows.insert(s.rows.end(), s.draft.tokens.begin(), s.draft.tokens.end());
      logit_rows = static_cast<int>(s.rows.size());
    }
    batch.push_back({.ids = s.rows, .cache = s.cache, .logit_rows = logit_rows});
    in_batch.push_back(&s);
  }
  BatchOutput& out = out_;
  if (Status st = target_.ForwardBatch(batch, pool_, &out); !st.ok()) {
    for (auto& s : running_) {
      s->done = true;
      Finish(*s);
    }
    running_.clear();
    return st;
  }
  ++counters_.target_forwards;

  // ---- per sequence: finish prefill or verify, roll back, emit
  const int V = target_.config().vocab_size, H = target_.config().hidden_size;
  for (size_t i = 0; i < in_batch.size(); ++i) {
    Seq& s = *in_batch[i];
    ++s.res.gen.stats.target_forwards;
    // (data() + offset: a sequence may have no logit rows, and the buffer may be empty)
    const float* logits =
        out.logits.data() + static_cast<size_t>(out.logit_offset[i]) * static_cast<size_t>(V);
    const float* hidden =
        out.hidden.data() + static_cast<size_t>(out.row_offset[i]) * static_cast<size_t>(H);
    const size_t before = s.res.gen.ids.size();
    if (s.in_prefill()) {
      s.prefilled += s.rows.size();
      if (s.in_prefill()) continue;
      s.t_first = NowSeconds();
      s.res.gen.stats.prefill_s = s.t_first - s.t_start;
      s.P = s.cache->length();
      s.x = s.sampler->Sample(logits, V);
      s.h.assign(hidden + (s.rows.size() - 1) * static_cast<size_t>(H),
                 hidden + s.rows.size() * static_cast<size_t>(H));
      s.Emit(s.x);
    } else {
      const Draft& d = s.draft;
      const int K = static_cast<int>(d.tokens.size());
      const VerifyOutcome v = s.opt.base.sampling.greedy()
                                  ? VerifyGreedy(logits, V, d.tokens)
                                  : VerifyRejection(logits, V, d.tokens, d.q, *s.sampler);
      if (K > 0) {
        s.res.spec.Record(K, v.accepted);
        if (counters_.accepted_per_position.size() < static_cast<size_t>(K)) {
          counters_.accepted_per_position.resize(static_cast<size_t>(K), 0);
        }
        for (int j = 0; j < v.accepted; ++j)
          counters_.accepted_per_position[static_cast<size_t>(j)]++;
        counters_.drafted += K;
        counters_.accepted += v.accepted;
        if (s.opt.policy) s.opt.policy->Observe(K, v.accepted);
        if (s.opt.trace) {
          *s.opt.trace << nlohmann::ordered_json{{"pos", s.P},
                                                 {"drafted", d.tokens},
                                                 {"accepted", v.accepted},
                                                 {"bonus", v.next_token}}
                              .dump()
                       << "\n";
        }
      }
      bool live = true;
      for (int j = 0; j < v.accepted && live; ++j) live = s.Emit(d.tokens[static_cast<size_t>(j)]);
      if (live) {
        // Keep x_P and the accepted drafts; drop the rejected rows from every cache layer.
        if (Status st = s.cache->Truncate(s.P + v.accepted + 1); !st.ok()) return st;
        s.h.assign(hidden + static_cast<size_t>(v.accepted) * static_cast<size_t>(H),
                   hidden + static_cast<size_t>(v.accepted + 1) * static_cast<size_t>(H));
        s.P += v.accepted + 1;
        s.x = v.next_token;
        live = s.Emit(s.x);
      }
      if (live && s.P >= s.cache->context()) {
        s.res.gen.stop = StopReason::kContext;
        s.done = true;
      }
    }
    counters_.generated += static_cast<long>(s.res.gen.ids.size() - before);
    if (s.done) Finish(s);
  }
  return OkStatus();
}

}  // namespace specula
