#include "specula/kernels/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "specula/base/dtype.h"

namespace specula {
namespace {

TEST(Ops, RmsNormPlainWeight) {
  const std::vector<float> x = {1.0f, -2.0f, 3.0f, 0.5f};
  const std::vector<float> w = {0.5f, 1.0f, 2.0f, 0.0f};
  std::vector<float> y(4);
  RmsNorm(x.data(), w.data(), 4, 1e-6f, y.data());
  const double ms = (1 + 4 + 9 + 0.25) / 4.0;
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(y[i], x[i] / std::sqrt(ms + 1e-6) * w[i], 1e-6);  // w, not (1 + w)
  RmsNorm(x.data(), nullptr, 4, 1e-6f, y.data());
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], x[i] / std::sqrt(ms + 1e-6), 1e-6);
}

TEST(Ops, GeluTanhKnownValues) {
  EXPECT_NEAR(GeluTanh(0.0f), 0.0, 1e-7);
  EXPECT_NEAR(GeluTanh(1.0f), 0.8411920, 1e-6);  // torch gelu(approximate='tanh')
  EXPECT_NEAR(GeluTanh(-1.0f), -0.1588080, 1e-6);
  EXPECT_NEAR(GeluTanh(3.0f), 2.9963627, 1e-5);
}

TEST(Ops, ProportionalRopeFrequencies) {
  // Full layers: head_dim 512, 64 rotated pairs, exponent denominator 512 (not 128).
  const std::vector<float> inv = RopeInvFreq(512, 64, 1e6);
  ASSERT_EQ(inv.size(), 256u);
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_NEAR(inv[1], std::pow(1e6, -2.0 / 512), 1e-7);  // stored as f32
  EXPECT_NEAR(inv[63], std::pow(1e6, -126.0 / 512), 1e-8);
  for (int j = 64; j < 256; ++j) EXPECT_EQ(inv[static_cast<size_t>(j)], 0.0f);
}

TEST(Ops, RopeRotatesPairsJAndJPlusHalf) {
  const int d = 8;
  const std::vector<float> inv = RopeInvFreq(d, 2, 10000.0);  // pairs 0,1 rotate; 2,3 pass through
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> orig = x;
  ApplyRope(x.data(), d, inv.data(), 7);
  for (int j = 0; j < 2; ++j) {
    const double a = 7.0 * inv[static_cast<size_t>(j)];
    EXPECT_NEAR(x[j], orig[j] * std::cos(a) - orig[j + 4] * std::sin(a), 1e-5);
    EXPECT_NEAR(x[j + 4], orig[j + 4] * std::cos(a) + orig[j] * std::sin(a), 1e-5);
  }
  for (int j : {2, 3, 6, 7}) EXPECT_EQ(x[j], orig[j]);
  std::vector<float> y = orig;
  ApplyRope(y.data(), d, inv.data(), 0);
  EXPECT_EQ(y, orig);  // position 0 is the identity
}

// The table form is what the model runs: every head at a position shares one cos/sin table, and
// the rotation must keep ApplyRope's bits (sliding and proportional full-layer frequencies).
TEST(Ops, RopeTableMatchesApplyRopeBitExact) {
  for (const auto& [d, pairs] : {std::pair{256, 128}, std::pair{512, 64}}) {
    const std::vector<float> inv = RopeInvFreq(d, pairs, d == 256 ? 10000.0 : 1000000.0);
    std::vector<float> table(static_cast<size_t>(d));
    for (int pos : {0, 1, 37, 4095, 131071}) {
      std::vector<float> x(static_cast<size_t>(d)), y;
      for (int i = 0; i < d; ++i) x[static_cast<size_t>(i)] = std::sin(0.37f * i + pos) * 3.0f;
      y = x;
      ApplyRope(x.data(), d, inv.data(), pos);
      RopeCosSin(d, inv.data(), pos, table.data());
      ApplyRopeTable(y.data(), d, inv.data(), table.data());
      ASSERT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float)))
          << "head_dim " << d << " position " << pos;
    }
  }
}

