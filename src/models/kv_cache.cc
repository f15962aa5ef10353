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
  return std::max(l.shape.sliding ? sliding_floor_ : 0, high_water_ - l.capacity);
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

Status KvCache::CheckRollback(int new_length) const {
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
  return OkStatus();
}

Status KvCache::Truncate(int new_length) {
  if (Status s = CheckRollback(new_length); !s.ok()) return s;
  length_ = new_length;  // the high-water mark stays: slots past it were really overwritten
  return OkStatus();
}

Status KvCache::KeepPath(int first, std::span<const int> path) {
  const int n = static_cast<int>(path.size());
  for (int i = 0; i < n; ++i) {
    const int row = path[static_cast<size_t>(i)];
    if (row < i || (i > 0 && row <= path[static_cast<size_t>(i) - 1]) || first < 0 ||
        first + row >= length_) {
      return Error("KV cache: tree path row " + std::to_string(row) + " at depth " +
                   std::to_string(i) + " is not a stored row after position " +
                   std::to_string(first));
    }
  }
  if (Status s = CheckRollback(first + n); !s.ok()) return s;
  for (int s = 0; s < num_layers(); ++s) {
    // Every row of the pass must still be in the ring (the pass had at most `headroom` rows).
    if (first < OldestHeld(s)) {
      return Error("KV cache: a tree of " + std::to_string(length_ - first) +
                   " rows exceeds the sliding-window headroom of " +
                   std::to_string(options_.headroom));
    }
  }
  for (Layer& l : layers_) {
    const size_t d = static_cast<size_t>(l.shape.kv_dim);
    for (int i = 0; i < n; ++i) {
      // path[i] >= i, ascending: a destination is never a later row's source.
      const int from = first + path[static_cast<size_t>(i)], to = first + i;
      if (from == to) continue;
      const size_t src = static_cast<size_t>(from % l.capacity) * d;
      const size_t dst = static_cast<size_t>(to % l.capacity) * d;
      std::memcpy(l.k.data() + dst, l.k.data() + src, d * sizeof(float));
      std::memcpy(l.v.data() + dst, l.v.data() + src, d * sizeof(float));
    }
  }
  length_ = first + n;
  return OkStatus();
}

namespace {

// A query at n reads keys from FirstVisibleKey(n, window) on: n - window + 1 >= oldest_sliding.
int FirstResumeAt(int oldest_sliding, int window) {
  return std::max(1, oldest_sliding > 0 ? oldest_sliding + window - 1 : 1);
}

}  // namespace

int KvPrefix::FirstResume() const { return FirstResumeAt(oldest_sliding, window); }

int KvCache::FirstResume() const {
  int oldest_sliding = 0;
  for (int s = 0; s < num_layers(); ++s) {
    if (layers_[static_cast<size_t>(s)].shape.sliding)
      oldest_sliding = std::max(oldest_sliding, std::max(0, std::min(length_, OldestHeld(s))));
  }
  return FirstResumeAt(oldest_sliding, options_.window);
}

size_t KvPrefix::bytes() const {
  size_t n = 0;
  for (size_t s = 0; s < k.size(); ++s) n += (k[s].size() + v[s].size()) * sizeof(float);
  return n;
}

size_t KvCache::PrefixBytes() const {
  size_t n = 0;
  for (int s = 0; s < num_layers(); ++s) {
    const int from = std::max(0, std::min(length_, OldestHeld(s)));
    n += 2 * static_cast<size_t>(length_ - from) *
         static_cast<size_t>(layers_[static_cast<size_t>(s)].shape.kv_dim) * sizeof(float);
  }
  return n;
}

KvPrefix KvCache::SavePrefix() const {
  KvPrefix p;
  p.length = length_;
  p.window = options_.window;
  for (int s = 0; s < num_layers(); ++s) {
    const Layer& l = layers_[static_cast<size_t>(s)];
    const int from = std::max(0, std::min(length_, OldestHeld(s)));
    if (l.shape.sliding) p.oldest_sliding = std::max(p.oldest_sliding, from);
    const size_t d = static_cast<size_t>(l.shape.kv_dim);
    std::vector<float>& k = p.k.emplace_back(static_cast<size_t>(length_ - from) * d);
    std::vector<float>& v = p.v.emplace_back(k.size());
    for (int pos = from; pos < length_; ++pos) {
      const size_t src = static_cast<size_t>(pos % l.capacity) * d;
      const size_t dst = static_cast<size_t>(pos - from) * d;
      std::memcpy(k.data() + dst, l.k.data() + src, d * sizeof(float));
      std::memcpy(v.data() + dst, l.v.data() + src, d * sizeof(float));
    }
  }
  // Sliding layers all hold the same positions (one capacity); the prefix keeps their common range.
  return p;
}

bool KvCache::LoadPrefix(const KvPrefix& p, int n) {
  if (length_ != 0 || high_water_ != 0 || p.k.size() != layers_.size() ||
      p.window != options_.window || n < p.FirstResume() || n > p.length || n > options_.context) {
    return false;
  }
  for (size_t s = 0; s < layers_.size(); ++s) {
    const size_t d = static_cast<size_t>(layers_[s].shape.kv_dim);
    const int from = layers_[s].shape.sliding ? p.oldest_sliding : 0;
    if (p.k[s].size() != static_cast<size_t>(p.length - from) * d) return false;
  }
  for (size_t s = 0; s < layers_.size(); ++s) {
    Layer& l = layers_[s];
    const size_t d = static_cast<size_t>(l.shape.kv_dim);
    const int from = l.shape.sliding ? std::max(p.oldest_sliding, n - l.capacity) : 0;
    const int held = l.shape.sliding ? p.oldest_sliding : 0;
    for (int pos = from; pos < n; ++pos) {
      const size_t src = static_cast<size_t>(pos - held) * d;
      const size_t dst = static_cast<size_t>(pos % l.capacity) * d;
      std::memcpy(l.k.data() + dst, p.k[s].data() + src, d * sizeof(float));
      std::memcpy(l.v.data() + dst, p.v[s].data() + src, d * sizeof(float));
    }
  }
  sliding_floor_ = p.oldest_sliding;
  length_ = high_water_ = n;
  return true;
}

size_t KvCache::BytesAllocated() const {
  size_t n = 0;
  for (const Layer& l : layers_) n += (l.k.size() + l.v.size()) * sizeof(float);
  return n;
}

}  // namespace specula
