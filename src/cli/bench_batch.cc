// `specula bench --batch`: continuous batching throughput, plain vs speculative, per batch size.
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>

#include "specula/base/sysinfo.h"
#include "specula/base/thread_pool.h"
#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/spec/batch_engine.h"
#include "specula/spec/draft_policy.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/spec/replay_drafter.h"
#include "src/cli/bench.h"
#include "src/cli/commands.h"
#include "src/cli/drafters.h"

namespace specula::cli {

Result<std::vector<int>> ParseList(const std::string& text, const std::string& flag, int lo,
                                   int hi) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const int v = std::stoi(item, &used);
      if (used != item.size() || v < lo || v > hi) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (...) {
      return Error(flag + ": '" + item + "' is not a value in [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "]");
    }
  }
  if (out.empty()) return Error(flag + ": empty list");
  return out;
}

MoeBytes MoeBytesOf(const Gemma4Model& target) {
  const double layers = static_cast<double>(target.LayerWeightBytes());
  return {.outside = static_cast<double>(target.DenseWeightBytes()) - layers,
          .per_layer = layers / target.config().num_layers,
          .per_expert = static_cast<double>(target.ExpertBytes())};
}

namespace {

// One batched run: every sequence decodes `base.max_new_tokens` tokens with draft length k (0 =
// plain). Aggregate decode tok/s counts the tokens generated after the last sequence's first token
// (when every prefill is done) over that time.
struct BatchRunResult {
  double tok_per_s = 0.0;
  long passes = 0;   // target passes once every sequence is decoding
  long experts = 0;  // distinct experts those passes ran (all layers)
  long tokens = 0;   // tokens those passes emitted
  // Of those passes' wall time, the shares inside target passes and drafter steps.
  double time_in_target = 0.0, time_in_drafter = 0.0;
  std::vector<std::vector<int>> outputs;
  SpecStats spec;  // summed over sequences
};

// What one batched run decodes: the prompts, each with draft length k (0 = plain) under
// `policy` (one policy per sequence, as the server gives each request its own).
struct BatchRun {
  const std::vector<std::vector<int>>& prompts;
  GenerateOptions base;
  int k = 0;
  std::string policy = "fixed";
  int context = 0;
};

Result<BatchRunResult> RunBatch(Gemma4Model& target, Drafter* drafter, ThreadPool& pool,
                                const BatchRun& run) {
  const std::vector<std::vector<int>>& prompts = run.prompts;
  const int B = static_cast<int>(prompts.size());
  const int context = run.context;
  std::vector<std::unique_ptr<DraftPolicy>> policies;
  for (int i = 0; i < B && run.k > 0; ++i) {
    Result<std::unique_ptr<DraftPolicy>> p = MakeDraftPolicy(run.policy, run.k);
    if (!p.ok()) return p.status();
    policies.push_back(std::move(*p));
  }
  BatchEngine engine(target, drafter, pool,
                     {.max_running = B, .context = context, .prefill_rows = 1 << 16});
  BatchRunResult res;
  res.outputs.resize(prompts.size());
  std::vector<SpecResult> done(prompts.size());
  std::vector<int> emitted(prompts.size(), 0);
  Status failure;  // the first sequence that failed
  int started = 0;
  long after = 0;  // tokens emitted once every sequence is decoding
  double t0 = 0.0;
  SpecStats at_t0;
  for (int i = 0; i < B; ++i) {
    Result<int> id = engine.Add(
        prompts[static_cast<size_t>(i)],
        {.base = run.base,
         .draft_max = run.k,
         .policy = run.k > 0 ? policies[static_cast<size_t>(i)].get() : nullptr},
        [&, i](int, TokenOrigin) {
          if (emitted[static_cast<size_t>(i)]++ == 0 && ++started == B) {
            t0 = NowSeconds();
            at_t0 = engine.counters();  // this pass is counted already: later ones all decode
            return;
          }
          if (started == B) ++after;
        },
        [&, i](const SpecResult& r, const Status& st) {
          done[static_cast<size_t>(i)] = r;
          if (!st.ok() && failure.ok()) failure = st;
        });
    if (!id.ok()) return id.status();
  }
  while (!engine.idle()) engine.Step();
  if (!failure.ok()) return failure;
  const double t1 = NowSeconds();
  res.tok_per_s = t1 > t0 ? static_cast<double>(after) / (t1 - t0) : 0.0;
  res.passes = engine.counters().target_forwards - at_t0.target_forwards;
  res.experts = engine.counters().experts_read - at_t0.experts_read;
  res.tokens = after;
  if (t1 > t0) {
    res.time_in_target = (engine.counters().forward_s - at_t0.forward_s) / (t1 - t0);
    res.time_in_drafter = (engine.counters().draft_s - at_t0.draft_s) / (t1 - t0);
  }
  for (int i = 0; i < B; ++i) {
    const SpecResult& r = done[static_cast<size_t>(i)];
    res.outputs[static_cast<size_t>(i)] = r.gen.ids;
    res.spec.Add(r.spec);
  }
  return res;
}

// B distinct sequences: the prompt with a different first token after BOS.
std::vector<std::vector<int>> DistinctPrompts(const BenchSetup& b, int B) {
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < B; ++i) {
    std::vector<int> p = b.prompt;
    p.insert(p.begin() + 1, 3 + 97 * i % (b.target.config().vocab_size - 3));
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// Replays each sequence's plain output (`ref`): the 100% acceptance ceiling.
void SetReplay(ReplayDrafter& replay, const std::vector<std::vector<int>>& prompts,
               const BatchRunResult& ref) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<int> seq = prompts[i];
    seq.insert(seq.end(), ref.outputs[i].begin(), ref.outputs[i].end());
    // Engine ids are 0..B-1 in a fresh engine.
    replay.SetSequence(static_cast<int>(i), std::move(seq));
  }
}