TEST(Ops, SoftCap) {
  std::vector<float> v = {0.0f, 30.0f, -1000.0f, 3.0f};
  SoftCap(v.data(), v.size(), 30.0f);
  EXPECT_EQ(v[0], 0.0f);
  EXPECT_NEAR(v[1], 30.0 * std::tanh(1.0), 1e-5);
  EXPECT_NEAR(v[2], -30.0, 1e-4);
  EXPECT_NEAR(v[3], 30.0 * std::tanh(0.1), 1e-5);
}

TEST(DType, FastHalfConversionIsExact) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = F16ToF32(static_cast<uint16_t>(h)), b = F16ToF32Fast(static_cast<uint16_t>(h));
    if (std::isnan(a)) {
      ASSERT_TRUE(std::isnan(b)) << h;
    } else {
      ASSERT_EQ(std::memcmp(&a, &b, 4), 0) << h;  // bit for bit, including -0
    }
  }
}

TEST(DType, HalfConversionsRoundTripAndRound) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 3.14159f}) {
    EXPECT_NEAR(F16ToF32(F32ToF16(f)), f, std::fabs(f) * 1e-3 + 1e-7) << f;
  }
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xc000);
  EXPECT_EQ(F32ToF16(1e6f), 0x7c00);  // overflow to inf
  EXPECT_EQ(F32ToBF16(1.0f), 0x3f80);
  EXPECT_EQ(BF16ToF32(F32ToBF16(39.191837f)), 39.25f);  // sqrt(1536) as HF bf16 sees it
  EXPECT_EQ(BF16ToF32(F32ToBF16(73.321213f)), 73.5f);
  EXPECT_EQ(BF16ToF32(F32ToBF16(50.596443f)), 50.5f);
}

}  // namespace
}  // namespace specula

namespace specula {
namespace {

// GGUF Q8_0/Q4_0 blocks: layout, scale rules and error bounds.
TEST(Quant, Q6KLayoutAndErrorBound) {
  std::vector<float> x(512);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = std::sin(0.11f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 16));
  std::vector<uint8_t> q(StorageBytes(DType::kQ6_K, 512));
  ASSERT_EQ(q.size(), 420u);  // two 210-byte super-blocks
  QuantizeRow(DType::kQ6_K, x.data(), 512, q.data());
  for (size_t s = 0; s < 32; ++s) {  // per 16-value sub-block: error <= one 6-bit step of its range
    float amax = 0;
    for (size_t j = 0; j < 16; ++j) amax = std::max(amax, std::fabs(x[16 * s + j]));
    for (size_t j = 0; j < 16; ++j) {
      const size_t i = 16 * s + j;
      EXPECT_NEAR(LoadAsF32(DType::kQ6_K, q.data(), i), x[i], amax / 32 * 0.6 + amax * 0.02) << i;
    }
  }
  // Layout: value 0's code is the low nibble of ql[0] plus bits 0-1 of qh[0]; value 64 the high
  // nibble of ql[0] plus bits 4-5 of qh[0]; value 200 lives in the second half
  // (ql[64 + 40], qh[32 + 8]).
  std::vector<float> one(256, 0.0f);
  one[64] = -1.0f;  // the largest magnitude of its sub-block maps to code 0 (= -32); zeros to 32
  std::vector<uint8_t> b(210);
  QuantizeRow(DType::kQ6_K, one.data(), 256, b.data());
  EXPECT_EQ((b[0] >> 4) | (((b[128] >> 4) & 3) << 4), 0);  // value 64: code 0 (= -32)
  EXPECT_EQ((b[0] & 15) | ((b[128] & 3) << 4), 32);        // value 0: code 32 (= 0)
  EXPECT_NEAR(LoadAsF32(DType::kQ6_K, b.data(), 64), -1.0f, 0.01f);
}

// Q4_K and Q5_K: 512 values (two super-blocks of `super_block_bytes`) land within one code step
// of each 32-value sub-block's range [min(x, 0), max(x)], which `levels` steps span.
void ExpectScaleMinRoundTrip(DType t, int levels, size_t super_block_bytes) {
  std::vector<float> x(512);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = std::sin(0.13f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 32) / 8) + 0.3f;
  std::vector<uint8_t> q(StorageBytes(t, 512));
  ASSERT_EQ(q.size(), 2 * super_block_bytes);
  QuantizeRow(t, x.data(), 512, q.data());
  for (size_t s = 0; s < 16; ++s) {
    float lo = 0, hi = 0;
    for (size_t j = 0; j < 32; ++j) {
      lo = std::min(lo, x[32 * s + j]);
      hi = std::max(hi, x[32 * s + j]);
    }
    for (size_t j = 0; j < 32; ++j) {
      const size_t i = 32 * s + j;
      EXPECT_NEAR(LoadAsF32(t, q.data(), i), x[i], (hi - lo) / levels * 0.75 + 0.02)
          << DTypeName(t) << " " << i;
    }
  }
}

