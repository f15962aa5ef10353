// `specula bench`: plain vs speculative decoding on the same prompt, interleaved over several reps,
// with the machine's measured bandwidth, the roofline fraction, the verify-cost ratio and the
// drafter-step cost. All ratios come from one run on one machine.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <optional>

#include "specula/base/json.h"
#include "specula/base/sysinfo.h"
#include "specula/base/thread_pool.h"
#include "specula/kernels/kernels.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/runtime/generate.h"
#include "specula/spec/batch_engine.h"
#include "specula/spec/generate_one.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/spec/replay_drafter.h"
#include "specula/tokenizer/tokenizer.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/cli/bench.h"
#include "src/cli/commands.h"
#include "src/cli/drafters.h"

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

// What the flags ask to sweep, checked before anything is loaded.
struct Sweep {
  std::vector<int> ks;       // --draft-max
  std::vector<int> batches;  // --batch (empty: one sequence)
};

Result<Sweep> CheckFlags(const BenchFlags& f) {
  if (f.n < 2) return Error("-n/--n-predict: must be >= 2 for a decode measurement");
  if (f.reps < 1 || f.reps > 100) return Error("--reps: must be in [1, 100]");
  if (f.extrapolate_layers < 0 || f.extrapolate_layers > 1000)
    return Error("--extrapolate-layers: must be in [0, 1000]");
  if (f.drafter != "model" && f.drafter != "replay" && f.drafter != "lookup" &&
      f.drafter != "hybrid" && f.drafter != "tree") {
    return Error("--drafter: expected model, replay, lookup, hybrid or tree (got '" + f.drafter +
                 "')");
  }
  if (Status s = f.tree.Validate(); !s.ok()) return s.WithContext("--tree-width/--tree-depth");
  if (f.drafter != "replay" && f.drafter != "lookup" && f.draft.empty()) {
    return Error("--drafter " + f.drafter +
                 ": needs -md/--draft DIR (or use --drafter replay or lookup)");
  }
  if (Status s = f.sampling.Validate(); !s.ok()) return s;
  Sweep sweep;
  Result<std::vector<int>> ks = ParseList(f.draft_max, "--draft-max", 1, 32);
  if (!ks.ok()) return ks.status();
  sweep.ks = std::move(*ks);
  if (!f.batch.empty()) {
    Result<std::vector<int>> batches = ParseList(f.batch, "--batch", 1, 64);
    if (!batches.ok()) return batches.status();
    sweep.batches = std::move(*batches);
  }
  return sweep;
}

// The target, its assistant (null without --draft) and the prompt: BOS, then the encoded text.
struct Loaded {
  std::unique_ptr<Gemma4Model> target;
  std::unique_ptr<Gemma4Assistant> assistant;
  std::vector<int> prompt;
  double load_s = 0.0;  // opening the target: model, generation config and tokenizer
};

Result<Loaded> Load(const BenchFlags& f) {
  Loaded l;
  const double t0 = NowSeconds();
  Result<Target> target = LoadTarget(f.model, /*with_tokenizer=*/true);
  if (!target.ok()) return target.status();
  l.load_s = NowSeconds() - t0;
  l.target = std::move(target->model);
  Result<std::unique_ptr<Gemma4Assistant>> assistant = LoadAssistant(f.draft, *l.target);
  if (!assistant.ok()) return assistant.status();
  l.assistant = std::move(*assistant);
  l.prompt = {2};
  for (int id : target->tokenizer->Encode(f.prompt.empty() ? kDefaultPrompt : f.prompt)) {
    l.prompt.push_back(id);
  }
  if (Status s = ValidatePrompt(l.prompt, l.target->config().vocab_size, 4096); !s.ok()) return s;
  return l;
}

// No stop ids: every run decodes exactly -n tokens.
GenerateOptions BaseOptions(const BenchFlags& f) {
  GenerateOptions base;
  base.max_new_tokens = f.n;
  base.sampling = f.sampling;
  return base;
}

