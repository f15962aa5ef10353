// Shared by the `specula bench` sources: flags, small statistics helpers, the --batch sweep.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "specula/base/json.h"
#include "specula/base/status.h"
#include "specula/spec/generate_one.h"
#include "specula/spec/mtp_tree_drafter.h"

namespace specula {
class Gemma4Assistant;
class Gemma4Model;
class ThreadPool;
}  // namespace specula

namespace specula::cli {

using OJson = nlohmann::ordered_json;

struct BenchFlags {
  std::string model, draft, drafter = "model", draft_max = "1,2,3,4", prompt, policy = "fixed",
                            plot, batch;
  int n = 64, reps = 3, threads = 0;
  int extrapolate_layers = 0;  // mixture of experts: also give ceilings at this depth
  TreeOptions tree;            // --drafter tree
  bool json = false;
  // Greedy by default. Sampled runs verify by rejection sampling, so speculative output is not
  // compared with plain output token for token (it has the same distribution, not the same draws).
  SamplingParams sampling;
};

// "greedy", or the sampling settings of a sampled run, for the report's first lines.
inline std::string DescribeSampling(const SamplingParams& s) {
  if (s.greedy()) return "greedy";
  return "sampling at temperature " + std::to_string(s.temperature).substr(0, 4) +
         (s.top_k ? ", top-k " + std::to_string(s.top_k) : "") +
         (s.top_p < 1.0f ? ", top-p " + std::to_string(s.top_p).substr(0, 4) : "") +
         (s.min_p > 0.0f ? ", min-p " + std::to_string(s.min_p).substr(0, 4) : "") + ", seed " +
         std::to_string(s.seed) + " (rejection-sampling verification)";
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Fraction of drafts accepted at each draft position.
inline std::vector<double> AcceptanceByPosition(const SpecStats& s) {
  std::vector<double> out;
  for (size_t p = 0; p < s.accepted_per_position.size(); ++p) {
    out.push_back(s.drafted_per_position[p]
                      ? static_cast<double>(s.accepted_per_position[p]) / s.drafted_per_position[p]
                      : 0.0);
  }
  return out;
}

// The bytes model of a mixture-of-experts pass: the dense weights outside and inside the decoder
// layers, plus the distinct experts its rows chose in each layer. The speculative ceiling of a
// configuration is its tokens per pass over plain decoding's, times the bytes of a plain pass over
// the bytes of its own: what it would reach if every pass ran at the memory roofline.
struct MoeBytes {
  double outside = 0.0;     // dense bytes outside the layers (embeddings, LM head, final norm)
  double per_layer = 0.0;   // dense bytes of one layer (mean over the checkpoint's layers)
  double per_expert = 0.0;  // one expert of one layer

  double PassBytes(double experts_per_layer, int layers) const {
    return outside + layers * (per_layer + experts_per_layer * per_expert);
  }
  double Ceiling(double token_ratio, double plain_experts, double spec_experts, int layers) const {
    return token_ratio * PassBytes(plain_experts, layers) / PassBytes(spec_experts, layers);
  }
};

// The bytes model of `target` (zero experts for a dense one).
MoeBytes MoeBytesOf(const Gemma4Model& target);

// A comma-separated list of integers in [lo, hi]; errors name the flag.
Result<std::vector<int>> ParseList(const std::string& text, const std::string& flag, int lo,
                                   int hi);

// The machine as measured once, before anything decodes.
struct Machine {
  int threads = 0;
  double bandwidth_gbs = 0.0;  // read bandwidth
  double peak_gflops = 0.0;    // f32 FMA throughput
};

// What every measurement of one `specula bench` run shares.
struct BenchSetup {
  const BenchFlags& f;
  Gemma4Model& target;
  Gemma4Assistant* assistant;  // null without -md/--draft
  ThreadPool& pool;
  Machine machine;
  const std::vector<int>& prompt;  // BOS, then the encoded text
  const std::vector<int>& ks;      // the --draft-max sweep
  GenerateOptions base;            // no stop ids: every run decodes exactly f.n tokens
  int context = 0;                 // positions per sequence: prompt, f.n tokens and some slack
};

// --batch: aggregate decode throughput of B concurrent sequences, plain vs speculative per K.
// `report` holds the machine and model objects; the results are added and printed.
int RunBatchSweep(const BenchSetup& b, const std::vector<int>& batches, OJson report);

// The report without --json: the machine, the model, then a row per mode and draft length.
void PrintReport(const BenchSetup& b, const OJson& report);

// --plot: speedup and acceptance against K drawn to the PNG `png` (needs gnuplot).
Status Plot(const OJson& report, const std::string& png);

}  // namespace specula::cli
