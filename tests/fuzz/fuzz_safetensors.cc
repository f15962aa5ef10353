// Feeds the bytes as a whole safetensors file (u64 header length, JSON header, data section) to
// SafetensorsFile::ParseInto. What it accepts must be safe to read: every view inside the buffer,
// with a non-negative shape whose element count times the dtype size is its byte count.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "specula/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = "fuzz.safetensors";
  std::map<std::string, specula::TensorView> tensors;
  std::map<std::string, std::string> metadata;
  if (!specula::SafetensorsFile::ParseInto(data, size, &path, &tensors, &metadata).ok()) return 0;
  for (const auto& [name, t] : tensors) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    if (p < data || t.nbytes > size || static_cast<size_t>(p - data) > size - t.nbytes) abort();
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) abort();
    }
    if (numel * specula::DTypeSize(t.dtype) != t.nbytes) abort();
  }
  return 0;
}