// What every report starts with: the machine as measured, and the model.
OJson ReportHeader(const BenchSetup& b) {
  const BenchFlags& f = b.f;
  const Gemma4Config& c = b.target.config();
  return {{"machine",
           {{"threads", b.machine.threads},
            {"bandwidth_gbs", b.machine.bandwidth_gbs},
            {"peak_gflops", b.machine.peak_gflops},
            {"kernels", BestKernels().target}}},
          {"model",
           {{"dir", f.model},
            {"hidden_size", c.hidden_size},
            {"layers", c.num_layers},
            {"vocab_size", c.vocab_size},
            {"prompt_tokens", b.prompt.size()},
            {"generated_tokens", f.n},
            {"reps", f.reps},
            {"drafter_dir", f.draft}}},
          {"sampling",
           {{"temperature", f.sampling.temperature},
            {"top_k", f.sampling.top_k},
            {"top_p", f.sampling.top_p},
            {"min_p", f.sampling.min_p},
            {"seed", f.sampling.seed}}}};
}

// Decode seconds over all reps of one K, and those inside target passes and drafter steps.
struct TimeSplit {
  double decode = 0, forward = 0, draft = 0;
};

// One draft length over all reps.
struct SpecRuns {
  std::vector<double> tps;
  SpecStats stats;  // the last rep's
  TimeSplit split;
};

struct Runs {
  std::vector<int> reference;  // the plain output, which every greedy run must reproduce
  std::vector<int> sequence;   // the prompt and `reference`: what the replay drafter replays
  std::vector<double> plain_tps, plain_prefill;
  double first_prefill_s = 0.0;  // the first run's, on pages of the weights not yet touched
  SpecStats plain_stats;         // the last rep's
  std::vector<SpecRuns> spec;    // per K
};

int MaxK(const BenchSetup& b) { return *std::max_element(b.ks.begin(), b.ks.end()); }

Status RunPlainRep(const BenchSetup& b, Runs& runs) {
  auto cache = b.target.NewCache(b.context);
  Result<SpecResult> r = GeneratePlain(b.target, b.pool, *cache, b.prompt, b.base, nullptr);
  if (!r.ok()) return r.status();
  if (r->gen.ids != runs.reference) return Error("internal: plain decoding is not deterministic");
  runs.plain_tps.push_back(r->gen.stats.decode_tok_per_s());
  runs.plain_prefill.push_back(b.prompt.size() / r->gen.stats.prefill_s);
  runs.plain_stats = r->spec;
  return OkStatus();
}

Status RunSpecRep(const BenchSetup& b, size_t i, Runs& runs) {
  const int k = b.ks[i];
  auto cache = b.target.NewCache(b.context, MaxK(b) + 1);
  std::optional<ReplayDrafter> replay;
  DrafterFlags flags;
  flags.tree = b.f.tree;
  const Drafters drafters = MakeDrafters(b.f.drafter, b.assistant, flags);
  Drafter* d = drafters.get();
  if (b.f.drafter == "replay") d = &replay.emplace(runs.sequence, b.target.config().vocab_size);
  Result<std::unique_ptr<DraftPolicy>> policy = MakeDraftPolicy(b.f.policy, k);
  if (!policy.ok()) return policy.status();
  SeqOptions so{.base = b.base, .draft_max = k, .policy = policy->get()};
  Result<SpecResult> r = GenerateSpeculative(b.target, *d, b.pool, *cache, b.prompt, so, nullptr);
  if (!r.ok()) return r.status();
  if (b.f.sampling.greedy() && r->gen.ids != runs.reference) {
    return Error("speculative output differs from plain output (K=" + std::to_string(k) +
                 "): this is a bug");
  }
  SpecRuns& spec = runs.spec[i];
  spec.tps.push_back(r->gen.stats.decode_tok_per_s());
  spec.stats = r->spec;
  spec.split.decode += r->gen.stats.decode_s;
  spec.split.forward += r->spec.forward_s;
  spec.split.draft += r->spec.draft_s;
  return OkStatus();
}

