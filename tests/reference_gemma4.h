// A naive reference of the Gemma 4 text decoder, in double precision, recomputing the whole
// sequence on every call and sharing no code with the engine's forward pass. It is the oracle the
// engine is tested against.
#pragma once

#include <string>
#include <vector>

#include "specula/formats/weight_store.h"
#include "specula/models/gemma4_config.h"

namespace specula::test {

struct RefOutput {
  std::vector<std::vector<double>> logits;  // [T][V] after the softcap
  std::vector<std::vector<double>> hidden;  // [T][H] post-final-norm
  // Per layer, the K and V rows it computed [T][kv_dim] (empty on KV-shared layers).
  std::vector<std::vector<std::vector<double>>> k, v;
  // Mixture of experts, per position: the smallest margin between the k-th and the next expert's
  // probability over the layers (infinite for dense models). Where it is tiny, any rounding may
  // pick another expert, and the output may differ by O(1).
  std::vector<double> router_margin;
};

struct RefOptions {
  // Round each block-dtype matmul's input as the engine's kernels do (AsMatMulInput); false: the
  // exact input, to measure how far that rounding alone moves the model.
  bool round_activations = true;
};

class ReferenceGemma4 {
 public:
  ReferenceGemma4(const Gemma4Config& config, const WeightStore& store, RefOptions options = {});
  RefOutput Forward(const std::vector<int>& ids) const;

 private:
  std::vector<double> Vec(const std::string& name) const;
  // y[out] = W[out, in] x[in]; for a stack of matrices [n, out, in], the matrix `index`.
  std::vector<double> MatVec(const std::string& name, const std::vector<double>& x,
                             int index = 0) const;
  // The mixture-of-experts half of layer `p`'s feed-forward for one row: r is the post-attention
  // residual; returns post_ffn_norm_2(sum_j w_j Expert_j(pre_ffn_norm_2(r))).
  std::vector<double> Experts(const std::string& p, const std::vector<double>& r,
                              double* margin) const;
  const Gemma4Config& c_;
  const WeightStore& store_;
  RefOptions options_;
};

}  // namespace specula::test
