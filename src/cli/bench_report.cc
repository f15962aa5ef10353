// `specula bench`: the report as text and as a gnuplot chart. Both read the JSON report, so that
// what is printed or drawn is what --json gives.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "specula/kernels/kernels.h"
#include "specula/models/gemma4.h"
#include "src/cli/bench.h"

namespace specula::cli {
namespace {

// The machine, the model and plain prefill, one line each.
void PrintHeader(const BenchSetup& b, const OJson& report) {
  const BenchFlags& f = b.f;
  const Machine& m = b.machine;
  std::printf(
      "machine: %d threads, %s kernels, %.1f GB/s read bandwidth, %.0f GFLOP/s peak f32 FMA (both "
      "measured)\n",
      m.threads, BestKernels().target, m.bandwidth_gbs, m.peak_gflops);
  std::printf(
      "model: %s, %.2f GB of weights per token -> roofline %.2f tok/s; prompt %zu tokens, %d "
      "generated, %d reps, %s\n",
      f.model.c_str(), report["model"]["weight_bytes_per_token"].get<double>() / 1e9,
      report["model"]["roofline_tok_per_s"].get<double>(), b.prompt.size(), f.n, f.reps,
      DescribeSampling(f.sampling).c_str());
  const OJson& plain = report["results"][0];
  std::printf("plain prefill: %.1f tok/s = %.0f%% of peak FMA throughput\n",
              plain["prefill_tok_per_s"].get<double>(),
              100.0 * plain["prefill_fma_fraction"].get<double>());
  if (report.contains("startup")) {
    const OJson& s = report["startup"];
    std::printf(
        "start-up: target opened in %.2f s, first token %.2f s later (cold prefill): %.2f s to "
        "the first token\n",
        s["load_s"].get<double>(), s["first_prefill_s"].get<double>(),
        s["time_to_first_token_s"].get<double>());
  }
}

std::string Fixed(const OJson& v, const char* fmt) {
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, v.get<double>());
  return std::string(buf);
}

// Mixture of experts: what each mode's passes read, against the bytes model.
void PrintExpertReads(const BenchSetup& b, const OJson& results) {
  const Gemma4Config& c = b.target.config();
  std::printf(
      "experts: %d of %d per token per layer; a pass reads %.2f GB dense + %.2f MB per distinct "
      "expert\n",
      c.top_k_experts, c.num_experts, static_cast<double>(b.target.DenseWeightBytes()) / 1e9,
      static_cast<double>(b.target.ExpertBytes()) / 1e6);
  for (const OJson& r : results) {
    if (r["experts_per_layer"].is_null()) continue;
    std::string tail;
    if (!r["verify_roofline_fraction"].is_null())
      tail += ", verify pass at " + Fixed(r["verify_roofline_fraction"], "%.2f") +
              " of its bytes roofline and " + Fixed(r["verify_fma_fraction"], "%.2f") +
              " of peak FMA (" + r["verify_bound"].get<std::string>() + "-bound)";
    if (!r["bytes_ceiling_speedup"].is_null())
      tail += ", bytes-model ceiling " + Fixed(r["bytes_ceiling_speedup"], "%.2fx");
    if (!r["bytes_ceiling_speedup_extrapolated"].is_null())
      tail += " (" + Fixed(r["bytes_ceiling_speedup_extrapolated"], "%.2fx") + " at " +
              std::to_string(b.f.extrapolate_layers) + " layers)";
    std::printf("  %-5s K=%-2s distinct experts per layer per pass %6.2f, %.2f GB per pass%s\n",
                r["mode"].get<std::string>().c_str(),
                r["draft_max"].is_null() ? "-" : std::to_string(r["draft_max"].get<int>()).c_str(),
                r["experts_per_layer"].get<double>(), r["pass_gb"].get<double>(), tail.c_str());
  }
}

// A row per mode and draft length; "-" where a column does not apply.
void PrintTable(const OJson& results) {
  std::printf("%-6s %-7s %3s %10s %16s %8s %7s %7s %9s %9s %8s %8s %6s  %s\n", "mode", "drafter",
              "K", "tok/s", "(min-max)", "speedup", "accept", "tok/fw", "verify", "draft",
              "roofline", "rss MB", "other", "accepted per position");
  for (const OJson& r : results) {
    auto num = [&](const char* k, const char* fmt) {
      if (r[k].is_null()) return std::string("-");
      return Fixed(r[k], fmt);
    };
    std::string pp;
    if (!r["accepted_per_position"].is_null()) {
      for (const auto& v : r["accepted_per_position"]) pp += Fixed(v, "%.2f ");
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
}

}  // namespace

void PrintReport(const BenchSetup& b, const OJson& report) {
  PrintHeader(b, report);
  if (b.target.config().moe()) PrintExpertReads(b, report["results"]);
  PrintTable(report["results"]);
}

// A gnuplot text script, so that the plot can be redrawn from the data file left next to the PNG.
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

}  // namespace specula::cli