// One batch size over all reps.
struct BatchRuns {
  int batch = 0;
  std::vector<double> plain_tps;
  std::vector<std::vector<double>> spec_tps;  // per K
  BatchRunResult plain_last;                  // passes, experts, tokens of the last repetition
  std::vector<BatchRunResult> spec_last;      // per K
};

// The runs of one batch size: their prompts, and the reference output every greedy run must
// reproduce.
struct BatchRunInputs {
  const std::vector<std::vector<int>>& prompts;
  const std::vector<std::vector<int>>& reference;
  Drafter* drafter;
};

// One rep: plain, then each K.
Status RunBatchRep(const BenchSetup& b, const BatchRunInputs& in, BatchRuns& runs) {
  const BatchRun plain_run{.prompts = in.prompts, .base = b.base, .context = b.context};
  Result<BatchRunResult> p = RunBatch(b.target, nullptr, b.pool, plain_run);
  if (!p.ok()) return p.status();
  runs.plain_tps.push_back(p->tok_per_s);
  runs.plain_last = std::move(*p);
  for (size_t i = 0; i < b.ks.size(); ++i) {
    const BatchRun spec_run{.prompts = in.prompts,
                            .base = b.base,
                            .k = b.ks[i],
                            .policy = b.f.policy,
                            .context = b.context};
    Result<BatchRunResult> r = RunBatch(b.target, in.drafter, b.pool, spec_run);
    if (!r.ok()) return r.status();
    if (b.f.sampling.greedy() && r->outputs != in.reference) {
      return Error("batched speculative output differs from plain output (batch " +
                   std::to_string(runs.batch) + ", K=" + std::to_string(b.ks[i]) +
                   "): this is a bug");
    }
    runs.spec_tps[i].push_back(r->tok_per_s);
    runs.spec_last[i] = std::move(*r);
  }
  return OkStatus();
}

// A plain reference run, then the reps: plain and each K interleaved, so that a machine that slows
// down or speeds up during the run affects all of them alike.
Result<BatchRuns> MeasureBatch(const BenchSetup& b, int B) {
  const std::vector<std::vector<int>> prompts = DistinctPrompts(b, B);
  const BatchRun plain_run{.prompts = prompts, .base = b.base, .context = b.context};
  Result<BatchRunResult> ref = RunBatch(b.target, nullptr, b.pool, plain_run);
  if (!ref.ok()) return ref.status();
  ReplayDrafter replay({}, b.target.config().vocab_size);
  SetReplay(replay, prompts, *ref);
  DrafterFlags flags;
  flags.tree = b.f.tree;
  const Drafters drafters = MakeDrafters(b.f.drafter, b.assistant, flags);
  Drafter* d = b.f.drafter == "replay" ? &replay : drafters.get();
  BatchRuns runs;
  runs.batch = B;
  runs.spec_tps.resize(b.ks.size());
  runs.spec_last.resize(b.ks.size());
  const BatchRunInputs in{.prompts = prompts, .reference = ref->outputs, .drafter = d};
  for (int rep = 0; rep < b.f.reps; ++rep) {
    if (Status s = RunBatchRep(b, in, runs); !s.ok()) return s;
  }
  return runs;
}