// The reference output, then the reps: plain and each K interleaved, so that a machine that slows
// down or speeds up during the run affects all of them alike.
Result<Runs> MeasureDecoding(const BenchSetup& b) {
  Runs runs;
  {
    auto cache = b.target.NewCache(b.context);
    Result<SpecResult> r = GeneratePlain(b.target, b.pool, *cache, b.prompt, b.base, nullptr);
    if (!r.ok()) return r.status();
    runs.reference = r->gen.ids;
    runs.first_prefill_s = r->gen.stats.prefill_s;
    runs.sequence = b.prompt;
    runs.sequence.insert(runs.sequence.end(), runs.reference.begin(), runs.reference.end());
  }
  runs.spec.resize(b.ks.size());
  for (int rep = 0; rep < b.f.reps; ++rep) {
    if (Status s = RunPlainRep(b, runs); !s.ok()) return s;
    for (size_t i = 0; i < b.ks.size(); ++i) {
      if (Status s = RunSpecRep(b, i, runs); !s.ok()) return s;
    }
  }
  return runs;
}

// The cost model is measured after a real prefix: a cache holding the prompt.
struct Prefix {
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<PassScratch> scratch;  // reused by every timed pass, as the engine reuses its own
  ForwardOutput prompt;  // the prompt's pass: its last hidden row feeds the drafter step
};

Result<Prefix> PrefillPrompt(const BenchSetup& b) {
  Prefix at;
  at.cache = b.target.NewCache(b.context, MaxK(b) + 1);
  at.scratch = b.target.NewScratch();
  if (Status s =
          b.target.Forward({.ids = b.prompt, .cache = at.cache.get(), .scratch = at.scratch.get()},
                           b.pool, &at.prompt);
      !s.ok())
    return s;
  return at;
}

struct PassTime {
  double seconds = 0.0;  // median
  int experts_read = 0;  // mixture of experts: distinct experts the pass ran, all layers
};

// A forward of `rows` tokens of the reference continuation after the prefix, rolled back each time
// (real tokens: with experts, which ones the rows reach depends on them).
struct PassToTime {
  const std::vector<int>& continuation;
  int rows = 1;
  int reps = 5;
};

Result<PassTime> TimePass(const BenchSetup& b, Prefix& at, const PassToTime& pass) {
  const std::vector<int> ids(pass.continuation.begin(), pass.continuation.begin() + pass.rows);
  std::vector<double> t;
  ForwardOutput out;
  const int base = at.cache->length();
  for (int r = 0; r < pass.reps; ++r) {
    const double t0 = NowSeconds();
    if (Status s = b.target.Forward({.ids = ids,
                                     .cache = at.cache.get(),
                                     .all_logits = pass.rows > 1,
                                     .scratch = at.scratch.get()},
                                    b.pool, &out);
        !s.ok())
      return s;
    t.push_back(NowSeconds() - t0);
    if (Status s = at.cache->Truncate(base); !s.ok()) return s;
  }
  return PassTime{.seconds = Median(t), .experts_read = out.experts_read};
}

// One drafter step, as a fraction of a one-row target pass (none without an assistant).
std::optional<double> DraftStepCost(const BenchSetup& b, Prefix& at, double one_row) {
  if (!b.assistant) return std::nullopt;
  DraftStepOutput step;
  std::unique_ptr<PassScratch> scratch = b.assistant->NewScratch();
  const std::vector<float>& hidden = at.prompt.hidden;
  std::vector<float> h(hidden.end() - b.target.config().hidden_size, hidden.end());
  std::vector<double> t;
  for (int r = 0; r < 7; ++r) {
    const double t0 = NowSeconds();
    b.assistant->Step(
        {.token = 3, .h_in = h.data(), .pos = at.cache->length(), .cache = at.cache.get()}, b.pool,
        *scratch, &step);
    t.push_back(NowSeconds() - t0);
  }
  return Median(t) / one_row;
}

// One verify pass over K+1 rows of the real continuation, against its two rooflines.
struct VerifyPass {
  double seconds = 0.0;
  double bytes_s = 0.0;  // the bytes it read at the measured bandwidth
  double flops_s = 0.0;  // its multiply-adds at peak FMA throughput
};

