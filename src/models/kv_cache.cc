#include "specula/models/kv_cache.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <string>

namespace specula {

KvCache::KvCache(const std::vector<KvLayerShape>& layers, const KvCacheOptions& options)
    : options_(options) {
  for (const KvLayerShape& s : layers) {
    Layer l;
    l.shape = s;
    l.capacity =
        s.sliding ? std::min(options.context, options.window + options.headroom) : options.context;
    l.k.assign(static_cast<size_t>(l.capacity) * static_cast<size_t>(s.kv_dim), 0.0f);
    l.v.assign(l.k.size(), 0.0f);
    layers_.push_back(std::move(l));
  }
}

size_t KvCache::Runs(int slot, int from, int to, size_t col, std::span<KvRun> out) const {
  const Layer& l = layers_[static_cast<size_t>(slot)];
  assert(from >= OldestHeld(slot) && to <= length_ && out.size() >= 2);
  const size_t d = static_cast<size_t>(l.shape.kv_dim);
  size_t n = 0;
  while (from < to) {
    const int row = from % l.capacity;
    const int len = std::min(to - from, l.capacity - row);  // up to the ring's end
    out[n++] = {.k = l.k.data() + static_cast<size_t>(row) * d + col,
                .v = l.v.data() + static_cast<size_t>(row) * d + col,
                .ld = d,
                .n = static_cast<size_t>(len)};
    from += len;
  }
  return n;
}

int KvCache::OldestHeld(int slot) const {
  const Layer& l = layers_[static_cast<size_t>(slot)];
  return std::max(0, high_water_ - l.capacity);
}

Status KvCache::CheckAppend(int n) const {
  if (length_ + n > options_.context) {
    return Error("context is full: " + std::to_string(length_) + " + " + std::to_string(n) +
                 " tokens exceed the context size " + std::to_string(options_.context));
  }
  return OkStatus();
}

void KvCache::Append(int slot, int n, const float* k, const float* v) {
  Layer& l = layers_[static_cast<size_t>(slot)];
  const size_t d = static_cast<size_t>(l.shape.kv_dim);
  // When n exceeds the ring, only the last `capacity` rows survive; skip the rest.
  const int first = std::max(0, n - l.capacity);
  for (int i = first; i < n; ++i) {
    const size_t row = static_cast<size_t>((length_ + i) % l.capacity) * d;
    std::memcpy(l.k.data() + row, k + static_cast<size_t>(i) * d, d * sizeof(float));
    std::memcpy(l.v.data() + row, v + static_cast<size_t>(i) * d, d * sizeof(float));
  }
  high_water_ = std::max(high_water_, length_ + n);
}

Status KvCache::Truncate(int new_length) {
  if (new_length < 0 || new_length > length_) {
    return Error("cannot truncate the KV cache to " + std::to_string(new_length) + " (length " +
                 std::to_string(length_) + ")");
  }
  // A query at new_length needs keys new_length-W+1 .. new_length-1 in every sliding ring.
  const int need = FirstVisibleKey(new_length, options_.window);
  for (int s = 0; s < num_layers(); ++s) {
    if (layers_[static_cast<size_t>(s)].shape.sliding && need < OldestHeld(s)) {
      return Error("cannot roll back " + std::to_string(length_ - new_length) +
                   " positions: the sliding-window cache keeps only " +
                   std::to_string(options_.headroom) + " rows of headroom");
    }
  }
  length_ = new_length;  // the high-water mark stays: slots past it were really overwritten
  return OkStatus();
}

size_t KvCache::BytesAllocated() const {
  size_t n = 0;
  for (const Layer& l : layers_) n += (l.k.size() + l.v.size()) * sizeof(float);
  return n;
}

}  // namespace specula
