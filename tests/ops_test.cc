#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "specula/base/dtype.h"
#include "specula/kernels/ops.h"

namespace specula {
namespace {

TEST(Ops, RmsNormPlainWeight) {
  const std::vector<float> x = {1.0f, -2.0f, 3.0f, 0.5f};
  const std::vector<float> w = {0.5f, 1.0f, 2.0f, 0.0f};
  std::vector<float> y(4);
  RmsNorm(x.data(), w.data(), 4, 1e-6f, y.data());
  const double ms = (1 + 4 + 9 + 0.25) / 4.0;
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], x[i] / std::sqrt(ms + 1e-6) * w[i], 1e-6);  // w, not (1 + w)
  RmsNorm(x.data(), nullptr, 4, 1e-6f, y.data());
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], x[i] / std::sqrt(ms + 1e-6), 1e-6);
}

TEST(Ops, GeluTanhKnownValues) {
  EXPECT_NEAR(GeluTanh(0.0f), 0.0, 1e-7);
  EXPECT_NEAR(GeluTanh(1.0f), 0.8411920, 1e-6);   // torch gelu(approximate='tanh')
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

TEST(Ops, SoftCap) {
  std::vector<float> v = {0.0f, 30.0f, -1000.0f, 3.0f};
  SoftCap(v.data(), v.size(), 30.0f);
  EXPECT_EQ(v[0], 0.0f);
  EXPECT_NEAR(v[1], 30.0 * std::tanh(1.0), 1e-5);
  EXPECT_NEAR(v[2], -30.0, 1e-4);
  EXPECT_NEAR(v[3], 30.0 * std::tanh(0.1), 1e-5);
}

TEST(DType, HalfConversionsRoundTripAndRound) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 3.14159f}) {
    EXPECT_NEAR(F16ToF32(F32ToF16(f)), f, std::fabs(f) * 1e-3 + 1e-7) << f;
  }
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xc000);
  EXPECT_EQ(F32ToF16(1e6f), 0x7c00);  // overflow to inf
  EXPECT_EQ(F32ToBF16(1.0f), 0x3f80);
  EXPECT_EQ(BF16ToF32(F32ToBF16(39.191837f)), 39.25f);  // sqrt(1536) as HF bf16 sees it (spec §3.2)
  EXPECT_EQ(BF16ToF32(F32ToBF16(73.321213f)), 73.5f);
  EXPECT_EQ(BF16ToF32(F32ToBF16(50.596443f)), 50.5f);
}

}  // namespace
}  // namespace specula