Result<VerifyPass> TimeVerify(const BenchSetup& b, Prefix& at, const Runs& runs, int k) {
  const Gemma4Config& c = b.target.config();
  Result<PassTime> timed = TimePass(b, at, {.continuation = runs.reference, .rows = k + 1});
  if (!timed.ok()) return timed.status();
  const PassTime& pass = *timed;
  const double bytes = static_cast<double>(b.target.DenseWeightBytes()) +
                       static_cast<double>(b.target.ExpertBytes()) * pass.experts_read;
  // Every row through every matrix and its own experts, and the LM head (verification needs each
  // row's logits). The larger of the two rooflines bounds the pass.
  const double flops = 2.0 * (k + 1) *
                       (static_cast<double>(b.target.MatMulParamsPerToken()) +
                        static_cast<double>(c.vocab_size) * c.hidden_size);
  return VerifyPass{.seconds = pass.seconds,
                    .bytes_s = bytes / (b.machine.bandwidth_gbs * 1e9),
                    .flops_s = flops / (b.machine.peak_gflops * 1e9)};
}

// With experts, a pass reads the dense weights and the distinct experts its rows chose; null
// throughout for a dense model.
class ExpertReads {
 public:
  ExpertReads(const Gemma4Model& target, const SpecStats& plain)
      : c_(target.config()), bytes_(MoeBytesOf(target)), plain_(plain) {}

  OJson PerLayer(const SpecStats& s) const {
    if (!c_.moe() || s.decode_forwards == 0) return nullptr;
    return static_cast<double>(s.experts_read) / s.decode_forwards / c_.num_layers;
  }
  OJson PassGb(const SpecStats& s) const {
    const OJson experts = PerLayer(s);
    if (experts.is_null()) return nullptr;
    return bytes_.PassBytes(experts.get<double>(), c_.num_layers) / 1e9;
  }
  // The bytes-model ceiling of a speculative run, at `layers` deep.
  OJson Ceiling(const SpecStats& s, double tokens_per_pass, int layers) const {
    const OJson spec = PerLayer(s), plain = PerLayer(plain_);
    if (spec.is_null() || plain.is_null() || layers <= 0) return nullptr;
    return bytes_.Ceiling(tokens_per_pass, plain.get<double>(), spec.get<double>(), layers);
  }

 private:
  const Gemma4Config& c_;
  MoeBytes bytes_;
  SpecStats plain_;
};

// The decode speed if every pass read the weights at the measured bandwidth.
struct Roofline {
  double bytes_per_token = 0.0;
  double tok_per_s = 0.0;
};

Roofline RooflineOf(const BenchSetup& b) {
  const double bytes = static_cast<double>(b.target.WeightBytesPerToken());
  return {.bytes_per_token = bytes, .tok_per_s = b.machine.bandwidth_gbs * 1e9 / bytes};
}

// What the rows of the report are computed from.
struct Measured {
  const Runs& runs;
  const ExpertReads& experts;
  double one_row = 0.0;  // seconds of a one-row target pass
  std::optional<double> draft_step;
};

OJson PlainRow(const BenchSetup& b, const Measured& m) {
  const Runs& runs = m.runs;
  const double plain = Median(runs.plain_tps);
  const double prefill = Median(runs.plain_prefill);
  return {{"mode", "plain"},
          {"drafter", nullptr},
          {"draft_max", nullptr},
          {"batch", 1},
          {"decode_tok_per_s", plain},
          {"decode_tok_per_s_min", *std::min_element(runs.plain_tps.begin(), runs.plain_tps.end())},
          {"decode_tok_per_s_max", *std::max_element(runs.plain_tps.begin(), runs.plain_tps.end())},
          {"speedup", 1.0},
          {"acceptance_rate", nullptr},
          {"tokens_per_forward", 1.0},
          {"accepted_per_position", nullptr},
          {"prefill_tok_per_s", prefill},
          {"prefill_fma_fraction", prefill * 2.0 *
                                       static_cast<double>(b.target.MatMulParamsPerToken()) / 1e9 /
                                       b.machine.peak_gflops},
          {"peak_rss_mb", PeakRssMB()},
          {"roofline_fraction", plain / RooflineOf(b).tok_per_s},
          {"verify_cost_ratio", 1.0},
          {"verify_roofline_fraction", nullptr},
          {"verify_fma_fraction", nullptr},
          {"verify_bound", nullptr},
          {"experts_per_layer", m.experts.PerLayer(runs.plain_stats)},
          {"pass_gb", m.experts.PassGb(runs.plain_stats)},
          {"bytes_ceiling_speedup", nullptr},
          {"bytes_ceiling_speedup_extrapolated", nullptr},
          {"draft_step_cost_fraction", nullptr},
          {"time_in_target", nullptr},
          {"time_in_drafter", nullptr},
          {"time_other", nullptr}};
}

