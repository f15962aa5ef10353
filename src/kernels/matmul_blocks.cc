// The matmuls over llama.cpp's simple block types (Q8_0, Q4_0, IQ4_NL, Q4_1, Q5_0, Q5_1), compiled
// once per SIMD target. A translation unit of its own so that the kernels compile in parallel
// (matmul.cc routes to it through MatMulRowsBlocks); the code is in matmul_quant-inl.h.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/matmul_blocks.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep (must come first: it re-includes this file)
// clang-format on

#include "hwy/highway.h"
#include "specula/kernels/kernels.h"
#include "src/kernels/matmul_quant-inl.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {

void MatMulRowsBlocks(const MatMulRowsArgs& a) {
  switch (a.w.dtype) {
    case DType::kQ8_0:
      return MatMulRowsQ<DType::kQ8_0>(a);
    case DType::kQ4_0:
      return MatMulRowsQ<DType::kQ4_0>(a);
    case DType::kIQ4_NL:
      return MatMulRowsQ<DType::kIQ4_NL>(a);
    case DType::kQ4_1:
      return MatMulRowsQ<DType::kQ4_1>(a);
    case DType::kQ5_0:
      return MatMulRowsQ<DType::kQ5_0>(a);
    default:
      return MatMulRowsQ<DType::kQ5_1>(a);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();
