// GGUF files (llama.cpp's single-file format, versions 2 and 3), memory-mapped. The header is
// validated against the file before anything is exposed: every count and string length against the
// bytes left, known value and tensor types, 1-4 dimensions with a product that fits, rows whole in
// blocks, and a consistent tensor table: a tensor count matching the entries, unique names, each
// tensor's data aligned, inside the file and sharing no byte with another's. Metadata becomes one
// JSON object (key -> value, arrays as JSON arrays) so callers read it with the same FieldReader as
// config.json and errors name the file and key alike. Tensor shapes are reported outermost first,
// as in safetensors: GGUF's ne = {cols, rows} is shape [rows, cols].
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/base/status.h"
#include "specula/formats/safetensors.h"

namespace specula {

// GGUF metadata value types (the file's own numbering).
enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

class GgufFile {
 public:
  static Result<std::unique_ptr<GgufFile>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  const Json& metadata() const { return metadata_; }  // an object: key -> value
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  // Frees the parsed metadata (tens of MB for a 262k-token vocabulary) once it has been read, or
  // hands it over.
  void ReleaseMetadata() { metadata_ = Json::object(); }
  Json TakeMetadata() { return std::exchange(metadata_, Json::object()); }
  // Hands over the keys that start with `prefix` (e.g. "tokenizer.ggml."), leaving the rest.
  Json TakeMetadata(std::string_view prefix);

  // Parses a whole file already in memory (used by Open and by the fuzz test). Tensor views point
  // into `data`; `path` names the file in errors and in each view.
  static Result<std::unique_ptr<GgufFile>> Parse(const uint8_t* data, size_t size,
                                                 const std::string& path);

 private:
  std::string path_;
  uint32_t version_ = 0;
  std::unique_ptr<MappedFile> file_;  // null when parsed from a caller's buffer
  Json metadata_ = Json::object();
  std::map<std::string, TensorView> tensors_;
};

// What WriteGguf writes: metadata with explicit GGUF types (arrays give their element type), then
// tensors in the order given, each 32-byte aligned. Tensor data must hold StorageBytes(dtype,
// numel).
struct GgufKv {
  std::string key;
  GgufType type;
  Json value;
  GgufType elem = GgufType::kU8;  // element type when type == kArray
};
Status WriteGguf(const std::string& path, const std::vector<GgufKv>& kvs,
                 const std::vector<TensorToWrite>& tensors);

// True when `path` names a GGUF file rather than a checkpoint directory (by its extension).
bool IsGgufPath(const std::string& path);

}  // namespace specula
