// Sampling micro-benchmarks (Google Benchmark): the processed distribution and one sampled token
// over a 262,144-token vocabulary, at the settings clients send. Not part of `make test`.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "specula/runtime/sampler.h"

namespace specula {
namespace {

constexpr int kVocab = 262144;

// Logits shaped like a language model's: a few likely tokens over a broad low tail.
std::vector<float> Logits() {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> l(kVocab);
  for (float& x : l) x = normal(rng);
  for (int i = 0; i < 20; ++i)
    l[static_cast<size_t>(rng() % kVocab)] = 18.0f - static_cast<float>(i) * 0.5f;
  return l;
}

SamplingParams Settings(int which) {
  switch (which) {
    case 0:
      return {.temperature = 1.0f};  // OpenAI clients: temperature only
    case 1:
      return {.temperature = 0.7f, .top_p = 0.95f};  // chat defaults
    case 2:
      return {.temperature = 1.0f, .top_k = 64, .top_p = 0.95f};  // Gemma's generation config
    case 3:
      return {.temperature = 1.0f, .min_p = 0.05f};
    default:
      return {};  // greedy
  }
}

void BM_Sample(benchmark::State& state) {
  const std::vector<float> logits = Logits();
  Sampler s(Settings(static_cast<int>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(s.Sample(logits.data(), kVocab));
}
BENCHMARK(BM_Sample)->DenseRange(0, 4)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace specula

BENCHMARK_MAIN();
