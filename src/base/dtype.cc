#include "specula/base/dtype.h"

#include <algorithm>
#include <cmath>

namespace specula {

float F16ToF32(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);  // subnormal (or zero)
  } else if (exp == 31) {
    v = mant ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400u), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

namespace {

// Q6_K: where value v (0..255) of a super-block keeps its 6-bit code.
struct Q6Pos {
  size_t ql, qh;
  int ql_shift, qh_shift;
};
Q6Pos Q6Position(size_t v) {
  const size_t n = v / 128, p = v % 128, g = p / 32, l = p % 32;
  return {64 * n + (g & 1) * 32 + l, 32 * n + l, g >= 2 ? 4 : 0, static_cast<int>(2 * g)};
}

}  // namespace

float DequantizeOne(DType t, const uint8_t* blocks, size_t i) {
  if (t == DType::kQ3_K || t == DType::kQ2_K) {
    const size_t b = i / static_cast<size_t>(kSuperBlock), v = i % static_cast<size_t>(kSuperBlock);
    const uint8_t* blk = blocks + b * DTypeSize(t);
    uint16_t dh;
    if (t == DType::kQ3_K) {
      std::memcpy(&dh, blk + 108, 2);
      const int high = (blk[v % 32] >> (v / 32)) & 1;
      const int q = K2BitCode(blk + 32, v) - (high ? 0 : 4);
      const float dl =
          F16ToF32(dh) * static_cast<float>(Q3KScale(blk + 96, static_cast<int>(v / 16)) - 32);
      return dl * static_cast<float>(q);
    }
    uint16_t mh;
    std::memcpy(&dh, blk + 80, 2);
    std::memcpy(&mh, blk + 82, 2);
    const uint8_t sc = blk[v / 16];
    // As ggml: the sub-block's scale and min first, then dl * q - ml.
    const float dl = F16ToF32(dh) * static_cast<float>(sc & 15);
    const float ml = F16ToF32(mh) * static_cast<float>(sc >> 4);
    return dl * static_cast<float>(K2BitCode(blk + 16, v)) - ml;
  }
  if (t == DType::kIQ4_XS) {
    const size_t b = i / static_cast<size_t>(kSuperBlock), v = i % static_cast<size_t>(kSuperBlock);
    const uint8_t* blk = blocks + b * DTypeSize(t);
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const int j = static_cast<int>(v / 32), l = static_cast<int>(v % 32);
    const uint8_t byte = blk[8 + 16 * j + l % 16];
    const float dl = F16ToF32(dh) * static_cast<float>(IQ4XSScale(blk, j) - 32);
    return dl * static_cast<float>(kIQ4Values[l < 16 ? byte & 15 : byte >> 4]);
  }
  if (IsScaleMinType(t)) {
    const size_t b = i / static_cast<size_t>(kSuperBlock), v = i % static_cast<size_t>(kSuperBlock);
    const uint8_t* blk = blocks + b * DTypeSize(t);
    uint16_t dh, mh;
    std::memcpy(&dh, blk, 2);
    std::memcpy(&mh, blk + 2, 2);
    const int j = static_cast<int>(v / 32);
    int sc, m;
    Q4KScaleMin(blk + 4, j, &sc, &m);
    const size_t qs = t == DType::kQ5_K ? 48 : 16;
    const uint8_t byte = blk[qs + 32 * (j / 2) + v % 32];
    int q = j % 2 ? byte >> 4 : byte & 15;
    if (t == DType::kQ5_K) q |= ((blk[16 + v % 32] >> j) & 1) << 4;
    return F16ToF32(dh) * static_cast<float>(sc) * static_cast<float>(q) -
           F16ToF32(mh) * static_cast<float>(m);
  }
  if (t == DType::kQ6_K) {
    const size_t b = i / static_cast<size_t>(kSuperBlock), v = i % static_cast<size_t>(kSuperBlock);
    const uint8_t* blk = blocks + b * DTypeSize(t);
    uint16_t dh;
    std::memcpy(&dh, blk + 208, 2);
    const Q6Pos pos = Q6Position(v);
    const int q =
        (((blk[pos.ql] >> pos.ql_shift) & 15) | (((blk[128 + pos.qh] >> pos.qh_shift) & 3) << 4)) -
        32;
    return F16ToF32(dh) * static_cast<float>(static_cast<int8_t>(blk[192 + v / 16])) *
           static_cast<float>(q);
  }
  const size_t b = i / static_cast<size_t>(kQuantBlock), j = i % static_cast<size_t>(kQuantBlock);
  const uint8_t* blk = blocks + b * DTypeSize(t);
  uint16_t dh;
  std::memcpy(&dh, blk, 2);
  const float d = F16ToF32(dh);
  if (t == DType::kQ8_0) return d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
  // Q4_1 and Q5_1 as ggml computes them: q * d + m, rounded twice (two statements, so that no
  // compiler fuses them into one multiply-add).
  const auto plus_min = [&](int q) {
    uint16_t mh;
    std::memcpy(&mh, blk + 2, 2);
    const float product = static_cast<float>(q) * d;
    return product + F16ToF32(mh);
  };
  if (t == DType::kQ5_0) return static_cast<float>(Q5Code(blk, t, j) - 16) * d;
  if (t == DType::kQ5_1) return plus_min(Q5Code(blk, t, j));
  if (t == DType::kQ4_1) {
    const uint8_t q = blk[4 + (j & 15)];
    return plus_min(j < 16 ? (q & 15) : (q >> 4));
  }
  const uint8_t q = blk[2 + (j & 15)];
  if (t == DType::kIQ4_NL) return d * static_cast<float>(kIQ4Values[j < 16 ? q & 15 : q >> 4]);
  return d * static_cast<float>((j < 16 ? (q & 15) : (q >> 4)) - 8);
}