// Mixture of experts: what the decode passes of a batched run read, and the bytes-model ceiling
// of a speculative run against plain decoding's; null throughout for a dense model.
class BatchExpertReads {
 public:
  BatchExpertReads(const Gemma4Model& target, const BatchRunResult& plain)
      : c_(target.config()), bytes_(MoeBytesOf(target)), plain_(plain) {}

  OJson PerLayer(const BatchRunResult& r) const {
    if (!c_.moe() || r.passes == 0) return nullptr;
    return static_cast<double>(r.experts) / static_cast<double>(r.passes) / c_.num_layers;
  }
  OJson PassGb(const BatchRunResult& r) const {
    if (!c_.moe() || r.passes == 0) return nullptr;
    return bytes_.PassBytes(PerLayer(r).get<double>(), c_.num_layers) / 1e9;
  }
  // At `layers` deep.
  OJson Ceiling(const BatchRunResult& r, int layers) const {
    if (!c_.moe() || r.passes == 0 || plain_.passes == 0 || plain_.tokens == 0 || layers <= 0)
      return nullptr;
    const double token_ratio =
        (static_cast<double>(r.tokens) / static_cast<double>(r.passes)) /
        (static_cast<double>(plain_.tokens) / static_cast<double>(plain_.passes));
    return bytes_.Ceiling(token_ratio, PerLayer(plain_).get<double>(), PerLayer(r).get<double>(),
                          layers);
  }

 private:
  const Gemma4Config& c_;
  MoeBytes bytes_;
  const BatchRunResult& plain_;
};

OJson PlainRow(const BatchRuns& runs, const BatchExpertReads& experts) {
  const BatchRunResult& last = runs.plain_last;
  return {{"mode", "plain"},
          {"drafter", nullptr},
          {"draft_max", nullptr},
          {"batch", runs.batch},
          {"decode_tok_per_s", Median(runs.plain_tps)},
          {"speedup", 1.0},
          {"acceptance_rate", nullptr},
          {"tokens_per_forward", 1.0},
          {"accepted_per_position", nullptr},
          {"prefill_tok_per_s", nullptr},
          {"peak_rss_mb", PeakRssMB()},
          {"roofline_fraction", nullptr},
          {"verify_cost_ratio", nullptr},
          {"experts_per_layer", experts.PerLayer(last)},
          {"pass_gb", experts.PassGb(last)},
          {"bytes_ceiling_speedup", nullptr},
          {"bytes_ceiling_speedup_extrapolated", nullptr},
          {"draft_step_cost_fraction", nullptr},
          {"time_in_target", last.time_in_target},
          {"time_in_drafter", 0.0},
          {"time_other", 1.0 - last.time_in_target}};
}

OJson SpecRow(const BenchSetup& b, const BatchRuns& runs, const BatchExpertReads& experts,
              size_t i) {
  const BatchRunResult& last = runs.spec_last[i];
  const SpecStats& stats = last.spec;
  const double tps = Median(runs.spec_tps[i]);
  return {{"mode", "spec"},
          {"drafter", b.f.drafter},
          {"draft_max", b.ks[i]},
          {"batch", runs.batch},
          {"decode_tok_per_s", tps},
          {"speedup", tps / Median(runs.plain_tps)},
          {"acceptance_rate", stats.acceptance_rate()},
          {"tokens_per_forward", stats.mean_tokens_per_round()},
          {"accepted_per_position", AcceptanceByPosition(stats)},
          {"prefill_tok_per_s", nullptr},
          {"peak_rss_mb", PeakRssMB()},
          {"roofline_fraction", nullptr},
          {"verify_cost_ratio", nullptr},
          {"experts_per_layer", experts.PerLayer(last)},
          {"pass_gb", experts.PassGb(last)},
          {"bytes_ceiling_speedup", experts.Ceiling(last, b.target.config().num_layers)},
          {"bytes_ceiling_speedup_extrapolated", experts.Ceiling(last, b.f.extrapolate_layers)},
          {"draft_step_cost_fraction", nullptr},
          {"time_in_target", last.time_in_target},
          {"time_in_drafter", last.time_in_drafter},
          {"time_other", 1.0 - last.time_in_target - last.time_in_drafter}};
}

