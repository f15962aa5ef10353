// The assistant's private parts, shared by its loader and its draft step: one layer's bound
// weights.
#pragma once

#include <vector>

#include "specula/kernels/kernels.h"
#include "specula/models/gemma4_assistant.h"

namespace specula {

struct Gemma4Assistant::LayerWeights {
  std::vector<float> input_norm, post_attn_norm, pre_ffn_norm, post_ffn_norm;  // [H_d]
  float layer_scalar = 1.0f;
  MatView q, o, gate, up, down;
  std::vector<float> q_norm;  // [hd]
};

}  // namespace specula
