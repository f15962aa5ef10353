// The prompt cache: KV copies of earlier sequences, keyed by their tokens, so that a request that
// starts like an earlier one (the next turn of a chat re-sends the whole history; a regenerated
// answer re-sends the same prompt) prefills only what is new. Bounded by bytes, least recently used
// out first. A resumed sequence computes exactly what a cold one would: the copied keys and values
// are the same bits (a row's K/V does not depend on how its pass was batched).
#pragma once

#include <cstddef>
#include <list>
#include <span>
#include <utility>
#include <vector>

#include "specula/models/kv_cache.h"

namespace specula {

// How many leading tokens a and b share.
size_t CommonPrefix(std::span<const int> a, std::span<const int> b);

class PrefixCache {
 public:
  explicit PrefixCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Keeps a copy of `cache`'s committed positions, ids[i] being the token at position i
  // (ids.size() >= cache.length()). An entry that the new one can stand for (its tokens a prefix of
  // the new ones, every resume point it had still possible) is dropped.
  void Put(std::span<const int> ids, const KvCache& cache);
  // Loads into the empty `cache` the longest prefix of `prompt`, at most `max_length` positions,
  // that an entry can resume at. Returns its length (0: nothing loaded).
  int Load(std::span<const int> prompt, int max_length, KvCache& cache);
  // The length Load would return, loading nothing.
  int Match(std::span<const int> prompt, int max_length) const;

  size_t bytes() const { return bytes_; }
  size_t entries() const { return entries_.size(); }

 private:
  struct Entry {
    std::vector<int> ids;  // [kv.length]
    KvPrefix kv;
    size_t bytes() const { return kv.bytes() + ids.size() * sizeof(int); }
  };
  // The entry Load would take and its length (entries_.end() and 0: none).
  std::pair<std::list<Entry>::const_iterator, int> Best(std::span<const int> prompt,
                                                        int max_length) const;

  const size_t max_bytes_;
  size_t bytes_ = 0;
  std::list<Entry> entries_;  // most recently used first
};

}  // namespace specula
