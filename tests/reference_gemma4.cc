#include "reference_gemma4.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "reference_ops.h"

namespace specula::test {
ReferenceGemma4::ReferenceGemma4(const Gemma4Config& config, const WeightStore& store,
                                 RefOptions options)
    : c_(config), store_(store), options_(options) {}

VecD ReferenceGemma4::Vec(const std::string& name) const {
  const TensorView* t = store_.Find(c_.tensor_prefix + name);
  VecD v(static_cast<size_t>(t->numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = LoadAsF32(t->dtype, t->data, i);
  return v;
}

VecD ReferenceGemma4::MatVec(const std::string& name, const VecD& x, int index) const {
  const TensorView* t = store_.Find(c_.tensor_prefix + name);
  const size_t n = t->shape.size();
  const size_t rows = static_cast<size_t>(t->shape[n - 2]),
               cols = static_cast<size_t>(t->shape[n - 1]);
  const size_t base = static_cast<size_t>(index) * rows * cols;
  const VecD xq = options_.round_activations ? AsMatMulInput(t->dtype, x) : x;
  VecD y(rows, 0.0);
  for (size_t r = 0; r < rows; ++r) {
    double s = 0;
    for (size_t k = 0; k < cols; ++k)
      s += LoadAsF32(t->dtype, t->data, base + r * cols + k) * xq[k];
    y[r] = s;
  }
  return y;
}

VecD ReferenceGemma4::Experts(const std::string& p, const VecD& r, double* margin) const {
  const int H = c_.hidden_size, E = c_.num_experts, k = c_.top_k_experts,
            F = c_.moe_intermediate_size;
  const double eps = c_.rms_norm_eps;
  // Router: softmax(RMSNorm(r) * scale * H^-0.5 · Wr^T), the k most probable (lower index first
  // on ties), renormalised, times the per-expert scale.
  const VecD scale = Vec(p + "router.scale"), per_expert = Vec(p + "router.per_expert_scale");
  VecD z = Rms(r, nullptr, eps);
  for (int i = 0; i < H; ++i) z[i] *= scale[i] / std::sqrt(static_cast<double>(H));
  VecD prob = MatVec(p + "router.proj.weight", z);
  const double mx = *std::max_element(prob.begin(), prob.end());
  double sum = 0;
  for (double& v : prob) sum += (v = std::exp(v - mx));
  for (double& v : prob) v /= sum;
  std::vector<int> order(static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) order[e] = e;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return prob[a] > prob[b]; });
  double kept = 0;
  for (int j = 0; j < k; ++j) kept += prob[order[j]];
  if (k < E) *margin = std::min(*margin, prob[order[k - 1]] - prob[order[k]]);
  const VecD pre2 = Vec(p + "pre_feedforward_layernorm_2.weight"),
             post2 = Vec(p + "post_feedforward_layernorm_2.weight");
  const VecD xe = Rms(r, &pre2, eps);
  VecD y(static_cast<size_t>(H), 0.0);
  for (int j = 0; j < k; ++j) {
    const int e = order[j];
    const double w = prob[e] / kept * per_expert[e];
    const VecD gu = MatVec(p + "experts.gate_up_proj", xe, e);  // [2F]: gate, then up
    VecD act(static_cast<size_t>(F));
    for (int i = 0; i < F; ++i) act[i] = Gelu(gu[i]) * gu[F + i];
    const VecD out = MatVec(p + "experts.down_proj", act, e);
    for (int i = 0; i < H; ++i) y[i] += w * out[i];
  }
  return Rms(y, &post2, eps);
}

RefOutput ReferenceGemma4::Forward(const std::vector<int>& ids) const {
  const int T = static_cast<int>(ids.size()), H = c_.hidden_size, L = c_.num_layers, P = c_.ple_dim;
  const double eps = c_.rms_norm_eps;
  const TensorView* emb = store_.Find(c_.tensor_prefix + "embed_tokens.weight");
  const double scale = RoundThrough(emb->dtype, std::sqrt(static_cast<float>(H)));
  std::vector<VecD> h(static_cast<size_t>(T), VecD(static_cast<size_t>(H)));
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < H; ++i)
      h[t][i] = LoadAsF32(emb->dtype, emb->data, static_cast<size_t>(ids[t]) * H + i) * scale;
  }
  // Per-layer inputs.
  std::vector<VecD> ple(static_cast<size_t>(T));
  if (P > 0) {
    const TensorView* pe = store_.Find(c_.tensor_prefix + "embed_tokens_per_layer.weight");
    const double pscale = RoundThrough(pe->dtype, std::sqrt(static_cast<float>(P)));
    const VecD pnorm = Vec("per_layer_projection_norm.weight");
    for (int t = 0; t < T; ++t) {
      VecD proj = MatVec("per_layer_model_projection.weight", h[t]);
      const int id = ids[t] < c_.ple_vocab ? ids[t] : 0;
      ple[t].resize(static_cast<size_t>(L * P));
      for (int l = 0; l < L; ++l) {
        VecD chunk(proj.begin() + l * P, proj.begin() + (l + 1) * P);
        for (double& v : chunk) v /= std::sqrt(static_cast<double>(H));
        chunk = Rms(chunk, &pnorm, eps);
        for (int i = 0; i < P; ++i) {
          const double tok =
              LoadAsF32(pe->dtype, pe->data, static_cast<size_t>(id) * L * P + l * P + i) * pscale;
          ple[t][l * P + i] = (chunk[i] + tok) / std::sqrt(2.0);
        }
      }
    }
  }
  std::vector<double> margin(static_cast<size_t>(T), std::numeric_limits<double>::infinity());
  const int first_shared = L - c_.num_kv_shared_layers;
  std::vector<std::vector<VecD>> K(static_cast<size_t>(L)),
      Vv(static_cast<size_t>(L));  // [layer][t][kv_dim]
  for (int l = 0; l < L; ++l) {
    const bool full = c_.layers[l].type == AttnType::kFull;
    const int hd = full ? c_.global_head_dim : c_.head_dim;
    const bool keqv = full && c_.attention_k_eq_v;
    const int nkv = keqv ? c_.num_global_kv_heads : c_.num_kv_heads;
    const int nh = c_.num_heads;
    const RopeSpec rope = full ? c_.rope_full : c_.rope_sliding;
    const std::string p = "layers." + std::to_string(l) + ".";
    const VecD in_norm = Vec(p + "input_layernorm.weight"), qn = Vec(p + "self_attn.q_norm.weight");
    std::vector<VecD> q(static_cast<size_t>(T));
    int src = l;
    if (l >= first_shared) {  // last non-shared layer of the same type
      for (int j = first_shared - 1; j >= 0; --j) {
        if (c_.layers[j].type == c_.layers[l].type) {
          src = j;
          break;
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      const VecD x = Rms(h[t], &in_norm, eps);
      q[t] = MatVec(p + "self_attn.q_proj.weight", x);
      for (int hh = 0; hh < nh; ++hh) {
        VecD head(q[t].begin() + hh * hd, q[t].begin() + (hh + 1) * hd);
        head = Rms(head, &qn, eps);
        Rope(head.data(), hd, rope.rotated_pairs, rope.theta, t);
        std::copy(head.begin(), head.end(), q[t].begin() + hh * hd);
      }
      if (src == l) {
        const VecD kn = Vec(p + "self_attn.k_norm.weight");
        VecD k = MatVec(p + "self_attn.k_proj.weight", x);
        VecD v = keqv ? k : MatVec(p + "self_attn.v_proj.weight", x);
        for (int g = 0; g < nkv; ++g) {
          VecD kh(k.begin() + g * hd, k.begin() + (g + 1) * hd),
              vh(v.begin() + g * hd, v.begin() + (g + 1) * hd);
          kh = Rms(kh, &kn, eps);
          Rope(kh.data(), hd, rope.rotated_pairs, rope.theta, t);
          vh = Rms(vh, nullptr, eps);
          std::copy(kh.begin(), kh.end(), k.begin() + g * hd);
          std::copy(vh.begin(), vh.end(), v.begin() + g * hd);
        }
        K[l].push_back(k);
        Vv[l].push_back(v);
      }
    }
    const auto& Ks = K[src];
    const auto& Vs = Vv[src];
    const VecD post_attn = Vec(p + "post_attention_layernorm.weight"),
               pre_ffn = Vec(p + "pre_feedforward_layernorm.weight"),
               post_ffn = Vec(p + "post_feedforward_layernorm.weight");
    const double scalar = Vec(p + "layer_scalar")[0];
    for (int t = 0; t < T; ++t) {
      VecD o(static_cast<size_t>(nh * hd), 0.0);
      for (int hh = 0; hh < nh; ++hh) {
        const int g = hh / (nh / nkv);
        std::vector<double> s;
        std::vector<int> js;
        for (int j = 0; j <= t; ++j) {
          if (!full && t - j >= c_.sliding_window) continue;
          double d = 0;
          for (int i = 0; i < hd; ++i) d += q[t][hh * hd + i] * Ks[j][g * hd + i];
          s.push_back(d);
          js.push_back(j);
        }
        double mx = -1e300, sum = 0;
        for (double v : s) mx = std::max(mx, v);
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (size_t n = 0; n < js.size(); ++n) {
          for (int i = 0; i < hd; ++i) o[hh * hd + i] += s[n] / sum * Vs[js[n]][g * hd + i];
        }
      }
      VecD a = Rms(MatVec(p + "self_attn.o_proj.weight", o), &post_attn, eps);
      for (int i = 0; i < H; ++i) h[t][i] += a[i];
      const VecD y = Rms(h[t], &pre_ffn, eps);
      VecD g = MatVec(p + "mlp.gate_proj.weight", y), u = MatVec(p + "mlp.up_proj.weight", y);
      for (size_t i = 0; i < g.size(); ++i) g[i] = Gelu(g[i]) * u[i];
      VecD m = MatVec(p + "mlp.down_proj.weight", g);
      if (c_.moe()) {  // post_ffn_norm_1(MLP) + the experts, both read the residual h[t]
        const VecD post1 = Vec(p + "post_feedforward_layernorm_1.weight");
        m = Rms(m, &post1, eps);
        const VecD y2 = Experts(p, h[t], &margin[t]);
        for (int i = 0; i < H; ++i) m[i] += y2[i];
      }
      m = Rms(m, &post_ffn, eps);
      for (int i = 0; i < H; ++i) h[t][i] += m[i];
      if (P > 0) {
        VecD gg = MatVec(p + "per_layer_input_gate.weight", h[t]);
        for (int i = 0; i < P; ++i) gg[i] = Gelu(gg[i]) * ple[t][l * P + i];
        const VecD pn = Vec(p + "post_per_layer_input_norm.weight");
        VecD pp = Rms(MatVec(p + "per_layer_projection.weight", gg), &pn, eps);
        for (int i = 0; i < H; ++i) h[t][i] += pp[i];
      }
      for (double& v : h[t]) v *= scalar;
    }
  }
  RefOutput out;
  out.router_margin = margin;
  out.k = K;
  out.v = Vv;
  const VecD fn = Vec("norm.weight");
  for (int t = 0; t < T; ++t) {
    out.hidden.push_back(Rms(h[t], &fn, eps));
    VecD lg = MatVec("embed_tokens.weight", out.hidden.back());
    if (c_.final_logit_softcapping > 0) {
      for (double& v : lg)
        v = c_.final_logit_softcapping * std::tanh(v / c_.final_logit_softcapping);
    }
    out.logits.push_back(lg);
  }
  return out;
}

}  // namespace specula::test