namespace {

// Q4_K and Q5_K: per 256 values, 8 sub-blocks of 32 with 6-bit scales and mins, 4- or 5-bit
// codes.
void QuantizeScaleMin(DType t, const float* x, int64_t n, uint8_t* out) {
  const int levels = t == DType::kQ5_K ? 31 : 15;
  const size_t qs = t == DType::kQ5_K ? 48 : 16;  // Q5_K's qh[32] comes first
  for (int64_t b = 0; b < n / kSuperBlock; ++b, x += kSuperBlock, out += DTypeSize(t)) {
    // Per 32 values: x ~ step * q - low with q in 0..levels over [min(x, 0), max(x)].
    float step[8], low[8], max_step = 0.0f, max_low = 0.0f;
    for (int j = 0; j < 8; ++j) {
      float lo = 0.0f, hi = 0.0f;
      for (int l = 0; l < 32; ++l) {
        lo = std::min(lo, x[32 * j + l]);
        hi = std::max(hi, x[32 * j + l]);
      }
      step[j] = (hi - lo) / static_cast<float>(levels);
      low[j] = -lo;
      max_step = std::max(max_step, step[j]);
      max_low = std::max(max_low, low[j]);
    }
    std::memset(out, 0, DTypeSize(t));
    const uint16_t dh = F32ToF16(max_step / 63.0f), mh = F32ToF16(max_low / 63.0f);
    std::memcpy(out, &dh, 2);
    std::memcpy(out + 2, &mh, 2);
    const float d = F16ToF32(dh), dmin = F16ToF32(mh);
    uint8_t* sc_bytes = out + 4;
    for (int j = 0; j < 8; ++j) {
      const int sc = d > 0.0f ? std::clamp(static_cast<int>(std::lround(step[j] / d)), 0, 63) : 0;
      const int m =
          dmin > 0.0f ? std::clamp(static_cast<int>(std::lround(low[j] / dmin)), 0, 63) : 0;
      if (j < 4) {
        sc_bytes[j] |= static_cast<uint8_t>(sc);
        sc_bytes[j + 4] |= static_cast<uint8_t>(m);
      } else {
        sc_bytes[j + 4] = static_cast<uint8_t>((sc & 0xF) | ((m & 0xF) << 4));
        sc_bytes[j - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
        sc_bytes[j] |= static_cast<uint8_t>((m >> 4) << 6);
      }
      const float ds = d * static_cast<float>(sc), dm = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const int q =
            ds > 0.0f
                ? std::clamp(static_cast<int>(std::lround((x[32 * j + l] + dm) / ds)), 0, levels)
                : 0;
        out[qs + 32 * (j / 2) + l] |= static_cast<uint8_t>(j % 2 ? (q & 15) << 4 : q & 15);
        if (t == DType::kQ5_K) out[16 + l] |= static_cast<uint8_t>((q >> 4) << j);
      }
    }
  }
}

// The value of x[0..n) with the largest magnitude, with its sign (the first of equals).
float SignedMax(const float* x, int n) {
  float amax = 0.0f, maxv = 0.0f;
  for (int l = 0; l < n; ++l) {
    if (std::fabs(x[l]) > amax) {
      amax = std::fabs(x[l]);
      maxv = x[l];
    }
  }
  return maxv;
}

// Q6_K: per 256 values, 16 sub-blocks of 16 with 8-bit scales, 6-bit codes.
void QuantizeQ6K(const float* x, int64_t n, uint8_t* out) {
  const DType t = DType::kQ6_K;
  for (int64_t b = 0; b < n / kSuperBlock; ++b, x += kSuperBlock, out += DTypeSize(t)) {
    float scale[16], max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int s = 0; s < 16; ++s) {  // per 16 values: the largest magnitude maps to -32
      scale[s] = SignedMax(x + 16 * s, 16) / -32.0f;
      if (std::fabs(scale[s]) > max_abs_scale) {
        max_abs_scale = std::fabs(scale[s]);
        max_scale = scale[s];
      }
    }
    std::memset(out, 0, DTypeSize(t));
    const float iscale = max_scale != 0.0f ? -128.0f / max_scale : 0.0f;
    const float d = iscale != 0.0f ? 1.0f / iscale : 0.0f;
    const uint16_t dh = F32ToF16(d);
    std::memcpy(out + 208, &dh, 2);
    const float dq = F16ToF32(dh);
    for (int s = 0; s < 16; ++s) {
      const int sc = std::min(127, static_cast<int>(std::lround(iscale * scale[s])));
      out[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(sc));
      const float ds = dq * static_cast<float>(sc);
      for (int j = 0; j < 16; ++j) {
        const int v = 16 * s + j;
        int q = ds != 0.0f ? static_cast<int>(std::lround(x[v] / ds)) : 0;
        q = std::clamp(q, -32, 31) + 32;
        const Q6Pos pos = Q6Position(static_cast<size_t>(v));
        out[pos.ql] |= static_cast<uint8_t>((q & 15) << pos.ql_shift);
        out[128 + pos.qh] |= static_cast<uint8_t>(((q >> 4) & 3) << pos.qh_shift);
      }
    }
  }
}

