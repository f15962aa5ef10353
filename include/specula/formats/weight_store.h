// The tensors of a Hugging Face checkpoint directory: `model.safetensors`, or the shards named by
// `model.safetensors.index.json`. All files stay memory-mapped for the store's lifetime.
//
// Quantized checkpoints (written by `specula quantize`) store each quantized matrix as a U8 tensor
// [rows, row_bytes] of GGUF blocks; the file's `__metadata__` entry "specula_quant" (a JSON object
// {tensor name: "Q8_0" | "Q4_0"}) names them. The store exposes them with their block dtype and
// logical shape [rows, cols].
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "specula/base/status.h"
#include "specula/formats/gguf.h"
#include "specula/formats/safetensors.h"

namespace specula {

class WeightStore {
 public:
  static Result<std::unique_ptr<WeightStore>> OpenDir(const std::string& dir);
  // The tensors of a GGUF file, under the names `rename` gives them (an empty name drops one).
  static Result<std::unique_ptr<WeightStore>> FromGguf(
      std::unique_ptr<GgufFile> file, const std::function<std::string(const std::string&)>& rename);

  // nullptr when absent.
  const TensorView* Find(const std::string& name) const;
  const std::map<std::string, const TensorView*>& all() const { return index_; }
  size_t TotalBytes() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unique_ptr<GgufFile> gguf_;
  std::deque<TensorView> retyped_;  // quantized or renamed views
  std::map<std::string, const TensorView*> index_;
};

// Validates that `name` exists with a float or quantized dtype and exactly `shape`; returns it.
// Errors name the file, the tensor, and what was expected.
Result<const TensorView*> RequireTensor(const WeightStore& store, const std::string& name,
                                        const std::vector<int64_t>& shape,
                                        const std::string& why = "");

}  // namespace specula
