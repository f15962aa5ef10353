// Storage dtypes of weights and the scalar conversions used by references and small tensors.
#pragma once

#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>

namespace specula {

// Element dtypes store one value per DTypeSize() bytes. Block dtypes store 32 values per block
// (or 256 per super-block, the k-quants and IQ4_XS) in GGUF's layouts, so quantized rows
// interoperate with llama.cpp's files:
//   Q8_0: {f16 d; int8 q[32]}    34 bytes, x = d * q
//   Q4_0: {f16 d; uint8 q[16]}   18 bytes, x_j = d * ((q[j] & 15) - 8),
//         x_{j+16} = d * ((q[j] >> 4) - 8)
//   Q6_K: {uint8 ql[128]; uint8 qh[64]; int8 sc[16]; f16 d}   210 bytes per 256 values: value v
//         has scale d * sc[v / 16] and a 6-bit code (4 bits in ql, 2 in qh) minus 32.
//   Q4_K: {f16 d; f16 dmin; uint8 scales[12]; uint8 qs[128]}   144 bytes per 256 values: sub-block
//         j of 32 values has a 6-bit scale sc_j and min m_j (packed in `scales`), value
//         x = d * sc_j * q - dmin * m_j with q a 4-bit code (qs[32 (j / 2) + l], low nibble for
//         even j, high for odd).
//   Q5_K: {f16 d; f16 dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]}   176 bytes per 256
//         values: Q4_K with 5-bit codes, the fifth bit of value 32 j + l being bit j of qh[l].
//   Q4_1: {f16 d; f16 m; uint8 qs[16]}   20 bytes, Q4_0's nibbles q (0..15): x = q * d + m
//   Q5_0: {f16 d; uint8 qh[4]; uint8 qs[16]}   22 bytes, Q4_0's nibbles with a fifth bit (bit v of
//         the little-endian uint32 qh for value v): x = d * (q - 16)
//   Q5_1: {f16 d; f16 m; uint8 qh[4]; uint8 qs[16]}   24 bytes, Q5_0's codes: x = q * d + m
//   IQ4_NL: {f16 d; uint8 qs[16]}   18 bytes per 32 values, Q4_0's nibbles, each an index into
//         kIQ4Values (a non-uniform grid): x = d * kIQ4Values[q].
//   IQ4_XS: {f16 d; uint16 scales_h; uint8 scales_l[4]; uint8 qs[128]}   136 bytes per 256 values:
//         sub-block j of 32 has a 6-bit scale ls_j (low 4 bits: nibble j % 2 of scales_l[j / 2];
//         high 2: bits 2j, 2j + 1 of scales_h) and IQ4_NL's nibbles at qs[16 j ..]:
//         x = (d * (ls_j - 32)) * kIQ4Values[q].
//   Q3_K: {uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; f16 d}   110 bytes per 256 values:
//         sub-block s of 16 has a 6-bit scale ls_s (Q3KScale); value v has a 2-bit code
//         (qs[32 (v / 128) + v % 32] >> 2 ((v % 128) / 32)) & 3 and a high bit
//         hmask[v % 32] >> (v / 32) & 1: x = (d * (ls_s - 32)) * (code - (high ? 0 : 4)).
//   Q2_K: {uint8 scales[16]; uint8 qs[64]; f16 d; f16 dmin}   84 bytes per 256 values: sub-block s
//         of 16 has a 4-bit scale sc_s (low nibble of scales[s]) and min m_s (high nibble), value v
//         Q3_K's 2-bit code q: x = (d * sc_s) * q - dmin * m_s.
enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kI64,
  kI32,
  kU8,
  kQ8_0,
  kQ4_0,
  kQ6_K,
  kQ4_K,
  kQ5_K,
  kIQ4_NL,
  kIQ4_XS,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ3_K,
  kQ2_K
};

// IQ4_NL's and IQ4_XS's 16 code values (llama.cpp's kvalues_iq4nl).
inline constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

// The block dtypes, in the order messages list them.
inline constexpr DType kBlockTypes[] = {DType::kQ8_0, DType::kQ4_0,   DType::kQ6_K,   DType::kQ5_K,
                                        DType::kQ4_K, DType::kIQ4_NL, DType::kIQ4_XS, DType::kQ4_1,
                                        DType::kQ5_0, DType::kQ5_1,   DType::kQ3_K,   DType::kQ2_K};

