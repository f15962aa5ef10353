// The matmuls over llama.cpp's super-block types (Q6_K, IQ4_XS, Q3_K with one scale per sub-block;
// Q4_K, Q5_K, Q2_K with a scale and a min), compiled once per SIMD target. A translation unit of
// its own so that the kernels compile in parallel (matmul.cc routes to it through
// MatMulRowsKQuants); the code is in matmul_int8-inl.h and matmul_iq4xs-inl.h (x86),
// matmul_sdot-inl.h (ARM) and matmul_quant-inl.h (int16, every target).
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/matmul_kquants.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep (must come first: it re-includes this file)
// clang-format on

#include "hwy/highway.h"
#include "specula/kernels/kernels.h"
#include "src/kernels/matmul_int8-inl.h"
#include "src/kernels/matmul_iq4xs-inl.h"
#include "src/kernels/matmul_quant-inl.h"
#include "src/kernels/matmul_sdot-inl.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {

// Whether this target multiplies t's weights with int8 activation codes: Q4_K, Q5_K, Q6_K, Q3_K,
// Q2_K and IQ4_XS on x86, and on NEON where the CPU has SDOT (dot_ext). The one place
// that says so, for the kernels and for KernelTable::act_quant alike.
bool Int8Dtype(DType t, bool dot_ext) {
  const bool int8_type = IsScaleMinType(t) || t == DType::kQ6_K || t == DType::kQ3_K ||
                         t == DType::kQ2_K || t == DType::kIQ4_XS;
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  (void)dot_ext;
  return int8_type;
#elif HWY_TARGET == HWY_NEON && HWY_ARCH_ARM_A64
  return int8_type && dot_ext;
#else
  (void)dot_ext;
  (void)int8_type;
  return false;
#endif
}

ActQuant KQuantActs(DType t, bool dot_ext) {
  return Int8Dtype(t, dot_ext) ? ActQuant::kInt8SuperBlock : ActQuant::kInt16Row;
}

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// The x86 int8 kernel of a.w.dtype (one of Int8Dtype's).
template <bool kAvxVnni>
void MatMulRowsInt8X86(const MatMulRowsArgs& a) {
  switch (a.w.dtype) {
    case DType::kQ4_K:
      return MatMulRowsScaleMin8<DType::kQ4_K, kAvxVnni>(a);
    case DType::kQ5_K:
      return MatMulRowsScaleMin8<DType::kQ5_K, kAvxVnni>(a);
    case DType::kQ6_K:
      return MatMulRowsSub16<DType::kQ6_K, kAvxVnni>(a);
    case DType::kIQ4_XS:
      return MatMulRowsIQ4XS8<kAvxVnni>(a);
    case DType::kQ3_K:
      return MatMulRowsSub16<DType::kQ3_K, kAvxVnni>(a);
    default:
      return MatMulRowsSub16<DType::kQ2_K, kAvxVnni>(a);
  }
}
#endif

// The int8 kernels of Int8Dtype's types; dot_ext: AVX-VNNI on AVX2 (where the CPU has it), SDOT
// on NEON.
void MatMulRowsInt8(const MatMulRowsArgs& a, bool dot_ext) {
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  return HWY_TARGET == HWY_AVX2 && dot_ext ? MatMulRowsInt8X86<true>(a)
                                           : MatMulRowsInt8X86<false>(a);
#elif HWY_TARGET == HWY_NEON && HWY_ARCH_ARM_A64
  (void)dot_ext;
  const DType t = a.w.dtype;
  if (t == DType::kQ4_K) return MatMulRowsSdot<DType::kQ4_K>(a);
  if (t == DType::kQ5_K) return MatMulRowsSdot<DType::kQ5_K>(a);
  if (t == DType::kQ3_K) return MatMulRowsSdot<DType::kQ3_K>(a);
  if (t == DType::kQ2_K) return MatMulRowsSdot<DType::kQ2_K>(a);
  if (t == DType::kIQ4_XS) return MatMulRowsSdot<DType::kIQ4_XS>(a);
  return MatMulRowsSdot<DType::kQ6_K>(a);
#else
  (void)a;
  (void)dot_ext;
#endif
}

void MatMulRowsKQuants(const MatMulRowsArgs& a, bool dot_ext) {
  if (Int8Dtype(a.w.dtype, dot_ext)) return MatMulRowsInt8(a, dot_ext);
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