TEST(Quant, Q4_KRoundTripAndLayout) {
  ExpectScaleMinRoundTrip(DType::kQ4_K, 15, 144);
  // Layout: sub-blocks 0 and 1 share qs[0..31] (low, high nibble); sub-block 5's scale is the low
  // nibble of scales[9] plus the top bits of scales[1], its min the high nibble of scales[9] plus
  // the top bits of scales[5].
  std::vector<float> v(256, 0.0f);
  v[32 + 3] = 1.0f;    // sub-block 1: the only positive value -> code 15
  v[160 + 7] = -2.0f;  // sub-block 5: the min -> code 0, the zeros -> code 15
  std::vector<uint8_t> b(144);
  QuantizeRow(DType::kQ4_K, v.data(), 256, b.data());
  EXPECT_EQ(b[16 + 3] >> 4, 15);
  EXPECT_EQ(b[16 + 64 + 7] >> 4, 0);
  EXPECT_EQ(b[16 + 64 + 8] >> 4, 15);
  int sc = 0, m = 0;
  Q4KScaleMin(b.data() + 4, 5, &sc, &m);
  EXPECT_EQ(sc, ((b[4 + 9] & 15) | ((b[4 + 1] >> 6) << 4)));
  EXPECT_EQ(m, ((b[4 + 9] >> 4) | ((b[4 + 5] >> 6) << 4)));
  EXPECT_EQ(m, 63);  // the largest min of the super-block
  EXPECT_NEAR(LoadAsF32(DType::kQ4_K, b.data(), 35), 1.0f, 0.02f);
  EXPECT_NEAR(LoadAsF32(DType::kQ4_K, b.data(), 167), -2.0f, 0.02f);
  EXPECT_NEAR(LoadAsF32(DType::kQ4_K, b.data(), 168), 0.0f, 0.02f);
}

TEST(Quant, Q5_KRoundTripAndLayout) {
  ExpectScaleMinRoundTrip(DType::kQ5_K, 31, 176);
  // A block written by hand in llama.cpp's layout (block_q5_K: d, dmin, scales[12], qh[32],
  // qs[128]): value 32 j + l has the low nibble (even j) or high nibble (odd j) of qs[32 (j / 2)
  // + l] and, as its fifth bit, bit j of qh[l].
  std::vector<uint8_t> b(176, 0);
  const uint16_t d = F32ToF16(0.5f), dmin = F32ToF16(0.25f);
  std::memcpy(b.data(), &d, 2);
  std::memcpy(b.data() + 2, &dmin, 2);
  b[4 + 1] = 3;           // sub-block 1: scale 3
  b[4 + 5] = 2;           // sub-block 1: min 2
  b[4 + 9] = 0x75;        // sub-block 5: scale 5 + 16 * 0, min 7 + 16 * 1 (below)
  b[4 + 5] |= 1 << 6;     // sub-block 5's min: top bits 1 -> 7 + 16 = 23
  b[48 + 4] = 0xA0;       // value 32 + 4 (sub-block 1, high nibble): 10
  b[16 + 4] = 1 << 1;     // ... with its fifth bit (bit 1 of qh[4]): 26
  b[48 + 64 + 9] = 0xC0;  // value 160 + 9 (sub-block 5, high nibble of qs[64 + 9]): 12
  b[16 + 9] = 1 << 5;     // ... fifth bit: 28
  EXPECT_EQ(LoadAsF32(DType::kQ5_K, b.data(), 36), 0.5f * 3 * 26 - 0.25f * 2);
  EXPECT_EQ(LoadAsF32(DType::kQ5_K, b.data(), 169), 0.5f * 5 * 28 - 0.25f * 23);
  EXPECT_EQ(LoadAsF32(DType::kQ5_K, b.data(), 37), -0.25f * 2);  // code 0
  EXPECT_EQ(LoadAsF32(DType::kQ5_K, b.data(), 4), 0.0f);         // sub-block 0: scale 0, min 0
}