// The last lines of the table: plain against the fastest K, per batch size.
std::string BestLine(const BenchSetup& b, const BatchRuns& runs) {
  size_t best = 0;
  for (size_t i = 0; i < b.ks.size(); ++i) {
    if (Median(runs.spec_tps[i]) > Median(runs.spec_tps[best])) best = i;
  }
  const double plain = Median(runs.plain_tps);
  const double spec = Median(runs.spec_tps[best]);
  char line[200];
  std::snprintf(line, sizeof(line),
                "batch %d: plain %.2f tok/s, best speculative K=%d %.2f tok/s (%.2fx)", runs.batch,
                plain, b.ks[best], spec, spec / plain);
  return line;
}

// Mixture of experts: distinct experts per layer per pass, GB per pass, bytes-model ceiling (and
// at --extrapolate-layers).
std::string MoeColumns(const OJson& r) {
  if (r["experts_per_layer"].is_null()) return std::string();
  char buf[96];
  std::snprintf(buf, sizeof buf, " %8.2f %6.2f", r["experts_per_layer"].get<double>(),
                r["pass_gb"].get<double>());
  std::string out = buf;
  for (const char* key : {"bytes_ceiling_speedup", "bytes_ceiling_speedup_extrapolated"}) {
    if (r[key].is_null()) continue;
    std::snprintf(buf, sizeof buf, " %7.2fx", r[key].get<double>());
    out += buf;
  }
  return out;
}

// The report without --json: a row per batch size and mode, then the best K of each batch size.
void PrintSweep(const BenchSetup& b, const OJson& results, const std::vector<std::string>& best) {
  const BenchFlags& f = b.f;
  const bool moe = b.target.config().moe();
  std::printf(
      "batch sweep: %s drafter, %s draft policy, %d tokens per sequence, %d reps, %s; aggregate "
      "decode tok/s over all sequences\n",
      f.drafter.c_str(), f.policy.c_str(), f.n, f.reps, DescribeSampling(f.sampling).c_str());
  std::string header = moe ? "  experts     GB  ceiling" : "";
  if (moe && f.extrapolate_layers > 0)
    header += " at " + std::to_string(f.extrapolate_layers) + "L";
  std::printf("%5s %-6s %3s %10s %8s %7s %7s %6s%s\n", "batch", "mode", "K", "tok/s", "speedup",
              "accept", "tok/fw", "other", header.c_str());
  for (const OJson& r : results) {
    std::printf("%5d %-6s %3s %10.2f %7.2fx %7s %7.2f %6.3f%s\n", r["batch"].get<int>(),
                r["mode"].get<std::string>().c_str(),
                r["draft_max"].is_null() ? "-" : std::to_string(r["draft_max"].get<int>()).c_str(),
                r["decode_tok_per_s"].get<double>(), r["speedup"].get<double>(),
                r["acceptance_rate"].is_null()
                    ? "-"
                    : std::to_string(r["acceptance_rate"].get<double>()).substr(0, 4).c_str(),
                r["tokens_per_forward"].get<double>(), r["time_other"].get<double>(),
                MoeColumns(r).c_str());
  }
  for (const std::string& l : best) std::printf("%s\n", l.c_str());
}

}  // namespace

int RunBatchSweep(const BenchSetup& b, const std::vector<int>& batches, OJson report) {
  OJson results = OJson::array();
  std::vector<std::string> best;
  for (int B : batches) {
    Result<BatchRuns> runs = MeasureBatch(b, B);
    if (!runs.ok()) return Fail(runs.status().message());
    const BatchExpertReads experts(b.target, runs->plain_last);
    results.push_back(PlainRow(*runs, experts));
    for (size_t i = 0; i < b.ks.size(); ++i) results.push_back(SpecRow(b, *runs, experts, i));
    best.push_back(BestLine(b, *runs));
  }
  report["results"] = results;
  if (b.f.json) {
    std::cout << report.dump() << std::endl;
    return 0;
  }
  PrintSweep(b, results, best);
  return 0;
}

}  // namespace specula::cli
