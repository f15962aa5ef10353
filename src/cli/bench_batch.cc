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
        [&, i](int) {
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

}  // namespace

int RunBatchSweep(const BenchSetup& setup, const std::vector<int>& batches, OJson report) {
  const BenchFlags& f = setup.f;
  Gemma4Model& target = setup.target;
  ThreadPool& pool = setup.pool;
  const std::vector<int>& prompt = setup.prompt;
  const std::vector<int>& ks = setup.ks;
  const GenerateOptions& base = setup.base;
  const int context = setup.context;
  OJson results = OJson::array();
  std::vector<std::string> lines;
  const Gemma4Config& c = target.config();
  const bool moe = c.moe();
  const MoeBytes moe_bytes = MoeBytesOf(target);
  for (int B : batches) {
    // B distinct sequences: the prompt with a different first token after BOS.
    std::vector<std::vector<int>> prompts;
    for (int i = 0; i < B; ++i) {
      std::vector<int> p = prompt;
      p.insert(p.begin() + 1, 3 + 97 * i % (target.config().vocab_size - 3));
      prompts.push_back(std::move(p));
    }
    const BatchRun plain_run{.prompts = prompts, .base = base, .context = context};
    Result<BatchRunResult> ref = RunBatch(target, nullptr, pool, plain_run);
    if (!ref.ok()) return Fail(ref.status().message());
    ReplayDrafter replay({}, target.config().vocab_size);
    for (int i = 0; i < B; ++i) {
      std::vector<int> seq = prompts[static_cast<size_t>(i)];
      seq.insert(seq.end(), ref->outputs[static_cast<size_t>(i)].begin(),
                 ref->outputs[static_cast<size_t>(i)].end());
      replay.SetSequence(i, std::move(seq));  // engine ids are 0..B-1 in a fresh engine
    }
    std::optional<MtpDrafter> mtp;
    Drafter* d = &replay;
    if (f.drafter == "model") d = &mtp.emplace(*setup.assistant);
    std::vector<double> plain_tps;
    std::vector<std::vector<double>> spec_tps(ks.size());
    std::vector<SpecStats> stats(ks.size());
    BatchRunResult plain_last;  // passes, experts, tokens of the last repetition
    std::vector<BatchRunResult> spec_last(ks.size());
    for (int rep = 0; rep < f.reps; ++rep) {
      Result<BatchRunResult> p = RunBatch(target, nullptr, pool, plain_run);
      if (!p.ok()) return Fail(p.status().message());
      plain_tps.push_back(p->tok_per_s);
      plain_last = std::move(*p);
      for (size_t i = 0; i < ks.size(); ++i) {
        const BatchRun spec_run{
            .prompts = prompts, .base = base, .k = ks[i], .policy = f.policy, .context = context};
        Result<BatchRunResult> r = RunBatch(target, d, pool, spec_run);
        if (!r.ok()) return Fail(r.status().message());
        if (f.sampling.greedy() && r->outputs != ref->outputs) {
          return Fail("batched speculative output differs from plain output (batch " +
                      std::to_string(B) + ", K=" + std::to_string(ks[i]) + "): this is a bug");
        }
        spec_tps[i].push_back(r->tok_per_s);
        stats[i] = r->spec;
        spec_last[i] = std::move(*r);
      }
    }
    const double plain = Median(plain_tps);
    // Mixture of experts: what the decode passes read, and the bytes-model ceiling of each K.
    const auto experts_per_layer = [&](const BatchRunResult& r) -> OJson {
      if (!moe || r.passes == 0) return nullptr;
      return static_cast<double>(r.experts) / static_cast<double>(r.passes) / c.num_layers;
    };
    const auto pass_gb = [&](const BatchRunResult& r) -> OJson {
      if (!moe || r.passes == 0) return nullptr;
      return moe_bytes.PassBytes(experts_per_layer(r).get<double>(), c.num_layers) / 1e9;
    };
    const auto ceiling = [&](const BatchRunResult& r, int layers) -> OJson {
      if (!moe || r.passes == 0 || plain_last.passes == 0 || plain_last.tokens == 0 || layers <= 0)
        return nullptr;
      const double token_ratio =
          (static_cast<double>(r.tokens) / static_cast<double>(r.passes)) /
          (static_cast<double>(plain_last.tokens) / static_cast<double>(plain_last.passes));
      return moe_bytes.Ceiling(token_ratio, experts_per_layer(plain_last).get<double>(),
                               experts_per_layer(r).get<double>(), layers);
    };
    results.push_back({{"mode", "plain"},
                       {"drafter", nullptr},
                       {"draft_max", nullptr},
                       {"batch", B},
                       {"decode_tok_per_s", plain},
                       {"speedup", 1.0},
                       {"acceptance_rate", nullptr},
                       {"tokens_per_forward", 1.0},
                       {"accepted_per_position", nullptr},
                       {"prefill_tok_per_s", nullptr},
                       {"peak_rss_mb", PeakRssMB()},
                       {"roofline_fraction", nullptr},
                       {"verify_cost_ratio", nullptr},
                       {"experts_per_layer", experts_per_layer(plain_last)},
                       {"pass_gb", pass_gb(plain_last)},
                       {"bytes_ceiling_speedup", nullptr},
                       {"bytes_ceiling_speedup_extrapolated", nullptr},
                       {"draft_step_cost_fraction", nullptr},
                       {"time_in_target", plain_last.time_in_target},
                       {"time_in_drafter", 0.0},
                       {"time_other", 1.0 - plain_last.time_in_target}});
    size_t best = 0;
    for (size_t i = 0; i < ks.size(); ++i) {
      if (Median(spec_tps[i]) > Median(spec_tps[best])) best = i;
      results.push_back(
          {{"mode", "spec"},
           {"drafter", f.drafter},
           {"draft_max", ks[i]},
           {"batch", B},
           {"decode_tok_per_s", Median(spec_tps[i])},
           {"speedup", Median(spec_tps[i]) / plain},
           {"acceptance_rate", stats[i].acceptance_rate()},
           {"tokens_per_forward", stats[i].mean_tokens_per_round()},
           {"accepted_per_position", AcceptanceByPosition(stats[i])},
           {"prefill_tok_per_s", nullptr},
           {"peak_rss_mb", PeakRssMB()},
           {"roofline_fraction", nullptr},
           {"verify_cost_ratio", nullptr},
           {"experts_per_layer", experts_per_layer(spec_last[i])},
           {"pass_gb", pass_gb(spec_last[i])},
           {"bytes_ceiling_speedup", ceiling(spec_last[i], c.num_layers)},
           {"bytes_ceiling_speedup_extrapolated", ceiling(spec_last[i], f.extrapolate_layers)},
           {"draft_step_cost_fraction", nullptr},
           {"time_in_target", spec_last[i].time_in_target},
           {"time_in_drafter", spec_last[i].time_in_drafter},
           {"time_other", 1.0 - spec_last[i].time_in_target - spec_last[i].time_in_drafter}});
    }
    char line[200];
    std::snprintf(line, sizeof(line),
                  "batch %d: plain %.2f tok/s, best speculative K=%d %.2f tok/s (%.2fx)", B, plain,
                  ks[best], Median(spec_tps[best]), Median(spec_tps[best]) / plain);
    lines.push_back(line);
  }
  report["results"] = results;
  if (f.json) {
    std::cout << report.dump() << std::endl;
    return 0;
  }
  std::printf(
      "batch sweep: %s drafter, %s draft policy, %d tokens per sequence, %d reps, %s; aggregate "
      "decode tok/s over all sequences\n",
      f.drafter.c_str(), f.policy.c_str(), f.n, f.reps, DescribeSampling(f.sampling).c_str());
  // Mixture of experts: distinct experts per layer per pass, GB per pass, bytes-model ceiling (and
  // at --extrapolate-layers).
  const auto moe_columns = [&](const OJson& r) {
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
  };
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
                moe_columns(r).c_str());
  }
  for (const std::string& l : lines) std::printf("%s\n", l.c_str());
  return 0;
}

}  // namespace specula::cli
