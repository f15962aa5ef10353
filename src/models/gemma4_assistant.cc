// The Gemma 4 assistant's draft step, stage by stage (Input, per layer Attention and FeedForward,
// Output, then the dense or the centroid head). Shapes are [rows, width]; B = rows of the step.
#include "specula/models/gemma4_assistant.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <numeric>

#include "specula/base/thread_pool.h"
#include "specula/kernels/ops.h"
#include "src/models/decoder_block.h"
#include "src/models/gemma4_assistant_parts.h"

namespace specula {

// One caller's step buffers, grown on demand. Shapes for a step of B rows.
struct Gemma4Assistant::Scratch : PassScratch {
  std::vector<float> x;                // [B, 2 H_b] embedding, then h_in
  std::vector<float> z, a;             // [B, H_d] residual stream, sublayer output
  std::vector<float> q, o;             // [B, nh * hd] queries, attention output
  std::vector<float> g, u;             // [B, ff] MLP gate and up
  std::vector<float> attn;             // AttentionScratchFloats
  std::vector<float> rope_cs;          // [hd] RopeCosSin of one row's position
  std::vector<float> hidden, h_out;    // [B, H_d], [B, H_b]
  std::vector<float> logits, cluster;  // dense head [B, V]; centroid scores [B, C]
};

// One draft step over B rows, shared by the stages.
struct Gemma4Assistant::Round {
  const KernelTable& kt;
  ThreadPool& pool;
  Scratch& s;
  std::span<const StepArgs> batch;
  std::span<DraftStepOutput* const> outs;
  int B = 0;
};

std::unique_ptr<PassScratch> Gemma4Assistant::NewScratch() const {
  return std::make_unique<Scratch>();
}

void Gemma4Assistant::Step(const StepArgs& args, ThreadPool& pool, PassScratch& scratch,
                           DraftStepOutput* out) const {
  DraftStepOutput* outs[] = {out};
  StepBatch(std::span<const StepArgs>(&args, 1), pool, scratch, outs);
}

void Gemma4Assistant::StepBatch(std::span<const StepArgs> batch, ThreadPool& pool,
                                PassScratch& scratch,
                                std::span<DraftStepOutput* const> outs) const {
  assert(dynamic_cast<Scratch*>(&scratch) != nullptr && "scratch from another model's NewScratch");
  Round r{.kt = BestKernels(),  // dispatch once per step
          .pool = pool,
          .s = static_cast<Scratch&>(scratch),
          .batch = batch,
          .outs = outs,
          .B = static_cast<int>(batch.size())};
  Input(r);
  for (int l = 0; l < static_cast<int>(layers_.size()); ++l) {
    Attention(r, l);
    FeedForward(r, l);
  }
  Output(r);
  if (config_.use_ordered_embeddings) {
    CentroidHead(r);
  } else {
    DenseHead(r);
  }
}

// x = [E_target[tok] * sqrt(H_b), h_in] per row; z = pre_projection x (no norm, no scale).
void Gemma4Assistant::Input(Round& r) const {
  const size_t Hb = static_cast<size_t>(config_.backbone_hidden_size);
  const size_t B = static_cast<size_t>(r.B);
  Scratch& s = r.s;
  s.x.resize(B * 2 * Hb);
  for (size_t b = 0; b < B; ++b) {
    target_.EmbedScaled(r.batch[b].token, &s.x[b * 2 * Hb]);
    std::memcpy(&s.x[b * 2 * Hb + Hb], r.batch[b].h_in, Hb * sizeof(float));
  }
  s.z.resize(B * static_cast<size_t>(config_.hidden_size));
  MatMul(r.kt, r.pool, pre_proj_, s.x.data(), B, s.z.data());
}

// z += post_attn_norm(o_proj(attention(q))), q from input_norm(z) at the round's position P, into
// the target's cache (keys 0 .. P-1, windowed on sliding layers): the assistant has no K/V.
void Gemma4Assistant::Attention(Round& r, int l) const {
  const Gemma4AssistantConfig& c = config_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  Scratch& s = r.s;
  const bool full = c.layer_types[static_cast<size_t>(l)] == AttnType::kFull;
  const int hd = c.LayerHeadDim(l), nh = c.num_heads, nkv = c.LayerKvHeads(l);
  const size_t Hd = static_cast<size_t>(c.hidden_size), B = static_cast<size_t>(r.B);
  const size_t qd = static_cast<size_t>(nh * hd);
  const int slot = full ? slot_full_ : slot_sliding_;
  const float* inv = full ? rope_full_.data() : rope_sliding_.data();
  const int group = nh / nkv;
  s.a.resize(B * Hd);
  NormRows(r.pool, s.z.data(), w.input_norm, c.rms_norm_eps, Hd, r.B, s.a.data());
  s.q.resize(B * qd);
  MatMul(r.kt, r.pool, w.q, s.a.data(), B, s.q.data());
  s.o.assign(B * qd, 0.0f);
  s.rope_cs.resize(static_cast<size_t>(hd));
  for (size_t b = 0; b < B; ++b) {
    const int P = r.batch[b].pos;
    const KvCache& cache = *r.batch[b].cache;
    RopeCosSin(hd, inv, P, s.rope_cs.data());  // once for all heads of this row
    for (int h = 0; h < nh; ++h) {
      float* qh = &s.q[b * qd + static_cast<size_t>(h * hd)];
      RmsNorm(qh, w.q_norm.data(), static_cast<size_t>(hd), c.rms_norm_eps, qh);
      ApplyRopeTable(qh, hd, inv, s.rope_cs.data());
    }
    // A q_len = 1 query needs no causal mask: it sees every committed key in its window.
    const int lo = FirstVisibleKey(P, full ? 0 : c.sliding_window);
    if (P - lo <= 0) continue;  // no visible keys (cannot happen after a non-empty prefill)
    const int range[2] = {0, P - lo - 1};  // key index j is position lo + j
    const size_t floats = AttentionScratchFloats(
        1, static_cast<size_t>(group), static_cast<size_t>(hd), static_cast<size_t>(P - lo));
    if (s.attn.size() < floats) s.attn.resize(floats);  // grown only
    for (int g = 0; g < nkv; ++g) {
      KvRun runs[2];
      const size_t nruns =
          cache.Runs(slot, lo, P, static_cast<size_t>(g * hd), std::span<KvRun>(runs));
      const size_t at = b * qd + static_cast<size_t>(g * group * hd);
      r.kt.attention({.runs = std::span<const KvRun>(runs, nruns),
                      .q = s.q.data() + at,
                      .ldq = qd,
                      .rows = 1,
                      .heads = static_cast<size_t>(group),
                      .head_dim = static_cast<size_t>(hd),
                      .first = &range[0],
                      .last = &range[1],
                      .o = s.o.data() + at,
                      .ldo = qd,
                      .scratch = s.attn.data()});
    }
  }
  MatMul(r.kt, r.pool, w.o, s.o.data(), B, s.a.data());
  AddNormedRows(r.pool, s.a.data(), w.post_attn_norm, c.rms_norm_eps, Hd, r.B, s.z.data());
}

// z = (z + post_ffn_norm(MLP(pre_ffn_norm(z)))) * layer_scalar: the assistant's own gated-GELU
// MLP, of the same form as the target's dense one.
void Gemma4Assistant::FeedForward(Round& r, int l) const {
  const Gemma4AssistantConfig& c = config_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  Scratch& s = r.s;
  const size_t Hd = static_cast<size_t>(c.hidden_size);
  NormRows(r.pool, s.z.data(), w.pre_ffn_norm, c.rms_norm_eps, Hd, r.B, s.a.data());
  GatedMlp(r.kt, r.pool,
           {.gate = w.gate,
            .up = w.up,
            .down = w.down,
            .in = s.a.data(),
            .rows = r.B,
            .out = s.a.data()},
           s.g, s.u);
  AddNormedRows(r.pool, s.a.data(), w.post_ffn_norm, c.rms_norm_eps, Hd, r.B, s.z.data());
  for (float& v : s.z) v *= w.layer_scalar;
}

// hidden = final_norm(z); h_out = post_projection(hidden), the next step's h_in.
void Gemma4Assistant::Output(Round& r) const {
  const size_t Hb = static_cast<size_t>(config_.backbone_hidden_size),
               Hd = static_cast<size_t>(config_.hidden_size), B = static_cast<size_t>(r.B);
  Scratch& s = r.s;
  s.hidden.resize(B * Hd);
  NormRows(r.pool, s.z.data(), final_norm_, config_.rms_norm_eps, Hd, r.B, s.hidden.data());
  s.h_out.resize(B * Hb);
  MatMul(r.kt, r.pool, post_proj_, s.hidden.data(), B, s.h_out.data());
  for (size_t b = 0; b < B; ++b) {
    r.outs[b]->hidden.assign(&s.hidden[b * Hd], &s.hidden[(b + 1) * Hd]);
    r.outs[b]->h_out.assign(&s.h_out[b * Hb], &s.h_out[(b + 1) * Hb]);
  }
}

// Logits over the whole vocabulary from the tied embedding (no softcap).
void Gemma4Assistant::DenseHead(Round& r) const {
  const size_t V = static_cast<size_t>(config_.vocab_size), B = static_cast<size_t>(r.B);
  Scratch& s = r.s;
  s.logits.resize(B * V);
  MatMul(r.kt, r.pool, embed_, s.hidden.data(), B, s.logits.data());
  for (size_t b = 0; b < B; ++b) {
    r.outs[b]->candidates.clear();
    r.outs[b]->logits.assign(&s.logits[b * V], &s.logits[(b + 1) * V]);
  }
}

// Scores the clusters, keeps the top-k (ties: lower index) and scores only their tokens.
void Gemma4Assistant::CentroidHead(Round& r) const {
  const Gemma4AssistantConfig& c = config_;
  const size_t Hd = static_cast<size_t>(c.hidden_size), B = static_cast<size_t>(r.B);
  const size_t C = static_cast<size_t>(c.num_centroids);
  Scratch& s = r.s;
  s.cluster.resize(B * C);
  MatMul(r.kt, r.pool, centroids_, s.hidden.data(), B, s.cluster.data());
  const int per = c.vocab_size / c.num_centroids;
  for (size_t b = 0; b < B; ++b) {
    DraftStepOutput* out = r.outs[b];
    const float* cs = &s.cluster[b * C];
    std::vector<int> order(C);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + c.centroid_top_k, order.end(),
                      [&](int x, int y) { return cs[x] != cs[y] ? cs[x] > cs[y] : x < y; });
    out->candidates.resize(static_cast<size_t>(c.centroid_top_k * per));
    for (int k = 0; k < c.centroid_top_k; ++k) {
      const int* ids = &token_ordering_[static_cast<size_t>(order[static_cast<size_t>(k)] * per)];
      std::copy(ids, ids + per, out->candidates.begin() + static_cast<long>(k * per));
    }
    out->logits.resize(out->candidates.size());
    const float* hb = &s.hidden[b * Hd];
    // One task per cluster, not per candidate: a cluster's ids are scattered over the embedding, so
    // its rows are scored one by one, but the activation is prepared once per task and 32 tasks
    // share the pool's counter instead of 4,096 (a task per row costs more than scoring it).
    const size_t scratch_floats = MatMulScratchFloats(1, Hd);
    r.pool.ParallelFor(static_cast<size_t>(c.centroid_top_k), [&](size_t k, int thread) {
      float* scratch = r.pool.Scratch(thread, scratch_floats);
      const size_t first = k * static_cast<size_t>(per);
      for (size_t i = first; i < first + static_cast<size_t>(per); ++i) {
        const MatView row{embed_.dtype, embed_.Row(out->candidates[i]), 1, embed_.cols};
        r.kt.matmul_rows({.w = row,
                          .x = hb,
                          .ldx = Hd,
                          .m = 1,
                          .n_begin = 0,
                          .n_end = 1,
                          .y = &out->logits[i],
                          .ldy = 1,
                          .scratch = scratch,
                          .scratch_floats = scratch_floats,
                          .x_prepared = i > first});
      }
    });
  }
}

}  // namespace specula