// The index of the kIQ4Values point nearest to v (the lower one on a tie).
int NearestIQ4(float v) {
  int best = 0;
  for (int k = 1; k < 16; ++k) {
    if (std::fabs(v - kIQ4Values[k]) < std::fabs(v - kIQ4Values[best])) best = k;
  }
  return best;
}

// 32 values as IQ4_NL nibbles against the scale d (qs[16]: value l in nibble l / 16 of byte l %
// 16).
void PackIQ4(const float* x, float d, uint8_t* qs) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int l = 0; l < 16; ++l) {
    qs[l] = static_cast<uint8_t>(NearestIQ4(x[l] * id) | (NearestIQ4(x[l + 16] * id) << 4));
  }
}

// IQ4_NL: per 32 values, the largest magnitude maps to kIQ4Values[0].
void QuantizeIQ4NL(const float* x, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / kQuantBlock; ++b, x += kQuantBlock, out += 18) {
    const uint16_t dh = F32ToF16(SignedMax(x, 32) / kIQ4Values[0]);
    std::memcpy(out, &dh, 2);
    PackIQ4(x, F16ToF32(dh), out + 2);
  }
}

// IQ4_XS: per 32 values a scale as IQ4_NL's, those 8 scales as 6-bit multiples (minus 32) of d.
void QuantizeIQ4XS(const float* x, int64_t n, uint8_t* out) {
  const DType t = DType::kIQ4_XS;
  for (int64_t b = 0; b < n / kSuperBlock; ++b, x += kSuperBlock, out += DTypeSize(t)) {
    float scale[8], max_scale = 0.0f;
    for (int j = 0; j < 8; ++j) {
      scale[j] = SignedMax(x + 32 * j, 32) / kIQ4Values[0];
      if (std::fabs(scale[j]) > std::fabs(max_scale)) max_scale = scale[j];
    }
    std::memset(out, 0, DTypeSize(t));
    const uint16_t dh = F32ToF16(-max_scale / 32.0f);
    std::memcpy(out, &dh, 2);
    const float d = F16ToF32(dh);
    int scales_h = 0;
    for (int j = 0; j < 8; ++j) {
      const int ls =
          d != 0.0f ? std::clamp(static_cast<int>(std::lround(scale[j] / d)), -32, 31) + 32 : 32;
      out[4 + j / 2] |= static_cast<uint8_t>((ls & 15) << (4 * (j % 2)));
      scales_h |= (ls >> 4) << (2 * j);
      PackIQ4(x + 32 * j, d * static_cast<float>(ls - 32), out + 8 + 16 * j);
    }
    out[2] = static_cast<uint8_t>(scales_h & 0xFF);
    out[3] = static_cast<uint8_t>(scales_h >> 8);
  }
}

