// `specula bench`: plain vs speculative decoding on the same prompt, interleaved over several reps,
// with the machine's measured bandwidth, the roofline fraction, the verify-cost ratio and the
// drafter-step cost. All ratios come from one run on one machine.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "specula/base/json.h"
#include "specula/base/sysinfo.h"
#include "specula/base/thread_pool.h"
#include "specula/kernels/kernels.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/runtime/generate.h"
#include "specula/spec/batch_engine.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/spec/replay_drafter.h"
#include "specula/spec/spec_loop.h"
#include "specula/tokenizer/tokenizer.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/cli/bench.h"
#include "src/cli/commands.h"

namespace specula::cli {
namespace {

constexpr char kDefaultPrompt[] =
    "Speculative decoding lets a small drafter propose several tokens that the large model then "
    "checks in a single forward pass. When the drafter is right, several tokens cost about as much "
    "as one; when it is wrong, nothing is lost but a little time. Write a short explanation of why "
    "this works so well on memory-bound hardware such as laptops and small servers.";

// Bandwidth is measured in a child process so its 1 GiB buffer does not count in our peak RSS.
double ChildBandwidth(int threads) {
  int fds[2];
  if (pipe(fds) != 0) return 0.0;
  const pid_t pid = fork();
  if (pid == 0) {
    ThreadPool pool(threads);
    const double gbs = MeasureReadBandwidthGBs(pool);
    (void)!write(fds[1], &gbs, sizeof(gbs));
    _exit(0);
  }
  double gbs = 0.0;
  (void)!read(fds[0], &gbs, sizeof(gbs));
  close(fds[0]);
  close(fds[1]);
  waitpid(pid, nullptr, 0);
  return gbs;
}

struct PassTime {
  double seconds = 0.0;  // median
  int experts_read = 0;  // mixture of experts: distinct experts the pass ran, all layers
};

// A forward of `rows` tokens of the reference continuation after what `cache` holds, rolled back
// each time (real tokens: with experts, which ones the rows reach depends on them).
PassTime TimePass(Gemma4Model& m, ThreadPool& pool, KvCache& cache,
                  const std::vector<int>& continuation, int rows, int reps) {
  const std::vector<int> ids(continuation.begin(), continuation.begin() + rows);
  std::vector<double> t;
  ForwardOutput out;
  const int base = cache.length();
  for (int r = 0; r < reps; ++r) {
    const double t0 = NowSeconds();
    (void)m.Forward({.ids = ids, .cache = &cache, .all_logits = rows > 1}, pool, &out);
    t.push_back(NowSeconds() - t0);
    (void)cache.Truncate(base);
  }
  return {.seconds = Median(t), .experts_read = out.experts_read};
}

// Speedup and acceptance against K, drawn by gnuplot (a text script, so the plot is reproducible
// from the data file left next to the PNG).
Status Plot(const OJson& report, const std::string& png) {
  const std::string data = png + ".dat", script = png + ".gp";
  {
    std::ofstream d(data);
    d << "# K speedup acceptance tokens_per_forward\n";
    for (const OJson& r : report["results"]) {
      if (r["mode"] != "spec") continue;
      d << r["draft_max"].get<int>() << " " << r["speedup"].get<double>() << " "
        << r["acceptance_rate"].get<double>() << " " << r["tokens_per_forward"].get<double>()
        << "\n";
    }
    std::ofstream g(script);
    char title[256];
    std::snprintf(title, sizeof(title), "%s, %s drafter, %d threads, %.1f GB/s",
                  report["model"]["dir"].get<std::string>().c_str(),
                  report["results"].back()["drafter"].get<std::string>().c_str(),
                  report["machine"]["threads"].get<int>(),
                  report["machine"]["bandwidth_gbs"].get<double>());
    g << "set terminal pngcairo size 900,520\nset output '" << png << "'\nset title '" << title
      << "' noenhanced\n"
      << "set xlabel 'draft length K'\nset ylabel 'speedup over plain decoding'\nset y2label "
         "'acceptance rate'\n"
      << "set y2range [0:1.05]\nset ytics nomirror\nset y2tics\nset grid\nset key top left\nset "
         "yrange [0:*]\n"
      << "plot '" << data << "' using 1:2 with linespoints lw 2 pt 7 title 'speedup', "
      << "'" << data
      << "' using 1:3 axes x1y2 with linespoints lw 2 pt 5 title 'acceptance', 1 with lines dt 2 "
         "title 'plain'\n";
  }
  const std::string cmd = "gnuplot '" + script + "' 2>&1";
  if (std::system(cmd.c_str()) != 0)
    return Error("--plot: gnuplot failed or is not installed (apt-get install gnuplot-nox)");
  return OkStatus();
}

int Run(const BenchFlags& f) {
  if (f.n < 2) return Fail("-n/--n-predict: must be >= 2 for a decode measurement");
  if (f.reps < 1 || f.reps > 100) return Fail("--reps: must be in [1, 100]");
  if (f.extrapolate_layers < 0 || f.extrapolate_layers > 1000)
    return Fail("--extrapolate-layers: must be in [0, 1000]");
  if (f.drafter != "model" && f.drafter != "replay")
    return Fail("--drafter: expected model or replay");
  if (f.drafter == "model" && f.draft.empty())
    return Fail("--drafter model: needs -md/--draft DIR (or use --drafter replay)");
  if (Status s = f.sampling.Validate(); !s.ok()) return Fail(s.message());
  Result<std::vector<int>> ks_list = ParseList(f.draft_max, "--draft-max", 1, 32);
  if (!ks_list.ok()) return Fail(ks_list.status().message());
  const std::vector<int> ks = *ks_list;
  std::vector<int> batches;
  if (!f.batch.empty()) {
    Result<std::vector<int>> b = ParseList(f.batch, "--batch", 1, 64);
    if (!b.ok()) return Fail(b.status().message());
    batches = *b;
  }
  Result<std::unique_ptr<Gemma4Model>> model = Gemma4Model::Load(f.model);
  if (!model.ok()) return Fail(model.status().message());
  Gemma4Model& target = **model;
  std::unique_ptr<Gemma4Assistant> assistant;
  if (!f.draft.empty()) {
    Result<std::unique_ptr<Gemma4Assistant>> a = Gemma4Assistant::Load(f.draft, target);
    if (!a.ok()) return Fail(a.status().message());
    assistant = std::move(*a);
  }
  Result<std::unique_ptr<Tokenizer>> tok = LoadCheckpointTokenizer(f.model);
  if (!tok.ok()) return Fail(tok.status().message());
  std::vector<int> prompt = {2};
  for (int id : (*tok)->Encode(f.prompt.empty() ? kDefaultPrompt : f.prompt)) prompt.push_back(id);
  if (Status s = ValidatePrompt(prompt, target.config().vocab_size, 4096); !s.ok())
    return Fail(s.message());

  const int threads = f.threads > 0 ? f.threads : ThreadPool::DefaultThreads();
  const double bandwidth = ChildBandwidth(threads);
  ThreadPool pool(threads);
  const double peak_gflops = MeasurePeakGflops(pool);
  // What every report starts with: the machine as measured, and the model.
  const Gemma4Config& c = target.config();
  OJson report = {{"machine",
                   {{"threads", threads},
                    {"bandwidth_gbs", bandwidth},
                    {"peak_gflops", peak_gflops},
                    {"kernels", BestKernels().target}}},
                  {"model",
                   {{"dir", f.model},
                    {"hidden_size", c.hidden_size},
                    {"layers", c.num_layers},
                    {"vocab_size", c.vocab_size},
                    {"prompt_tokens", prompt.size()},
                    {"generated_tokens", f.n},
                    {"reps", f.reps},
                    {"drafter_dir", f.draft}}},
                  {"sampling",
                   {{"temperature", f.sampling.temperature},
                    {"top_k", f.sampling.top_k},
                    {"top_p", f.sampling.top_p},
                    {"min_p", f.sampling.min_p},
                    {"seed", f.sampling.seed}}}};
  if (!batches.empty()) {
    return RunBatchSweep(f, target, assistant.get(), pool, prompt, ks, batches, report);
  }
  const int context = static_cast<int>(prompt.size()) + f.n + 64;
  const int max_k = *std::max_element(ks.begin(), ks.end());
  GenerateOptions base;
  base.max_new_tokens = f.n;  // no stop ids: every run decodes exactly n tokens
  base.sampling = f.sampling;

  // The reference output (the replay drafter replays it).
  std::vector<int> sequence;
  {
    auto cache = target.NewCache(context);
    Result<SpecResult> r = GeneratePlain(target, pool, *cache, prompt, base, nullptr);
    if (!r.ok()) return Fail(r.status().message());
    sequence = prompt;
    sequence.insert(sequence.end(), r->gen.ids.begin(), r->gen.ids.end());
  }
  std::vector<double> plain_tps, plain_prefill;
  std::vector<std::vector<double>> spec_tps(ks.size());
  std::vector<SpecStats> spec_stats(ks.size());
  std::vector<SpecStats> plain_gen(1), spec_gen(ks.size());  // the last rep's pass counts
  // Per K over all reps: decode seconds, and those inside target passes and drafter steps.
  struct TimeSplit {
    double decode = 0, forward = 0, draft = 0;
  };
  std::vector<TimeSplit> split(ks.size());
  for (int rep = 0; rep < f.reps; ++rep) {
    {
      auto cache = target.NewCache(context);
      Result<SpecResult> r = GeneratePlain(target, pool, *cache, prompt, base, nullptr);
      if (!r.ok()) return Fail(r.status().message());
      if (r->gen.ids !=
          std::vector<int>(sequence.begin() + static_cast<long>(prompt.size()), sequence.end())) {
        return Fail("internal: plain decoding is not deterministic");
      }
      plain_tps.push_back(r->gen.stats.decode_tok_per_s());
      plain_prefill.push_back(prompt.size() / r->gen.stats.prefill_s);
      plain_gen[0] = r->spec;
    }
    for (size_t i = 0; i < ks.size(); ++i) {
      auto cache = target.NewCache(context, max_k + 1);
      std::optional<MtpDrafter> mtp;
      std::optional<ReplayDrafter> replay;
      Drafter* d;
      if (f.drafter == "replay") {
        d = &replay.emplace(sequence, target.config().vocab_size);
      } else {
        d = &mtp.emplace(*assistant);
      }
      Result<std::unique_ptr<DraftPolicy>> policy = MakeDraftPolicy(f.policy, ks[i]);
      if (!policy.ok()) return Fail(policy.status().message());
      SpecOptions so{.base = base, .draft_max = ks[i], .policy = policy->get()};
      Result<SpecResult> r = GenerateSpeculative(target, *d, pool, *cache, prompt, so, nullptr);
      if (!r.ok()) return Fail(r.status().message());
      if (f.sampling.greedy() &&
          r->gen.ids != std::vector<int>(sequence.begin() + static_cast<long>(prompt.size()),
                                         sequence.end())) {
        return Fail("speculative output differs from plain output (K=" + std::to_string(ks[i]) +
                    "): this is a bug");
      }
      spec_tps[i].push_back(r->gen.stats.decode_tok_per_s());
      spec_stats[i] = r->spec;
      spec_gen[i] = r->spec;
      split[i].decode += r->gen.stats.decode_s;
      split[i].forward += r->spec.forward_s;
      split[i].draft += r->spec.draft_s;
    }
  }

  // Cost model measurements after a real prefix.
  auto cache = target.NewCache(context, max_k + 1);
  ForwardOutput out;
  (void)target.Forward({.ids = prompt, .cache = cache.get()}, pool, &out);
  const std::vector<int> continuation(sequence.begin() + static_cast<long>(prompt.size()),
                                      sequence.end());
  const double one_row = TimePass(target, pool, *cache, continuation, 1, 5).seconds;
  std::optional<double> draft_step;
  if (assistant) {
    DraftStepOutput step;
    std::unique_ptr<PassScratch> scratch = assistant->NewScratch();
    std::vector<float> h(out.hidden.end() - target.config().hidden_size, out.hidden.end());
    std::vector<double> t;
    for (int r = 0; r < 7; ++r) {
      const double t0 = NowSeconds();
      assistant->Step({.token = 3, .h_in = h.data(), .pos = cache->length(), .cache = cache.get()},
                      pool, *scratch, &step);
      t.push_back(NowSeconds() - t0);
    }
    draft_step = Median(t) / one_row;
  }
  const double bytes = static_cast<double>(target.WeightBytesPerToken());
  const double roofline = bandwidth * 1e9 / bytes;
  const double plain = Median(plain_tps);
  // With experts, a pass reads the dense weights and the distinct experts its rows chose.
  const bool moe = c.moe();
  const double dense_bytes = static_cast<double>(target.DenseWeightBytes());
  const double expert_bytes = static_cast<double>(target.ExpertBytes());
  const auto experts_per_layer = [&](const SpecStats& s) -> OJson {
    if (!moe || s.decode_forwards == 0) return nullptr;
    return static_cast<double>(s.experts_read) / s.decode_forwards / c.num_layers;
  };
  const MoeBytes moe_bytes = MoeBytesOf(target);
  // The bytes-model ceiling of a speculative run, at this depth and at --extrapolate-layers.
  const auto ceiling = [&](const SpecStats& s, double tokens_per_pass, int layers) -> OJson {
    const OJson spec = experts_per_layer(s), plain_experts = experts_per_layer(plain_gen[0]);
    if (spec.is_null() || plain_experts.is_null() || layers <= 0) return nullptr;
    return moe_bytes.Ceiling(tokens_per_pass, plain_experts.get<double>(), spec.get<double>(),
                             layers);
  };
  const auto pass_gb = [&](const SpecStats& s) -> OJson {
    const OJson experts = experts_per_layer(s);
    if (experts.is_null()) return nullptr;
    return moe_bytes.PassBytes(experts.get<double>(), c.num_layers) / 1e9;
  };

  OJson results = OJson::array();
  results.push_back(
      {{"mode", "plain"},
       {"drafter", nullptr},
       {"draft_max", nullptr},
       {"batch", 1},
       {"decode_tok_per_s", plain},
       {"decode_tok_per_s_min", *std::min_element(plain_tps.begin(), plain_tps.end())},
       {"decode_tok_per_s_max", *std::max_element(plain_tps.begin(), plain_tps.end())},
       {"speedup", 1.0},
       {"acceptance_rate", nullptr},
       {"tokens_per_forward", 1.0},
       {"accepted_per_position", nullptr},
       {"prefill_tok_per_s", Median(plain_prefill)},
       {"prefill_fma_fraction", Median(plain_prefill) * 2.0 *
                                    static_cast<double>(target.MatMulParamsPerToken()) / 1e9 /
                                    peak_gflops},
       {"peak_rss_mb", PeakRssMB()},
       {"roofline_fraction", plain / roofline},
       {"verify_cost_ratio", 1.0},
       {"verify_roofline_fraction", nullptr},
       {"verify_fma_fraction", nullptr},
       {"verify_bound", nullptr},
       {"experts_per_layer", experts_per_layer(plain_gen[0])},
       {"pass_gb", pass_gb(plain_gen[0])},
       {"bytes_ceiling_speedup", nullptr},
       {"bytes_ceiling_speedup_extrapolated", nullptr},
       {"draft_step_cost_fraction", nullptr},
       {"time_in_target", nullptr},
       {"time_in_drafter", nullptr},
       {"time_other", nullptr}});
  for (size_t i = 0; i < ks.size(); ++i) {
    const TimeSplit& t = split[i];
    const double decode_s = std::max(t.decode, 1e-12);
    const SpecStats& s = spec_stats[i];
    const std::vector<double> per_pos = AcceptanceByPosition(s);
    const double tps = Median(spec_tps[i]);
    // One verify pass over K+1 rows of the real continuation, against the bytes it read.
    const PassTime verify = TimePass(target, pool, *cache, continuation, ks[i] + 1, 5);
    const double verify_bytes = dense_bytes + expert_bytes * verify.experts_read;
    // Its multiply-adds: every row through every matrix and its own experts, and the LM head
    // (verification needs each row's logits). The larger of the two rooflines bounds the pass.
    const double verify_flops = 2.0 * (ks[i] + 1) *
                                (static_cast<double>(target.MatMulParamsPerToken()) +
                                 static_cast<double>(c.vocab_size) * c.hidden_size);
    const double bytes_s = verify_bytes / (bandwidth * 1e9),
                 flops_s = verify_flops / (peak_gflops * 1e9);
    results.push_back(
        {{"mode", "spec"},
         {"drafter", f.drafter},
         {"draft_policy", f.policy},
         {"draft_max", ks[i]},
         {"batch", 1},
         {"decode_tok_per_s", tps},
         {"decode_tok_per_s_min", *std::min_element(spec_tps[i].begin(), spec_tps[i].end())},
         {"decode_tok_per_s_max", *std::max_element(spec_tps[i].begin(), spec_tps[i].end())},
         {"speedup", tps / plain},
         {"acceptance_rate", s.acceptance_rate()},
         {"tokens_per_forward", s.mean_tokens_per_round()},
         {"accepted_per_position", per_pos},
         {"prefill_tok_per_s", nullptr},
         {"prefill_fma_fraction", nullptr},
         {"peak_rss_mb", PeakRssMB()},
         {"roofline_fraction", nullptr},
         {"verify_cost_ratio", verify.seconds / one_row},
         {"verify_roofline_fraction", bytes_s / verify.seconds},
         {"verify_fma_fraction", flops_s / verify.seconds},
         {"verify_bound", bytes_s >= flops_s ? "memory" : "compute"},
         {"experts_per_layer", experts_per_layer(spec_gen[i])},
         {"pass_gb", pass_gb(spec_gen[i])},
         {"bytes_ceiling_speedup", ceiling(spec_gen[i], s.mean_tokens_per_round(), c.num_layers)},
         {"bytes_ceiling_speedup_extrapolated",
          ceiling(spec_gen[i], s.mean_tokens_per_round(), f.extrapolate_layers)},
         {"draft_step_cost_fraction", draft_step ? OJson(*draft_step) : OJson()},
         {"time_in_target", t.forward / decode_s},
         {"time_in_drafter", t.draft / decode_s},
         {"time_other", (t.decode - t.forward - t.draft) / decode_s}});
  }
  report["model"]["weight_bytes_per_token"] = bytes;
  report["model"]["roofline_tok_per_s"] = roofline;
  report["results"] = results;
  if (!f.plot.empty()) {
    if (Status s = Plot(report, f.plot); !s.ok()) return Fail(s.message());
  }
  if (f.json) {
    std::cout << report.dump() << std::endl;
    return 0;
  }
  std::printf(
      "machine: %d threads, %s kernels, %.1f GB/s read bandwidth, %.0f GFLOP/s peak f32 FMA (both "
      "measured)\n",
      threads, BestKernels().target, bandwidth, peak_gflops);
  std::printf(
      "model: %s, %.2f GB of weights per token -> roofline %.2f tok/s; prompt %zu tokens, %d "
      "generated, %d reps, %s\n",
      f.model.c_str(), bytes / 1e9, roofline, prompt.size(), f.n, f.reps,
      DescribeSampling(f.sampling).c_str());
  std::printf("plain prefill: %.1f tok/s = %.0f%% of peak FMA throughput\n",
              results[0]["prefill_tok_per_s"].get<double>(),
              100.0 * results[0]["prefill_fma_fraction"].get<double>());
  if (moe) {
    std::printf(
        "experts: %d of %d per token per layer; a pass reads %.2f GB dense + %.2f MB per distinct "
        "expert\n",
        c.top_k_experts, c.num_experts, dense_bytes / 1e9, expert_bytes / 1e6);
    const auto fixed = [](const OJson& v, const char* fmt) {
      char buf[32];
      std::snprintf(buf, sizeof buf, fmt, v.get<double>());
      return std::string(buf);
    };
    for (const OJson& r : results) {
      if (r["experts_per_layer"].is_null()) continue;
      std::string tail;
      if (!r["verify_roofline_fraction"].is_null())
        tail += ", verify pass at " + fixed(r["verify_roofline_fraction"], "%.2f") +
                " of its bytes roofline and " + fixed(r["verify_fma_fraction"], "%.2f") +
                " of peak FMA (" + r["verify_bound"].get<std::string>() + "-bound)";
      if (!r["bytes_ceiling_speedup"].is_null())
        tail += ", bytes-model ceiling " + fixed(r["bytes_ceiling_speedup"], "%.2fx");
      if (!r["bytes_ceiling_speedup_extrapolated"].is_null())
        tail += " (" + fixed(r["bytes_ceiling_speedup_extrapolated"], "%.2fx") + " at " +
                std::to_string(f.extrapolate_layers) + " layers)";
      std::printf(
          "  %-5s K=%-2s distinct experts per layer per pass %6.2f, %.2f GB per pass%s\n",
          r["mode"].get<std::string>().c_str(),
          r["draft_max"].is_null() ? "-" : std::to_string(r["draft_max"].get<int>()).c_str(),
          r["experts_per_layer"].get<double>(), r["pass_gb"].get<double>(), tail.c_str());
    }
  }
  std::printf("%-6s %-7s %3s %10s %16s %8s %7s %7s %9s %9s %8s %8s %6s  %s\n", "mode", "drafter",
              "K", "tok/s", "(min-max)", "speedup", "accept", "tok/fw", "verify", "draft",
              "roofline", "rss MB", "other", "accepted per position");
  for (const OJson& r : results) {
    auto num = [&](const char* k, const char* fmt) {
      char buf[32];
      if (r[k].is_null()) return std::string("-");
      std::snprintf(buf, sizeof(buf), fmt, r[k].get<double>());
      return std::string(buf);
    };
    std::string pp;
    if (!r["accepted_per_position"].is_null()) {
      for (const auto& v : r["accepted_per_position"]) {
        char b[16];
        std::snprintf(b, sizeof(b), "%.2f ", v.get<double>());
        pp += b;
      }
    }
    char range[48];
    std::snprintf(range, sizeof(range), "(%.2f-%.2f)", r["decode_tok_per_s_min"].get<double>(),
                  r["decode_tok_per_s_max"].get<double>());
    std::printf("%-6s %-7s %3s %10s %16s %8s %7s %7s %9s %9s %8s %8s %6s  %s\n",
                r["mode"].get<std::string>().c_str(),
                r["drafter"].is_null() ? "-" : r["drafter"].get<std::string>().c_str(),
                r["draft_max"].is_null() ? "-" : std::to_string(r["draft_max"].get<int>()).c_str(),
                num("decode_tok_per_s", "%.2f").c_str(), range, num("speedup", "%.2fx").c_str(),
                num("acceptance_rate", "%.2f").c_str(), num("tokens_per_forward", "%.2f").c_str(),
                num("verify_cost_ratio", "%.2f").c_str(),
                num("draft_step_cost_fraction", "%.3f").c_str(),
                num("roofline_fraction", "%.2f").c_str(), num("peak_rss_mb", "%.0f").c_str(),
                num("time_other", "%.3f").c_str(), pp.c_str());
  }
  return 0;
}

}  // namespace

Runner AddBench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* c =
      app.add_subcommand("bench", "Measure plain vs speculative decoding, bandwidth and roofline");
  c->add_option("-m,--model", f->model, "target checkpoint directory")->required();
  c->add_option("--draft", f->draft, "MTP assistant directory (also -md)");
  c->add_option("--drafter", f->drafter,
                "model (the assistant) | replay (replays the plain output: the 100% ceiling)");
  c->add_option("--draft-max", f->draft_max,
                "comma-separated draft lengths to sweep (default 1,2,3,4)");
  c->add_option("--draft-policy", f->policy, "fixed | adaptive | auto");
  c->add_option("-p,--prompt", f->prompt, "prompt text (default: a built-in paragraph)");
  c->add_option("-n,--n-predict", f->n, "tokens generated per run (default 64)");
  c->add_option("--reps", f->reps, "repetitions, interleaved plain/speculative (default 3)");
  c->add_option("-t,--threads", f->threads, "threads (default: physical cores)");
  c->add_option("--batch", f->batch,
                "comma-separated batch sizes: aggregate tok/s of that many concurrent sequences");
  c->add_option("--extrapolate-layers", f->extrapolate_layers,
                "mixture of experts: also give the bytes-model ceilings of a model this deep "
                "(same widths; e.g. 30 for 26B-A4B)");
  c->add_option("--temp", f->sampling.temperature,
                "temperature (default 0: greedy); sampled drafts are verified by rejection "
                "sampling");
  c->add_option("--top-k", f->sampling.top_k, "top-k (0 = off)");
  c->add_option("--top-p", f->sampling.top_p, "top-p (1 = off)");
  c->add_option("--min-p", f->sampling.min_p, "min-p (0 = off)");
  c->add_option("--seed", f->sampling.seed, "sampling seed (default 0)");
  c->add_flag("--json", f->json, "print one JSON object");
  c->add_option("--plot", f->plot,
                "draw speedup and acceptance against draft length to a PNG (needs gnuplot)");
  return [f]() { return Run(*f); };
}

}  // namespace specula::cli