OJson SpecRow(const BenchSetup& b, const Measured& m, size_t i, const VerifyPass& verify) {
  const SpecRuns& runs = m.runs.spec[i];
  const TimeSplit& t = runs.split;
  const double decode_s = std::max(t.decode, 1e-12);
  const SpecStats& s = runs.stats;
  const double tps = Median(runs.tps);
  const int layers = b.target.config().num_layers;
  return {
      {"mode", "spec"},
      {"drafter", b.f.drafter},
      {"draft_policy", b.f.policy},
      {"draft_max", b.ks[i]},
      {"batch", 1},
      {"decode_tok_per_s", tps},
      {"decode_tok_per_s_min", *std::min_element(runs.tps.begin(), runs.tps.end())},
      {"decode_tok_per_s_max", *std::max_element(runs.tps.begin(), runs.tps.end())},
      {"speedup", tps / Median(m.runs.plain_tps)},
      {"acceptance_rate", s.acceptance_rate()},
      {"tokens_per_forward", s.mean_tokens_per_round()},
      {"accepted_per_position", AcceptanceByPosition(s)},
      {"prefill_tok_per_s", nullptr},
      {"prefill_fma_fraction", nullptr},
      {"peak_rss_mb", PeakRssMB()},
      {"roofline_fraction", nullptr},
      {"verify_cost_ratio", verify.seconds / m.one_row},
      {"verify_roofline_fraction", verify.bytes_s / verify.seconds},
      {"verify_fma_fraction", verify.flops_s / verify.seconds},
      {"verify_bound", verify.bytes_s >= verify.flops_s ? "memory" : "compute"},
      {"experts_per_layer", m.experts.PerLayer(runs.stats)},
      {"pass_gb", m.experts.PassGb(runs.stats)},
      {"bytes_ceiling_speedup", m.experts.Ceiling(runs.stats, s.mean_tokens_per_round(), layers)},
      {"bytes_ceiling_speedup_extrapolated",
       m.experts.Ceiling(runs.stats, s.mean_tokens_per_round(), b.f.extrapolate_layers)},
      {"draft_step_cost_fraction", m.draft_step ? OJson(*m.draft_step) : OJson()},
      {"time_in_target", t.forward / decode_s},
      {"time_in_drafter", t.draft / decode_s},
      {"time_other", (t.decode - t.forward - t.draft) / decode_s}};
}

// The cost model after the prompt (a one-row pass, a drafter step, a verify pass per K), then a
// row for plain decoding and one per K.
Result<OJson> ResultRows(const BenchSetup& b, const Runs& runs) {
  Result<Prefix> at = PrefillPrompt(b);
  if (!at.ok()) return at.status();
  Result<PassTime> one_row = TimePass(b, *at, {.continuation = runs.reference});
  if (!one_row.ok()) return one_row.status();
  const ExpertReads experts(b.target, runs.plain_stats);
  const Measured m{.runs = runs,
                   .experts = experts,
                   .one_row = one_row->seconds,
                   .draft_step = DraftStepCost(b, *at, one_row->seconds)};
  OJson results = OJson::array();
  results.push_back(PlainRow(b, m));
  for (size_t i = 0; i < b.ks.size(); ++i) {
    Result<VerifyPass> verify = TimeVerify(b, *at, runs, b.ks[i]);
    if (!verify.ok()) return verify.status();
    results.push_back(SpecRow(b, m, i, *verify));
  }
  return results;
}