// Q4_1 and Q5_1: per 32 values, [min, max] in 15 or 31 steps; Q5_0: the largest magnitude maps
// to -16.
void QuantizeLegacy5(DType t, const float* x, int64_t n, uint8_t* out) {
  const bool with_min = IsMinBlockType(t);
  const int levels = t == DType::kQ4_1 ? 15 : 31;
  for (int64_t b = 0; b < n / kQuantBlock; ++b, x += kQuantBlock, out += DTypeSize(t)) {
    std::memset(out, 0, DTypeSize(t));
    float lo = x[0], hi = x[0];
    for (int l = 1; l < 32; ++l) {
      lo = std::min(lo, x[l]);
      hi = std::max(hi, x[l]);
    }
    const float d = with_min ? (hi - lo) / static_cast<float>(levels) : SignedMax(x, 32) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = F32ToF16(d), mh = F32ToF16(lo);
    std::memcpy(out, &dh, 2);
    if (with_min) std::memcpy(out + 2, &mh, 2);
    uint32_t qh = 0;
    for (int l = 0; l < 32; ++l) {
      const float v = with_min ? (x[l] - lo) * id + 0.5f : x[l] * id + 16.5f;
      const int q = std::clamp(static_cast<int>(v), 0, levels);
      out[CodesOffset(t) + (l & 15)] |= static_cast<uint8_t>((q & 15) << (l < 16 ? 0 : 4));
      qh |= static_cast<uint32_t>(q >> 4) << l;
    }
    if (t != DType::kQ4_1) std::memcpy(out + FifthBitsOffset(t), &qh, 4);
  }
}

// Q3_K: per 16 values, the largest magnitude maps to code -4; those 16 scales as 6-bit multiples
// (minus 32) of one f16 d.
void QuantizeQ3K(const float* x, int64_t n, uint8_t* out) {
  const DType t = DType::kQ3_K;
  for (int64_t b = 0; b < n / kSuperBlock; ++b, x += kSuperBlock, out += DTypeSize(t)) {
    float scale[16], max_scale = 0.0f;
    for (int s = 0; s < 16; ++s) {
      scale[s] = SignedMax(x + 16 * s, 16) / -4.0f;  // the largest magnitude maps to code -4
      if (std::fabs(scale[s]) > std::fabs(max_scale)) max_scale = scale[s];
    }
    std::memset(out, 0, DTypeSize(t));
    const uint16_t dh = F32ToF16(max_scale / -32.0f);
    std::memcpy(out + 108, &dh, 2);
    const float d = F16ToF32(dh);
    uint8_t* scales = out + 96;
    for (int s = 0; s < 16; ++s) {
      const int ls =
          d != 0.0f ? std::clamp(static_cast<int>(std::lround(scale[s] / d)), -32, 31) + 32 : 32;
      scales[s % 8] |= static_cast<uint8_t>((ls & 15) << (s < 8 ? 0 : 4));
      scales[8 + s % 4] |= static_cast<uint8_t>((ls >> 4) << (2 * (s / 4)));
      const float dl = d * static_cast<float>(ls - 32);
      for (int l = 0; l < 16; ++l) {
        const size_t v = static_cast<size_t>(16 * s + l);
        const int q =
            dl != 0.0f ? std::clamp(static_cast<int>(std::lround(x[v] / dl)), -4, 3) + 4 : 4;
        out[32 + 32 * (v / 128) + v % 32] |=
            static_cast<uint8_t>((q & 3) << (2 * ((v % 128) / 32)));
        out[v % 32] |= static_cast<uint8_t>((q >> 2) << (v / 32));
      }
    }
  }
}