// IQ4_NL and IQ4_XS: blocks written by hand in llama.cpp's layouts decode to the grid values, and a
// quantized row lands within half a grid step of its values.
TEST(Quant, IQ4LayoutsAndRoundTrip) {
  std::vector<uint8_t> nl(18, 0);
  const uint16_t d = F32ToF16(0.5f);
  std::memcpy(nl.data(), &d, 2);
  nl[2 + 3] = 0xF2;  // value 3: grid[2] = -83; value 19: grid[15] = 113
  EXPECT_EQ(LoadAsF32(DType::kIQ4_NL, nl.data(), 3), 0.5f * -83);
  EXPECT_EQ(LoadAsF32(DType::kIQ4_NL, nl.data(), 19), 0.5f * 113);
  EXPECT_EQ(LoadAsF32(DType::kIQ4_NL, nl.data(), 4), 0.5f * -127);  // nibble 0
  std::vector<uint8_t> xs(136, 0);
  std::memcpy(xs.data(), &d, 2);
  // Sub-block 3: ls = 5 (low nibble: high half of scales_l[1]) + 16 * 2 (bits 6-7 of scales_h).
  xs[4 + 1] = 5 << 4;
  xs[2] = 2 << 6;
  xs[8 + 16 * 3 + 7] = 0x9C;  // value 96 + 7: grid[12] = 53; value 96 + 23: grid[9] = 13
  EXPECT_EQ(IQ4XSScale(xs.data(), 3), 37);
  EXPECT_EQ(LoadAsF32(DType::kIQ4_XS, xs.data(), 103), (0.5f * (37 - 32)) * 53);
  EXPECT_EQ(LoadAsF32(DType::kIQ4_XS, xs.data(), 119), (0.5f * (37 - 32)) * 13);
  EXPECT_EQ(LoadAsF32(DType::kIQ4_XS, xs.data(), 0), (0.5f * -32) * -127);  // ls 0, nibble 0

  std::vector<float> x(512);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = std::sin(0.29f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 64) / 16);
  for (DType t : {DType::kIQ4_NL, DType::kIQ4_XS}) {
    std::vector<uint8_t> q(StorageBytes(t, 512));
    QuantizeRow(t, x.data(), 512, q.data());
    for (size_t s = 0; s < 16; ++s) {
      float amax = 0.0f;
      for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * s + j]));
      // Half the widest step (24 / 2), or the clipped top of the grid (113 of 127) when the
      // largest magnitude is negative; IQ4_XS's 6-bit scales add a little.
      const float tol = amax / 127.0f * (t == DType::kIQ4_XS ? 16.0f : 14.5f) + 1e-3f;
      for (size_t j = 0; j < 32; ++j) {
        const size_t i = 32 * s + j;
        EXPECT_NEAR(LoadAsF32(t, q.data(), i), x[i], tol) << DTypeName(t) << " " << i;
      }
    }
  }
}

