// The matmuls over llama.cpp's super-block types (Q6_K, IQ4_XS, Q3_K with one scale per sub-block;
// Q4_K, Q5_K, Q2_K with a scale and a min), compiled once per SIMD target. A translation unit of
// its own so that the kernels compile in parallel (matmul.cc routes to it through
// MatMulRowsKQuants); the code is in matmul_quant-inl.h.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/matmul_kquants.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep (must come first: it re-includes this file)
// clang-format on

#include "hwy/highway.h"
#include "specula/kernels/kernels.h"
#include "src/kernels/matmul_int8-inl.h"
#include "src/kernels/matmul_quant-inl.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {

ActQuant KQuantActs(DType t) {
  return Int8Dtype(t) ? ActQuant::kInt8SuperBlock : ActQuant::kInt16Row;
}

void MatMulRowsKQuants(const MatMulRowsArgs& a, bool avx_vnni) {
  if (MatMulRowsInt8(a, avx_vnni)) return;
  switch (a.w.dtype) {
    case DType::kQ6_K:
      return MatMulRowsScaled<DType::kQ6_K>(a);
    case DType::kIQ4_XS:
      return MatMulRowsScaled<DType::kIQ4_XS>(a);
    case DType::kQ3_K:
      return MatMulRowsScaled<DType::kQ3_K>(a);
    case DType::kQ4_K:
      return MatMulRowsScaleMin<DType::kQ4_K>(a);
    case DType::kQ5_K:
      return MatMulRowsScaleMin<DType::kQ5_K>(a);
    default:
      return MatMulRowsScaleMin<DType::kQ2_K>(a);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();
