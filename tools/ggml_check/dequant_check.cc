// Specula's block dtypes against ggml's reference (de)quantization (llama.cpp's libggml-base):
// ggml's dequantization of Specula's blocks and of ggml's own must equal Specula's, bit for bit.
// Prints each type's rms quantization error, Specula's quantizer beside ggml's. Not part of the
// test suite (llama.cpp is not a dependency); built by hand against a llama.cpp build:
//   g++ -std=c++20 -O2 tools/ggml_check/dequant_check.cc -I LLAMA/ggml/include -I include \
//     build/libspecula_base.a -L LLAMA/build/bin -lggml-base -Wl,-rpath,LLAMA/build/bin -o check
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "ggml.h"
#include "specula/base/dtype.h"

using namespace specula;

int main() {
  const std::pair<DType, ggml_type> types[] = {
      {DType::kQ8_0, GGML_TYPE_Q8_0},     {DType::kQ4_0, GGML_TYPE_Q4_0},
      {DType::kQ6_K, GGML_TYPE_Q6_K},     {DType::kQ4_K, GGML_TYPE_Q4_K},
      {DType::kQ5_K, GGML_TYPE_Q5_K},     {DType::kIQ4_NL, GGML_TYPE_IQ4_NL},
      {DType::kIQ4_XS, GGML_TYPE_IQ4_XS}, {DType::kQ4_1, GGML_TYPE_Q4_1},
      {DType::kQ5_0, GGML_TYPE_Q5_0},     {DType::kQ5_1, GGML_TYPE_Q5_1},
      {DType::kQ3_K, GGML_TYPE_Q3_K},     {DType::kQ2_K, GGML_TYPE_Q2_K}};
  const int64_t n = 256 * 512;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng) * 0.05f + (nd(rng) > 2.0f ? 0.3f : 0.0f);
  int bad_total = 0;
  for (auto [t, g] : types) {
    const auto* tr = ggml_get_type_traits(g);
    std::vector<uint8_t> ours(StorageBytes(t, n)), theirs(ggml_row_size(g, n));
    if (ours.size() != theirs.size()) {
      std::printf("%s: size %zu vs %zu\n", tr->type_name, ours.size(), theirs.size());
      return 1;
    }
    QuantizeRow(t, x.data(), n, ours.data());
    tr->from_float_ref(x.data(), theirs.data(), n);
    std::vector<float> a(n), b(n);
    int bad = 0;
    double err_ours = 0, err_theirs = 0;
    for (const auto* blocks : {&ours, &theirs}) {
      tr->to_float(blocks->data(), a.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        b[i] = LoadAsF32(t, blocks->data(), static_cast<size_t>(i));
        if (std::memcmp(&a[i], &b[i], 4) != 0) ++bad;
        (blocks == &ours ? err_ours : err_theirs) += (a[i] - x[i]) * (a[i] - x[i]);
      }
    }
    std::printf(
        "%-5s dequantization: %d of %lld values differ from ggml's (on our blocks and on "
        "ggml's); rms error: ours %.5f, ggml's quantizer %.5f\n",
        tr->type_name, bad, (long long)(2 * n), std::sqrt(err_ours / n), std::sqrt(err_theirs / n));
    bad_total += bad;
  }
  return bad_total != 0;
}
