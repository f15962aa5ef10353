// Safetensors files, memory-mapped. Every header entry is validated against the file before any
// tensor is exposed: known dtype, non-negative shape, byte size == numel * dtype size, the data
// range inside the file, no name given twice and no two data ranges overlapping. A TensorView
// points into the map; nothing is copied.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "specula/base/dtype.h"
#include "specula/base/mapped_file.h"
#include "specula/base/status.h"

namespace specula {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
  const std::string* file = nullptr;  // the file it lives in, for error messages

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  std::string ShapeString() const;
};

class SafetensorsFile {
 public:
  static Result<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Parses a header + data buffer already in memory (used by Open and by the fuzz test).
  static Status ParseInto(const uint8_t* data, size_t size, const std::string* path,
                          std::map<std::string, TensorView>* tensors,
                          std::map<std::string, std::string>* metadata);

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors to a safetensors file (used by `specula quantize`-style tools and the test
// checkpoint generator). `data` of each entry must hold numel * dtype-size bytes.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
};
Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                        const std::map<std::string, std::string>& metadata = {});

// Streaming variant for files larger than memory: `fill(i, offset, n, out)` writes elements
// [offset, offset + n) of tensor i into `out`. Tensors are written in the order given.
struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};
using TensorFill = std::function<void(size_t tensor, int64_t offset, int64_t n, void* out)>;
Status WriteSafetensorsStreaming(const std::string& path, const std::vector<TensorSpec>& tensors,
                                 const TensorFill& fill,
                                 const std::map<std::string, std::string>& metadata = {});

}  // namespace specula
