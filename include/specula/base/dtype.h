// Storage dtypes of weights and the scalar conversions used by references and small tensors.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace specula {

enum class DType : uint8_t { kF32, kF16, kBF16, kI64, kI32 };

constexpr size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI64: return 8;
    case DType::kI32: return 4;
  }
  return 0;
}

// Names as safetensors spells them.
constexpr std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
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

// Reads element i of a float-typed buffer (F32/F16/BF16) as f32. memcpy because tensors in a
// safetensors file need not be aligned to their element size.
inline float LoadAsF32(DType t, const void* data, size_t i) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  if (t == DType::kF32) {
    float f;
    std::memcpy(&f, bytes + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, bytes + 2 * i, 2);
  return t == DType::kF16 ? F16ToF32(h) : BF16ToF32(h);
}

// Rounds an f32 to what `t` can store, then back (e.g. HF casts sqrt(H) to the weight dtype).
inline float RoundThrough(DType t, float f) {
  switch (t) {
    case DType::kF16: return F16ToF32(F32ToF16(f));
    case DType::kBF16: return BF16ToF32(F32ToBF16(f));
    default: return f;
  }
}

}  // namespace specula
