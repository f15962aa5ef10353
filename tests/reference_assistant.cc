#include "reference_assistant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "reference_ops.h"

namespace specula::test {
namespace {

VecD Get(const WeightStore& s, const std::string& name) {
  const TensorView* t = s.Find(name);
  VecD v(static_cast<size_t>(t->numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = LoadAsF32(t->dtype, t->data, i);
  return v;
}

VecD MatVec(const WeightStore& s, const std::string& name, const VecD& x) {
  const TensorView* t = s.Find(name);
  const size_t rows = static_cast<size_t>(t->shape[0]), cols = static_cast<size_t>(t->shape[1]);
  const VecD xq = AsMatMulInput(t->dtype, x);
  VecD y(rows, 0.0);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t k = 0; k < cols; ++k) y[r] += LoadAsF32(t->dtype, t->data, r * cols + k) * xq[k];
  }
  return y;
}

}  // namespace

RefDraftStep ReferenceDraftStep(const Gemma4AssistantConfig& a, const WeightStore& as,
                                const Gemma4Config& t, const WeightStore& ts, const RefOutput& run,
                                int token, const VecD& h_in, int P) {
  const int Hb = a.backbone_hidden_size;
  const double eps = a.rms_norm_eps;
  // Input: the TARGET's embedding row scaled by sqrt(H_b) (rounded to its dtype, as the target
  // does).
  const TensorView* emb = ts.Find(t.tensor_prefix + "embed_tokens.weight");
  const double scale = RoundThrough(emb->dtype, std::sqrt(static_cast<float>(Hb)));
  VecD x(static_cast<size_t>(2 * Hb));
  for (int i = 0; i < Hb; ++i)
    x[static_cast<size_t>(i)] =
        LoadAsF32(emb->dtype, emb->data, static_cast<size_t>(token) * Hb + i) * scale;
  for (int i = 0; i < Hb; ++i) x[static_cast<size_t>(Hb + i)] = h_in[static_cast<size_t>(i)];
  VecD z = MatVec(as, "pre_projection.weight", x);
  const int first_shared = t.num_layers - t.num_kv_shared_layers;
  for (size_t l = 0; l < a.layer_types.size(); ++l) {
    const bool full = a.layer_types[l] == AttnType::kFull;
    int src = -1;
    for (int j = first_shared - 1; j >= 0 && src < 0; --j) {
      if ((t.layers[static_cast<size_t>(j)].type == AttnType::kFull) == full) src = j;
    }
    const int hd = full ? a.global_head_dim : a.head_dim, nh = a.num_heads;
    const int nkv = full && a.attention_k_eq_v ? a.num_global_kv_heads : a.num_kv_heads;
    const RopeSpec rope = full ? a.rope_full : a.rope_sliding;
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const VecD in_norm = Get(as, p + "input_layernorm.weight"),
               qn = Get(as, p + "self_attn.q_norm.weight");
    VecD q = MatVec(as, p + "self_attn.q_proj.weight", Rms(z, &in_norm, eps));
    VecD o(static_cast<size_t>(nh * hd), 0.0);
    const int lo = full ? 0 : std::max(0, P - a.sliding_window + 1);  // keys lo .. P-1
    for (int h = 0; h < nh; ++h) {
      VecD qh(q.begin() + h * hd, q.begin() + (h + 1) * hd);
      qh = Rms(qh, &qn, eps);
      Rope(qh.data(), hd, rope.rotated_pairs, rope.theta, P);  // the round's position P
      const int g = h / (nh / nkv);
      VecD s;
      for (int j = lo; j < P; ++j) {
        double d = 0;
        for (int i = 0; i < hd; ++i)
          d += qh[static_cast<size_t>(i)] * run.k[static_cast<size_t>(src)][static_cast<size_t>(j)]
                                                 [static_cast<size_t>(g * hd + i)];
        s.push_back(d);
      }
      double mx = -1e300, sum = 0;
      for (double v : s) mx = std::max(mx, v);
      for (double& v : s) sum += (v = std::exp(v - mx));
      for (int j = lo; j < P; ++j) {
        for (int i = 0; i < hd; ++i) {
          o[static_cast<size_t>(h * hd + i)] +=
              s[static_cast<size_t>(j - lo)] / sum *
              run.v[static_cast<size_t>(src)][static_cast<size_t>(j)]
                   [static_cast<size_t>(g * hd + i)];
        }
      }
    }
    const VecD pa = Get(as, p + "post_attention_layernorm.weight"),
               pf = Get(as, p + "pre_feedforward_layernorm.weight"),
               po = Get(as, p + "post_feedforward_layernorm.weight");
    VecD attn = Rms(MatVec(as, p + "self_attn.o_proj.weight", o), &pa, eps);
    for (size_t i = 0; i < z.size(); ++i) z[i] += attn[i];
    const VecD y = Rms(z, &pf, eps);
    VecD gg = MatVec(as, p + "mlp.gate_proj.weight", y),
         uu = MatVec(as, p + "mlp.up_proj.weight", y);
    for (size_t i = 0; i < gg.size(); ++i) gg[i] = Gelu(gg[i]) * uu[i];
    VecD m = Rms(MatVec(as, p + "mlp.down_proj.weight", gg), &po, eps);
    const double scalar = Get(as, p + "layer_scalar")[0];
    for (size_t i = 0; i < z.size(); ++i) z[i] = (z[i] + m[i]) * scalar;
  }
  RefDraftStep r;
  const VecD fn = Get(as, "model.norm.weight");
  r.hidden = Rms(z, &fn, eps);
  r.h_out = MatVec(as, "post_projection.weight", r.hidden);
  r.dense_logits = MatVec(as, "model.embed_tokens.weight", r.hidden);
  if (a.use_ordered_embeddings) {
    const VecD c = MatVec(as, "masked_embedding.centroids.weight", r.hidden);
    std::vector<int> idx(c.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int x1, int x2) {
      return c[static_cast<size_t>(x1)] > c[static_cast<size_t>(x2)];
    });
    const TensorView* ord = as.Find("masked_embedding.token_ordering");
    const int per = a.vocab_size / a.num_centroids;
    for (int s = 0; s < a.centroid_top_k; ++s) {
      for (int i = 0; i < per; ++i) {
        int64_t id;
        std::memcpy(&id,
                    static_cast<const uint8_t*>(ord->data) +
                        8 * static_cast<size_t>(idx[static_cast<size_t>(s)] * per + i),
                    8);
        r.candidates.push_back(static_cast<int>(id));
        r.candidate_logits.push_back(r.dense_logits[static_cast<size_t>(id)]);
      }
    }
  }
  return r;
}

}  // namespace specula::test
