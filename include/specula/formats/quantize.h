// Writes a quantized copy of a checkpoint directory (`specula quantize`). The engine loads the
// result directly; the tensors stay in GGUF's Q8_0/Q4_0 block layouts inside safetensors files.
//
// Per-tensor policy (why each choice):
//   - weight matrices, and stacks of them (a mixture-of-experts layer's experts [E, rows, cols]),
//     whose rows are a multiple of 32 values -> the requested type (Q6_K and Q4_K need rows of
//     256-value super-blocks; shorter ones fall back to Q8_0);
//   - with Q4_0, embedding tables (`*embed_tokens*.weight`, also the tied LM head) -> Q8_0: the
//     output distribution is most sensitive to the head, as in llama.cpp's Q4_0 mixes;
//   - kept exact: 1-D tensors (norm weights, layer scalars, router scales), integer tensors (the
//     centroid head's `token_ordering` is a lookup table), `masked_embedding.centroids.weight` (it
//     only picks clusters; tiny, and an error there changes which tokens can be drafted at all)
//     and a MoE layer's `router.proj.weight` (tiny; an error there changes which experts run).
#pragma once

#include <string>
#include <vector>

#include "specula/base/dtype.h"
#include "specula/base/status.h"

namespace specula {

struct QuantizeStats {
  int quantized = 0, kept = 0;
  size_t bytes_in = 0, bytes_out = 0;
};

// The dtype `policy` assigns to tensor `name` of `shape` and `dtype` when quantizing to `target`.
DType QuantizedType(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                    DType target);

Result<QuantizeStats> QuantizeCheckpoint(const std::string& in_dir, const std::string& out_dir,
                                         DType target);

}  // namespace specula