// Q3_K and Q2_K: blocks written by hand in llama.cpp's layouts (block_q3_K: hmask[32], qs[64],
// scales[12], d; block_q2_K: scales[16], qs[64], d, dmin) decode as its dequantize_row_q*_K does,
// and quantized rows land within a step of their values.
TEST(Quant, Q3_KQ2_KLayoutsAndRoundTrip) {
  const uint16_t d = F32ToF16(0.5f), dmin = F32ToF16(0.25f);
  // Q3_K value 128 + 64 + 5 (half 1, shift group 2, sub-block 12): 2-bit code in bits 4-5 of
  // qs[32 + 5], high bit in bit 6 of hmask[5]; sub-block 12's scale: high nibble of scales[4], bits
  // 6-7 of scales[8].
  std::vector<uint8_t> q3(110, 0);
  std::memcpy(q3.data() + 108, &d, 2);
  q3[32 + 32 + 5] = 3 << 4;
  q3[5] = 1 << 6;       // high bit set: code 3 - 0
  q3[96 + 4] = 9 << 4;  // scale low bits 9
  q3[96 + 8] = 2 << 6;  // high bits 2: 9 + 32 = 41 -> 41 - 32 = 9
  EXPECT_EQ(Q3KScale(q3.data() + 96, 12), 41);
  EXPECT_EQ(LoadAsF32(DType::kQ3_K, q3.data(), 197), (0.5f * 9) * 3);
  EXPECT_EQ(LoadAsF32(DType::kQ3_K, q3.data(), 198), (0.5f * 9) * -4);  // code 0, no high bit
  EXPECT_EQ(LoadAsF32(DType::kQ3_K, q3.data(), 0), (0.5f * -32) * -4);  // scale 0 - 32
  // Q2_K value 32 + 16 + 2 (shift group 1, sub-block 3): bits 2-3 of qs[16 + 2]; scales[3] holds
  // scale 6 (low nibble) and min 5 (high).
  std::vector<uint8_t> q2(84, 0);
  std::memcpy(q2.data() + 80, &d, 2);
  std::memcpy(q2.data() + 82, &dmin, 2);
  q2[16 + 16 + 2] = 2 << 2;
  q2[3] = 6 | (5 << 4);
  EXPECT_EQ(LoadAsF32(DType::kQ2_K, q2.data(), 50), (0.5f * 6) * 2 - 0.25f * 5);
  EXPECT_EQ(LoadAsF32(DType::kQ2_K, q2.data(), 51), -0.25f * 5);  // code 0
  EXPECT_EQ(LoadAsF32(DType::kQ2_K, q2.data(), 0), 0.0f);         // scale 0, min 0

  std::vector<float> x(512);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = std::sin(0.31f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 16) / 8) + 0.2f;
  for (DType t : {DType::kQ3_K, DType::kQ2_K}) {
    std::vector<uint8_t> q(StorageBytes(t, 512));
    ASSERT_EQ(q.size(), 2 * DTypeSize(t));
    QuantizeRow(t, x.data(), 512, q.data());
    for (size_t s = 0; s < 32; ++s) {  // per 16 values: Q3_K's step max|x| / 4, Q2_K's range / 3
      float lo = 0.0f, hi = 0.0f, amax = 0.0f;
      for (size_t j = 0; j < 16; ++j) {
        lo = std::min(lo, x[16 * s + j]);
        hi = std::max(hi, x[16 * s + j]);
        amax = std::max(amax, std::fabs(x[16 * s + j]));
      }
      // Half a step, or a whole one where the top code clips (Q3_K's +4) or the 4- and 6-bit
      // sub-block scales round.
      const float tol = t == DType::kQ3_K ? amax / 4 * 1.1f + 0.02f : (hi - lo) / 3 * 0.75f + 0.05f;
      for (size_t j = 0; j < 16; ++j) {
        const size_t i = 16 * s + j;
        EXPECT_NEAR(LoadAsF32(t, q.data(), i), x[i], tol) << DTypeName(t) << " " << i;
      }
    }
  }
}