// (A chain of comparisons, not a search of kBlockTypes: GCC then folds it for a constant `t`.)
constexpr bool IsBlockType(DType t) {
  return t == DType::kQ8_0 || t == DType::kQ4_0 || t == DType::kQ6_K || t == DType::kQ4_K ||
         t == DType::kQ5_K || t == DType::kIQ4_NL || t == DType::kIQ4_XS || t == DType::kQ4_1 ||
         t == DType::kQ5_0 || t == DType::kQ5_1 || t == DType::kQ3_K || t == DType::kQ2_K;
}
static_assert([] {
  for (DType t : kBlockTypes) {
    if (!IsBlockType(t)) return false;
  }
  return std::size(kBlockTypes) == 12;  // IsBlockType lists exactly these
}());
// The 32-value types with a min (x = q * d + m).
constexpr bool IsMinBlockType(DType t) { return t == DType::kQ4_1 || t == DType::kQ5_1; }
// "Q8_0, Q4_0, ..., Q5_1": the block types, for messages.
std::string BlockTypeNames();
constexpr bool IsSuperBlockType(DType t) {
  return t == DType::kQ6_K || t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kIQ4_XS ||
         t == DType::kQ3_K || t == DType::kQ2_K;
}
// The k-quants with a scale and a min per 32 values (x = d sc_j q - dmin m_j).
constexpr bool IsScaleMinType(DType t) { return t == DType::kQ4_K || t == DType::kQ5_K; }
constexpr int64_t kQuantBlock = 32;   // values per Q8_0/Q4_0 block
constexpr int64_t kSuperBlock = 256;  // values per k-quant super-block
constexpr int64_t BlockValues(DType t) { return IsSuperBlockType(t) ? kSuperBlock : kQuantBlock; }

// Bytes per element (element dtypes) or per block (block dtypes).
constexpr size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kI64:
      return 8;
    case DType::kI32:
      return 4;
    case DType::kU8:
      return 1;
    case DType::kQ8_0:
      return 34;
    case DType::kQ4_0:
      return 18;
    case DType::kQ6_K:
      return 210;
    case DType::kQ4_K:
      return 144;
    case DType::kQ5_K:
      return 176;
    case DType::kIQ4_NL:
      return 18;
    case DType::kIQ4_XS:
      return 136;
    case DType::kQ4_1:
      return 20;
    case DType::kQ5_0:
      return 22;
    case DType::kQ5_1:
      return 24;
    case DType::kQ3_K:
      return 110;
    case DType::kQ2_K:
      return 84;
  }
  return 0;
}

// Q4_K's 6-bit scale and min of sub-block j (0..7) from its 12 packed bytes: sub-blocks 0-3 in the
// low 6 bits of bytes j and j + 4, sub-blocks 4-7 in the nibbles of bytes 8-11 plus the top two
// bits of bytes 0-7.
inline void Q4KScaleMin(const uint8_t* scales, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// Where a 32-value block keeps its codes (qs) and its fifth bits (qh), in bytes.
constexpr size_t CodesOffset(DType t) {
  return t == DType::kQ5_1 ? 8 : t == DType::kQ5_0 ? 6 : t == DType::kQ4_1 ? 4 : 2;
}
constexpr size_t FifthBitsOffset(DType t) { return t == DType::kQ5_1 ? 4 : 2; }

// The 5-bit code of value j (0..31) of a Q5_0/Q5_1 block.
inline int Q5Code(const uint8_t* block, DType t, size_t j) {
  uint32_t qh;
  std::memcpy(&qh, block + FifthBitsOffset(t), 4);
  const uint8_t q = block[CodesOffset(t) + (j & 15)];
  return (j < 16 ? (q & 15) : (q >> 4)) | static_cast<int>(((qh >> j) & 1u) << 4);
}

// IQ4_XS's 6-bit scale of sub-block j (0..7) from scales_h (little-endian at h) and scales_l.
inline int IQ4XSScale(const uint8_t* block, int j) {
  const int h = block[2] | (block[3] << 8);
  return ((block[4 + j / 2] >> (4 * (j % 2))) & 15) | (((h >> (2 * j)) & 3) << 4);
}

// Q3_K's 6-bit scale of sub-block s (0..15) from its 12 packed bytes: the low 4 bits are nibble
// s / 8 of byte s % 8, the high 2 bits are bits 2 (s / 4), + 1 of byte 8 + s % 4.
inline int Q3KScale(const uint8_t* scales, int s) {
  const int low = s < 8 ? scales[s] & 15 : scales[s - 8] >> 4;
  return low | (((scales[8 + s % 4] >> (2 * (s / 4))) & 3) << 4);
}

// The 2-bit code of value v (0..255) of a Q3_K or Q2_K super-block from its qs[64].
inline int K2BitCode(const uint8_t* qs, size_t v) {
  return (qs[32 * (v / 128) + v % 32] >> (2 * ((v % 128) / 32))) & 3;
}

// Bytes of `n` consecutive values (n a multiple of 32 for block dtypes).
constexpr size_t StorageBytes(DType t, int64_t n) {
  return IsBlockType(t) ? static_cast<size_t>(n / BlockValues(t)) * DTypeSize(t)
                        : static_cast<size_t>(n) * DTypeSize(t);
}

// Names as safetensors (element dtypes) and GGUF (block dtypes) spell them.
constexpr std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kU8:
      return "U8";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
    case DType::kQ6_K:
      return "Q6_K";
    case DType::kQ4_K:
      return "Q4_K";
    case DType::kQ5_K:
      return "Q5_K";
    case DType::kIQ4_NL:
      return "IQ4_NL";
    case DType::kIQ4_XS:
      return "IQ4_XS";
    case DType::kQ4_1:
      return "Q4_1";
    case DType::kQ5_0:
      return "Q5_0";
    case DType::kQ5_1:
      return "Q5_1";
    case DType::kQ3_K:
      return "Q3_K";
    case DType::kQ2_K:
      return "Q2_K";
  }
  return "?";
}

