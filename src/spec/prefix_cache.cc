#include "specula/spec/prefix_cache.h"

#include <algorithm>

namespace specula {
size_t CommonPrefix(std::span<const int> a, std::span<const int> b) {
  const size_t n = std::min(a.size(), b.size());
  return static_cast<size_t>(
      std::mismatch(a.begin(), a.begin() + static_cast<long>(n), b.begin()).first - a.begin());
}

void PrefixCache::Put(std::span<const int> ids, const KvCache& cache) {
  const int length = cache.length();
  if (length <= 0 || ids.size() < static_cast<size_t>(length)) return;
  // Too large for the cache's whole budget: not worth copying.
  if (cache.PrefixBytes() + static_cast<size_t>(length) * sizeof(int) > max_bytes_) return;
  // Already held (the same prompt again, answered in one token): the entry is the same bits, so
  // it only becomes the most recently used.
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->ids.size() == static_cast<size_t>(length) &&
        CommonPrefix(it->ids, ids) == static_cast<size_t>(length) &&
        it->kv.FirstResume() <= cache.FirstResume()) {
      entries_.splice(entries_.begin(), entries_, it);
      return;
    }
  }
  Entry e{.ids = std::vector<int>(ids.begin(), ids.begin() + length), .kv = cache.SavePrefix()};
  const size_t size = e.bytes();
  for (auto it = entries_.begin(); it != entries_.end();) {
    const bool covered = it->ids.size() <= e.ids.size() &&
                         CommonPrefix(it->ids, e.ids) == it->ids.size() &&
                         e.kv.FirstResume() <= it->kv.FirstResume();
    if (covered) {
      bytes_ -= it->bytes();
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  entries_.push_front(std::move(e));
  bytes_ += size;
  while (bytes_ > max_bytes_) {
    bytes_ -= entries_.back().bytes();
    entries_.pop_back();
  }
}

std::pair<std::list<PrefixCache::Entry>::const_iterator, int> PrefixCache::Best(
    std::span<const int> prompt, int max_length) const {
  auto best = entries_.end();
  int best_length = 0;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const int n = std::min(static_cast<int>(CommonPrefix(it->ids, prompt)), max_length);
    if (n > best_length && n >= it->kv.FirstResume()) {
      best = it;
      best_length = n;
    }
  }
  return {best, best_length};
}

int PrefixCache::Match(std::span<const int> prompt, int max_length) const {
  return Best(prompt, max_length).second;
}

int PrefixCache::Load(std::span<const int> prompt, int max_length, KvCache& cache) {
  const auto [best, length] = Best(prompt, max_length);
  if (best == entries_.end() || !cache.LoadPrefix(best->kv, length)) return 0;
  entries_.splice(entries_.begin(), entries_, best);
  return length;
}

}  // namespace specula
