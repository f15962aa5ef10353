// What decoding needs of a target model: its config, a KV cache for one sequence, and one batched
// forward pass. Gemma4Model implements it; the batch engine and the server depend only on this, so
// a test can stand a model that fails on demand in front of a real one.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "specula/base/status.h"
#include "specula/models/gemma4_config.h"
#include "specula/models/kv_cache.h"

namespace specula {

class ThreadPool;

// One sequence of a batched forward: its new tokens and its own cache.
struct BatchSeq {
  std::span<const int> ids;  // [T_s] token ids at positions cache->length() .. +T_s-1
  KvCache* cache = nullptr;  // distinct per sequence
  int logit_rows = 1;        // how many of the last rows get logits: 0 (a prefill chunk) .. T_s
  // Empty: the rows are a chain (row t at position length() + t). Otherwise a token tree: row t
  // follows row parents[t] (< t; -1: the cached tokens), sits at position length() + its depth and
  // attends to the cache and its own ancestors only. The cache then holds the rows in row order;
  // the caller keeps one root-to-node path with KvCache::KeepPath.
  std::span<const int> parents;
};

struct BatchOutput {
  std::vector<int> row_offset;    // [S+1] first stacked row of each sequence in `hidden`
  std::vector<int> logit_offset;  // [S+1] first row of each sequence in `logits`
  std::vector<float> logits;      // [sum logit_rows, vocab], after the final softcap
  std::vector<float> hidden;      // [sum T_s, hidden], post-final-norm
  int experts_read = 0;           // mixture of experts: distinct experts run, summed over layers
};

// Buffers that one caller's passes reuse (activations, attention and expert scratch), grown on
// demand. The caller owns them, one per engine or thread, so a loaded model stays read-only and can
// serve several engines at once. Each model makes its own kind (NewScratch).
class PassScratch {
 public:
  virtual ~PassScratch() = default;
};

class TargetModel {
 public:
  virtual ~TargetModel() = default;

  virtual const Gemma4Config& config() const = 0;
  // A cache sized for `context` positions with `headroom` rows of sliding-window rollback.
  virtual std::unique_ptr<KvCache> NewCache(int context, int headroom) const = 0;
  // Several sequences in one pass; each row's result is bit for bit what the sequence gets alone.
  // A failed pass changes no cache, so the caller may retry the sequences one by one.
  // `scratch` comes from this model's NewScratch and serves one pass at a time.
  virtual Status ForwardBatch(std::span<const BatchSeq> seqs, ThreadPool& pool,
                              PassScratch& scratch, BatchOutput* out) const = 0;
  virtual std::unique_ptr<PassScratch> NewScratch() const = 0;
};

}  // namespace specula
