// Binding a checkpoint's tensors to a model's weights: each by name, checked for presence, dtype
// and shape, stopping at the first problem (the target and the assistant share it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "specula/base/status.h"
#include "specula/formats/weight_store.h"
#include "specula/kernels/kernels.h"

namespace specula {

class Binder {
 public:
  Binder(const WeightStore& store, std::string prefix)
      : store_(store), prefix_(std::move(prefix)) {}
  // A matrix [rows, cols] in its stored dtype (an empty view after a problem).
  MatView Mat(const std::string& name, int64_t rows, int64_t cols) {
    const TensorView* t = Get(name, {rows, cols});
    return t ? MatView{t->dtype, t->data, rows, cols} : MatView{};
  }
  // A stack of n matrices [n, rows, cols] as one [n * rows, cols] matrix.
  MatView Stack(const std::string& name, int64_t n, int64_t rows, int64_t cols) {
    const TensorView* t = Get(name, {n, rows, cols});
    return t ? MatView{t->dtype, t->data, n * rows, cols} : MatView{};
  }
  // A vector [n] copied to f32 (zeros after a problem).
  std::vector<float> Vec(const std::string& name, int64_t n) {
    std::vector<float> v(static_cast<size_t>(n), 0.0f);
    const TensorView* t = Get(name, {n});
    if (t != nullptr) {
      for (size_t i = 0; i < v.size(); ++i) v[i] = LoadAsF32(t->dtype, t->data, i);
    }
    return v;
  }
  bool Has(const std::string& name) const { return store_.Find(prefix_ + name) != nullptr; }
  const Status& status() const { return status_; }

 private:
  const TensorView* Get(const std::string& name, const std::vector<int64_t>& shape) {
    if (!status_.ok()) return nullptr;
    Result<const TensorView*> t = RequireTensor(store_, prefix_ + name, shape);
    if (!t.ok()) {
      status_ = t.status();
      return nullptr;
    }
    return *t;
  }
  const WeightStore& store_;
  std::string prefix_;
  Status status_;
};

}  // namespace specula