// Q4_1, Q5_0 and Q5_1: blocks written by hand in llama.cpp's layouts, and round trips within half
// a step.
TEST(Quant, Q4_1Q5_0Q5_1LayoutsAndRoundTrip) {
  const uint16_t d = F32ToF16(0.5f), m = F32ToF16(-3.0f);
  std::vector<uint8_t> q41(20, 0);  // d, m, qs[16]
  std::memcpy(q41.data(), &d, 2);
  std::memcpy(q41.data() + 2, &m, 2);
  q41[4 + 5] = 0x7C;  // value 5: 12, value 21: 7
  EXPECT_EQ(LoadAsF32(DType::kQ4_1, q41.data(), 5), 12 * 0.5f - 3.0f);
  EXPECT_EQ(LoadAsF32(DType::kQ4_1, q41.data(), 21), 7 * 0.5f - 3.0f);
  std::vector<uint8_t> q50(22, 0);  // d, qh[4], qs[16]
  std::memcpy(q50.data(), &d, 2);
  q50[6 + 5] = 0x7C;
  q50[2 + 2] = 1 << 5;  // bit 21 of qh: value 21's fifth bit
  EXPECT_EQ(LoadAsF32(DType::kQ5_0, q50.data(), 5), (12 - 16) * 0.5f);
  EXPECT_EQ(LoadAsF32(DType::kQ5_0, q50.data(), 21), (7 + 16 - 16) * 0.5f);
  std::vector<uint8_t> q51(24, 0);  // d, m, qh[4], qs[16]
  std::memcpy(q51.data(), &d, 2);
  std::memcpy(q51.data() + 2, &m, 2);
  q51[8 + 5] = 0x7C;
  q51[4] = 1 << 5;  // bit 5 of qh: value 5's fifth bit
  EXPECT_EQ(LoadAsF32(DType::kQ5_1, q51.data(), 5), (12 + 16) * 0.5f - 3.0f);
  EXPECT_EQ(LoadAsF32(DType::kQ5_1, q51.data(), 21), 7 * 0.5f - 3.0f);

  std::vector<float> x(256);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = std::sin(0.41f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 32) / 8) + 0.2f;
  for (DType t : {DType::kQ4_1, DType::kQ5_0, DType::kQ5_1}) {
    std::vector<uint8_t> q(StorageBytes(t, 256));
    QuantizeRow(t, x.data(), 256, q.data());
    for (size_t b = 0; b < 8; ++b) {
      float lo = x[32 * b], hi = x[32 * b], amax = 0.0f;
      for (size_t l = 0; l < 32; ++l) {
        lo = std::min(lo, x[32 * b + l]);
        hi = std::max(hi, x[32 * b + l]);
        amax = std::max(amax, std::fabs(x[32 * b + l]));
      }
      const float step = t == DType::kQ4_1   ? (hi - lo) / 15
                         : t == DType::kQ5_1 ? (hi - lo) / 31
                                             : amax / 16;
      for (size_t l = 0; l < 32; ++l) {
        const size_t i = 32 * b + l;
        EXPECT_NEAR(LoadAsF32(t, q.data(), i), x[i], step * 0.51f + 2e-3f) << DTypeName(t) << i;
      }
    }
  }
}

TEST(Quant, Q8_0AndQ4_0RoundTrip) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i)
    x[static_cast<size_t>(i)] = std::sin(0.37f * static_cast<float>(i)) * (i < 32 ? 1.0f : 0.01f);
  std::vector<uint8_t> q8(StorageBytes(DType::kQ8_0, 64)), q4(StorageBytes(DType::kQ4_0, 64));
  ASSERT_EQ(q8.size(), 68u);
  ASSERT_EQ(q4.size(), 36u);
  QuantizeRow(DType::kQ8_0, x.data(), 64, q8.data());
  QuantizeRow(DType::kQ4_0, x.data(), 64, q4.data());
  for (size_t i = 0; i < 64; ++i) {
    const double amax = i < 32 ? 1.0 : 0.01;
    EXPECT_NEAR(LoadAsF32(DType::kQ8_0, q8.data(), i), x[i], amax / 127 * 0.51 + amax * 1e-3) << i;
    // Q4_0 maps the largest-magnitude value to -8: the other side is clipped at 7/8 of it.
    EXPECT_NEAR(LoadAsF32(DType::kQ4_0, q4.data(), i), x[i], amax / 8 + amax * 3e-3) << i;
  }
  // Layout: Q8_0 = f16 scale then int8 values; Q4_0 nibbles: low = value j, high = value j + 16.
  uint16_t d;
  std::memcpy(&d, q8.data(), 2);
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[static_cast<size_t>(i)]));
  EXPECT_EQ(F16ToF32(d), F16ToF32(F32ToF16(amax / 127)));  // d = max|x| / 127, stored as f16
  EXPECT_EQ(static_cast<int8_t>(q8[2]), 0);                // sin(0)
  std::vector<float> ramp(32);
  for (int i = 0; i < 32; ++i)
    ramp[static_cast<size_t>(i)] = static_cast<float>(i - 16) / 2.0f;  // max magnitude -8 at i = 0
  std::vector<uint8_t> r4(18);
  QuantizeRow(DType::kQ4_0, ramp.data(), 32, r4.data());
  std::memcpy(&d, r4.data(), 2);
  EXPECT_EQ(F16ToF32(d), 1.0f);  // d = maxv / -8 = -8 / -8
  EXPECT_EQ(r4[2] & 15, 0);      // value 0 = -8 -> q = 0
  EXPECT_EQ(r4[2] >> 4, 8);      // value 16 = 0 -> q = 8
}

}  // namespace
}  // namespace specula