inline float BF16ToF32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as PyTorch does when casting f32 -> bf16. NaN stays NaN.
inline uint16_t F32ToBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

// F16ToF32 for the hot path: normal numbers by bit manipulation and subnormals (mantissa * 2^-24,
// both exact in f32) by one conversion and multiply; only inf/NaN go through F16ToF32. Block scales
// of small weights are often subnormal in f16 (a Q4_K super-block scale d below 2^-14), so that
// path is hot too.
inline float F16ToF32Fast(uint16_t h) {
  const uint32_t exp = (h >> 10) & 0x1fu;
  if (exp == 0) {
    const float mag = static_cast<float>(h & 0x3ffu) * 0x1p-24f;
    return (h & 0x8000u) ? -mag : mag;
  }
  if (exp == 31) return F16ToF32(h);
  const uint32_t u =
      (static_cast<uint32_t>(h & 0x8000u) << 16) | (((h & 0x7fffu) + 0x1c000u) << 13);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float DequantizeOne(DType t, const uint8_t* blocks, size_t i);  // value i of a block-dtype buffer

// Reads value i of a float or quantized buffer as f32. memcpy because tensors in a safetensors file
// need not be aligned to their element size.
inline float LoadAsF32(DType t, const void* data, size_t i) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  if (t == DType::kF32) {
    float f;
    std::memcpy(&f, bytes + 4 * i, 4);
    return f;
  }
  if (IsBlockType(t)) return DequantizeOne(t, bytes, i);
  uint16_t h;
  std::memcpy(&h, bytes + 2 * i, 2);
  return t == DType::kF16 ? F16ToF32(h) : BF16ToF32(h);
}

// Quantizes n values (a multiple of BlockValues(t)) into blocks of `t`, round to nearest, with
// GGUF's scale rules (Q8_0: d = max|x| / 127; Q4_0: d = x_maxabs / -8; Q5_0: x_maxabs / -16;
// Q4_1 and Q5_1: [min, max] in 15 or 31 steps; Q6_K: per 16 values a scale
// mapping the largest magnitude to -32, the 16 scales quantized to int8 against one f16 d; Q4_K:
// per 32 values the range [min(x, 0), max(x)] in 15 steps, scales and mins quantized to 6 bits
// against f16 d and dmin; Q5_K: the same in 31 steps; IQ4_NL: d maps the largest magnitude to
// kIQ4Values[0], each value takes the nearest grid point; IQ4_XS: the same per 32 values, those
// scales quantized to 6 bits against one f16 d; Q3_K: per 16 values the largest magnitude maps to
// code -4, scales as IQ4_XS's; Q2_K: per 16 values [min(x, 0), max(x)] in 3 steps, scales and mins
// quantized to 4 bits against f16 d and dmin).
void QuantizeRow(DType t, const float* x, int64_t n, uint8_t* out);

// Rounds an f32 to what `t` can store, then back (e.g. HF casts sqrt(H) to the weight dtype).
// Quantized tables were made from bf16 checkpoints (all official Gemma 4 weights are bf16), so they
// keep the bf16 rounding and a quantized model scales exactly like its source.
inline float RoundThrough(DType t, float f) {
  switch (t) {
    case DType::kF16:
      return F16ToF32(F32ToF16(f));
    case DType::kBF16:
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ6_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kIQ4_NL:
    case DType::kIQ4_XS:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ3_K:
    case DType::kQ2_K:
      return BF16ToF32(F32ToBF16(f));
    default:
      return f;
  }
}

}  // namespace specula