int Run(const BenchFlags& f) {
  Result<Sweep> sweep = CheckFlags(f);
  if (!sweep.ok()) return Fail(sweep.status().message());
  Result<Loaded> loaded = Load(f);
  if (!loaded.ok()) return Fail(loaded.status().message());
  // Bandwidth is measured before the pool starts its threads: it forks.
  Machine machine{.threads = ThreadCount(f.threads)};
  machine.bandwidth_gbs = ChildBandwidth(machine.threads);
  ThreadPool pool(machine.threads);
  machine.peak_gflops = MeasurePeakGflops(pool);
  const BenchSetup b{.f = f,
                     .target = *loaded->target,
                     .assistant = loaded->assistant.get(),
                     .pool = pool,
                     .machine = machine,
                     .prompt = loaded->prompt,
                     .ks = sweep->ks,
                     .base = BaseOptions(f),
                     .context = static_cast<int>(loaded->prompt.size()) + f.n + 64};
  OJson report = ReportHeader(b);
  if (!sweep->batches.empty()) return RunBatchSweep(b, sweep->batches, report);

  Result<Runs> runs = MeasureDecoding(b);
  if (!runs.ok()) return Fail(runs.status().message());
  Result<OJson> results = ResultRows(b, *runs);
  if (!results.ok()) return Fail(results.status().message());
  const Roofline roofline = RooflineOf(b);
  report["model"]["weight_bytes_per_token"] = roofline.bytes_per_token;
  report["model"]["roofline_tok_per_s"] = roofline.tok_per_s;
  // From the start to the first generated token: opening the target (model, generation config,
  // tokenizer), then the first prefill, which also faults in the mapped weights. The machine
  // probes in between are left out.
  report["startup"] = {{"load_s", loaded->load_s},
                       {"first_prefill_s", runs->first_prefill_s},
                       {"time_to_first_token_s", loaded->load_s + runs->first_prefill_s}};
  report["results"] = *results;
  if (!f.plot.empty()) {
    if (Status s = Plot(report, f.plot); !s.ok()) return Fail(s.message());
  }
  if (f.json) {
    std::cout << report.dump() << std::endl;
    return 0;
  }
  PrintReport(b, report);
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
                "model (the assistant) | replay (replays the plain output: the 100% ceiling) | "
                "lookup (prompt lookup) | hybrid (lookup or the assistant, per round) | tree (the "
                "assistant's token tree; --draft-max is its number of nodes)");
  c->add_option("--tree-width", f->tree.width,
                "--drafter tree: choices per step and nodes expanded per depth (default 2)");
  c->add_option(
      "--tree-depth", f->tree.depth,
      "--drafter tree: deepest node, i.e. drafter steps per round (default: --draft-max)");
  c->add_flag("!--tree-fixed", f->tree.by_cost,
              "--drafter tree: always --draft-max nodes (default: as many as pay for their rows)");
  c->add_option("--draft-max", f->draft_max,
                "comma-separated draft lengths to sweep (default 1,2,3,4)");
  c->add_option("--draft-policy", f->policy, "fixed | adaptive | auto");
  c->add_option("-p,--prompt", f->prompt, "prompt text (default: a built-in paragraph)");
  c->add_option("-n,--n-predict", f->n, "tokens generated per run (default 64)");
  c->add_option("--reps", f->reps, "repetitions, interleaved plain/speculative (default 3)");
  AddThreadsFlag(*c, f->threads);
  c->add_option("--batch", f->batch,
                "comma-separated batch sizes: aggregate tok/s of that many concurrent sequences");
  c->add_option("--extrapolate-layers", f->extrapolate_layers,
                "mixture of experts: also give the bytes-model ceilings of a model this deep "
                "(same widths; e.g. 30 for 26B-A4B)");
  c->add_option("--temp", f->sampling.temperature,
                "temperature (default 0: greedy); sampled drafts are verified by rejection "
                "sampling");
  SamplingParams& s = f->sampling;
  AddSamplingFilterFlags(*c, s.top_k, s.top_p, s.min_p, s.seed);
  c->add_flag("--json", f->json, "print one JSON object");
  c->add_option("--plot", f->plot,
                "draw speedup and acceptance against draft length to a PNG (needs gnuplot)");
  return [f]() { return Run(*f); };
}

}  // namespace specula::cli