// Q2_K: per 16 values the range [min(x, 0), max(x)] in 3 steps, scales and mins quantized to 4
// bits against f16 d and dmin.
void QuantizeQ2K(const float* x, int64_t n, uint8_t* out) {
  const DType t = DType::kQ2_K;
  for (int64_t b = 0; b < n / kSuperBlock; ++b, x += kSuperBlock, out += DTypeSize(t)) {
    float step[16], low[16], max_step = 0.0f, max_low = 0.0f;
    for (int s = 0; s < 16; ++s) {
      float lo = 0.0f, hi = 0.0f;
      for (int l = 0; l < 16; ++l) {
        lo = std::min(lo, x[16 * s + l]);
        hi = std::max(hi, x[16 * s + l]);
      }
      step[s] = (hi - lo) / 3.0f;
      low[s] = -lo;
      max_step = std::max(max_step, step[s]);
      max_low = std::max(max_low, low[s]);
    }
    std::memset(out, 0, DTypeSize(t));
    const uint16_t dh = F32ToF16(max_step / 15.0f), mh = F32ToF16(max_low / 15.0f);
    std::memcpy(out + 80, &dh, 2);
    std::memcpy(out + 82, &mh, 2);
    const float d = F16ToF32(dh), dmin = F16ToF32(mh);
    for (int s = 0; s < 16; ++s) {
      const int sc = d > 0.0f ? std::clamp(static_cast<int>(std::lround(step[s] / d)), 0, 15) : 0;
      const int m =
          dmin > 0.0f ? std::clamp(static_cast<int>(std::lround(low[s] / dmin)), 0, 15) : 0;
      out[s] = static_cast<uint8_t>(sc | (m << 4));
      const float ds = d * static_cast<float>(sc), dm = dmin * static_cast<float>(m);
      for (int l = 0; l < 16; ++l) {
        const size_t v = static_cast<size_t>(16 * s + l);
        const int q =
            ds > 0.0f ? std::clamp(static_cast<int>(std::lround((x[v] + dm) / ds)), 0, 3) : 0;
        out[16 + 32 * (v / 128) + v % 32] |= static_cast<uint8_t>(q << (2 * ((v % 128) / 32)));
      }
    }
  }
}

// Q8_0 and Q4_0: per 32 values, one f16 scale.
void QuantizeBlocks32(DType t, const float* x, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / kQuantBlock; ++b, x += kQuantBlock, out += DTypeSize(t)) {
    const float maxv = SignedMax(x, kQuantBlock), amax = std::fabs(maxv);
    if (t == DType::kQ8_0) {
      const float d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      const uint16_t dh = F32ToF16(d);
      std::memcpy(out, &dh, 2);
      for (int j = 0; j < kQuantBlock; ++j)
        out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(x[j] * id)));
    } else {
      const float d = maxv / -8.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      const uint16_t dh = F32ToF16(d);
      std::memcpy(out, &dh, 2);
      for (int j = 0; j < 16; ++j) {
        const int lo = std::min(15, static_cast<int>(x[j] * id + 8.5f));
        const int hi = std::min(15, static_cast<int>(x[j + 16] * id + 8.5f));
        out[2 + j] = static_cast<uint8_t>(lo | (hi << 4));
      }
    }
  }
}

}  // namespace

void QuantizeRow(DType t, const float* x, int64_t n, uint8_t* out) {
  if (IsScaleMinType(t)) {
    QuantizeScaleMin(t, x, n, out);
  } else if (t == DType::kIQ4_NL) {
    QuantizeIQ4NL(x, n, out);
  } else if (t == DType::kIQ4_XS) {
    QuantizeIQ4XS(x, n, out);
  } else if (t == DType::kQ4_1 || t == DType::kQ5_0 || t == DType::kQ5_1) {
    QuantizeLegacy5(t, x, n, out);
  } else if (t == DType::kQ6_K) {
    QuantizeQ6K(x, n, out);
  } else if (t == DType::kQ3_K) {
    QuantizeQ3K(x, n, out);
  } else if (t == DType::kQ2_K) {
    QuantizeQ2K(x, n, out);
  } else {
    QuantizeBlocks32(t, x, n, out);
  }
}

std::string BlockTypeNames() {
  std::string out;
  for (DType t : kBlockTypes) out += (out.empty() ? "" : ", ") + std::string(DTypeName(t));
  return out;
}

uint16_t F32ToF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {  // result is subnormal or zero: round mant * 2^24 to nearest even
    float a;
    std::memcpy(&a, &abs, 4);
    const float scaled = a * 16777216.0f;  // exact: a < 2^-14 so no overflow
    const uint32_t m = static_cast<uint32_t>(std::nearbyint(scaled));
    return static_cast<uint16_t>(sign | m);
  }
  // Normal: rebias exponent (127 -> 15), round the 13 dropped mantissa bits to nearest even.
  uint32_t r = abs - 0x38000000u;
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
}

}  // namespace specula
