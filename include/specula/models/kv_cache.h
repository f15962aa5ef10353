// The target's KV cache, keyed by absolute position. Only KV-owning layers allocate. Full-attention
// layers keep every position up to the context size; sliding layers keep a ring of
// `window + headroom` slots, where the headroom lets a verify forward of up to `headroom` rows be
// rolled back without losing keys the next query still needs (a ring of exactly W slots cannot be
// rolled back once it wraps).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "specula/base/status.h"
#include "specula/kernels/kernels.h"

namespace specula {

struct KvLayerShape {
  int kv_dim = 0;  // num_kv_heads * head_dim
  bool sliding = false;
};

// The first key position a query at `pos` attends to: pos - window + 1 with a sliding window
// (window > 0), 0 without (window 0). The cache's rollback check, the target's attention and the
// assistant's all use it.
inline int FirstVisibleKey(int pos, int window) {
  return window > 0 ? std::max(0, pos - window + 1) : 0;
}

// A copy of a cache's committed keys and values, for resuming another sequence that starts with
// the same tokens (the prompt cache). Full layers keep every position; sliding layers keep the rows
// their ring held, so a resume point must see no older key than `oldest_sliding`.
struct KvPrefix {
  int length = 0;          // positions 0 .. length-1
  int oldest_sliding = 0;  // first position the sliding layers' rows hold
  int window = 0;
  std::vector<std::vector<float>> k, v;  // per slot: [length or length - oldest_sliding, kv_dim]
  // The lowest position a sequence can resume at from this copy (1 at the least).
  int FirstResume() const;
  size_t bytes() const;
};

// Rows of sliding-window headroom a cache gets unless asked for more: enough to roll back any
// verify pass of up to 63 drafts.
inline constexpr int kDefaultHeadroom = 64;
// The headroom a sequence drafting up to `draft_max` tokens needs: its verify pass of draft_max + 1
// rows may be rolled back after the ring wrapped.
inline int HeadroomFor(int draft_max) { return std::max(kDefaultHeadroom, draft_max + 1); }

struct KvCacheOptions {
  int context = 0;  // max positions
  int window = 0;   // sliding window W (keys p-W+1 .. p)
  int headroom =
      kDefaultHeadroom;  // extra sliding slots: max rows of one forward that may be rolled back
};

class KvCache {
 public:
  KvCache(const std::vector<KvLayerShape>& layers, const KvCacheOptions& options);

  int length() const { return length_; }  // committed positions 0 .. length-1
  int context() const { return options_.context; }
  int window() const { return options_.window; }
  int headroom() const { return options_.headroom; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  const KvLayerShape& shape(int slot) const { return layers_[static_cast<size_t>(slot)].shape; }

  // Committed positions [from, to) of a layer, from column `col` on (a KV head), as the runs of
  // consecutive rows the attention kernel takes: one, or two where a sliding ring wraps. Returns
  // how many it wrote to out (size >= 2).
  size_t Runs(int slot, int from, int to, size_t col, std::span<KvRun> out) const;

  // Stores rows [n, kv_dim] for positions length() .. length()+n-1 and commits them.
  // Callers verify capacity first with CheckAppend.
  void Append(int slot, int n, const float* k, const float* v);
  void Commit(int n) { length_ += n; }
  Status CheckAppend(int n) const;

  // Rolls back to `new_length` (<= length()). Fails if a sliding ring has already overwritten keys
  // a query at new_length would need, i.e. more than `headroom` rows are dropped after a wrap.
  Status Truncate(int new_length);
  // After a token-tree pass appended its rows from position `first` on in row order: keeps the rows
  // at offsets `path` (ascending, path[i] >= i: one root-to-node path) as positions first ..
  // first + path.size() - 1 and drops the rest. Fails, changing nothing, where Truncate would.
  Status KeepPath(int first, std::span<const int> path);
  // Empties the cache for another sequence, keeping its memory (what is stored is never read again:
  // a position is read only once written and committed).
  void Clear() { length_ = high_water_ = sliding_floor_ = 0; }

  size_t BytesAllocated() const;

  // Copies the committed positions out (see KvPrefix).
  KvPrefix SavePrefix() const;
  // SavePrefix().bytes() and SavePrefix().FirstResume(), without the copy.
  size_t PrefixBytes() const;
  int FirstResume() const;
  // Makes this empty cache hold positions 0 .. n-1 of `p`, bit for bit as computed there. False,
  // and nothing changed, when the shapes differ, the cache is not empty, or `n` is outside
  // [p.FirstResume(), p.length] or beyond the context.
  bool LoadPrefix(const KvPrefix& p, int n);
  // Whether Truncate(new_length) would succeed: every sliding ring still holds the keys a query at
  // new_length needs.
  Status CheckRollback(int new_length) const;

 private:
  // Lowest position whose keys a layer still holds (0 for full layers).
  int OldestHeld(int slot) const;

  struct Layer {
    KvLayerShape shape;
    int capacity = 0;         // slots
    std::vector<float> k, v;  // [capacity, kv_dim]
  };

  std::vector<Layer> layers_;
  KvCacheOptions options_;
  int length_ = 0;
  int high_water_ = 0;     // 1 + highest position ever written; never lowered
  int sliding_floor_ = 0;  // sliding rows below this position were never held (LoadPrefix)
};

}  // namespace specula
