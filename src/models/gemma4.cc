// The Gemma 4 text decoder's forward pass, stage by stage (Plan, Embed, then per layer
// AttentionBlock, FeedForwardBlock, EndLayer, then CommitKv and Head). Shapes are [rows, width]
// unless noted; T = rows of all sequences in the pass, H = hidden size.
#include "specula/models/gemma4.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "specula/base/thread_pool.h"
#include "specula/kernels/ops.h"
#include "src/models/decoder_block.h"
#include "src/models/for_each_row.h"
#include "src/models/gemma4_parts.h"
#include "src/models/moe.h"

namespace specula {
namespace {

// A token tree's rows: position by depth, and which rows each row sees: itself and its ancestors
// on full-attention layers, and of those the ones within `window` positions on sliding layers.
// Appends [2, T, T] marks (full, then sliding) to `visible` and T positions to `row_pos`.
Status PlanTree(const BatchSeq& q, int window, std::vector<uint8_t>* visible,
                std::vector<int>* row_pos) {
  const size_t T = q.ids.size();
  if (q.parents.size() != T) {
    return Error("tree parents: " + std::to_string(q.parents.size()) + " entries for " +
                 std::to_string(T) + " rows");
  }
  const size_t base = visible->size();
  visible->resize(base + 2 * T * T, 0);
  std::vector<int> depth(T);
  for (size_t t = 0; t < T; ++t) {
    const int parent = q.parents[t];
    if (parent < -1 || parent >= static_cast<int>(t)) {
      return Error("tree parents: row " + std::to_string(t) + " has parent " +
                   std::to_string(parent) + " (must be -1 or an earlier row)");
    }
    uint8_t* row = &(*visible)[base + t * T];
    row[t] = 1;
    if (parent >= 0) {
      const uint8_t* up = &(*visible)[base + static_cast<size_t>(parent) * T];
      for (size_t a = 0; a < t; ++a) row[a] = up[a];
      depth[t] = depth[static_cast<size_t>(parent)] + 1;
    }
    row_pos->push_back(q.cache->length() + depth[t]);
  }
  // Sliding layers: an ancestor `window` or more positions above a row is out of its window (a
  // row's key index is its row, not its position, so the kernel's key range cannot tell).
  for (size_t t = 0; t < T; ++t) {
    for (size_t a = 0; a <= t; ++a) {
      (*visible)[base + T * T + t * T + a] =
          (*visible)[base + t * T + a] && (window <= 0 || depth[t] - depth[a] < window);
    }
  }
  return OkStatus();
}

}  // namespace

Status Gemma4Model::Forward(const ForwardRequest& req, ThreadPool& pool, ForwardOutput* out) const {
  const int T = static_cast<int>(req.ids.size());
  const BatchSeq seq{
      .ids = req.ids, .cache = req.cache, .logit_rows = req.all_logits ? T : 1, .parents = {}};
  BatchOutput batch;
  batch.logits = std::move(out->logits);  // reuse the caller's buffers
  batch.hidden = std::move(out->hidden);
  std::unique_ptr<PassScratch> own = req.scratch ? nullptr : NewScratch();
  PassScratch& scratch = req.scratch ? *req.scratch : *own;
  if (Status s = ForwardBatch(std::span<const BatchSeq>(&seq, 1), pool, scratch, &batch); !s.ok())
    return s;
  out->rows = seq.logit_rows;
  out->logits = std::move(batch.logits);
  out->hidden = std::move(batch.hidden);
  out->experts_read = batch.experts_read;
  return OkStatus();
}

std::unique_ptr<PassScratch> Gemma4Model::NewScratch() const {
  return std::make_unique<Workspace>();
}

Status Gemma4Model::ForwardBatch(std::span<const BatchSeq> seqs, ThreadPool& pool,
                                 PassScratch& scratch, BatchOutput* out) const {
  // Rows of all sequences are stacked: every matmul runs over all rows at once (the weights stream
  // once per pass), while RoPE positions, attention and the KV cache stay per sequence. Row
  // results do not depend on the batch (kernels are batch-invariant).
  assert(dynamic_cast<Workspace*>(&scratch) != nullptr &&
         "scratch from another model's NewScratch");
  Pass p{.kt = BestKernels(),  // dispatch once per pass
         .pool = pool,
         .ws = static_cast<Workspace&>(scratch),
         .seqs = seqs,
         .out = out};
  if (Status s = Plan(p); !s.ok()) return s;  // nothing is written before this
  Embed(p);
  for (int l = 0; l < config_.num_layers; ++l) {
    AttentionBlock(p, l);
    FeedForwardBlock(p, l);
    EndLayer(p, l);
  }
  CommitKv(p);
  Head(p);
  return OkStatus();
}

// Validates every sequence and lays out the stacked rows (ids, positions, offsets), their RoPE
// tables and the pass's buffers.
Status Gemma4Model::Plan(Pass& p) const {
  const Gemma4Config& c = config_;
  Workspace& ws = p.ws;
  if (p.seqs.empty()) return Error("empty batch: at least one sequence is required");
  BatchOutput& out = *p.out;
  out.row_offset.assign(1, 0);
  out.logit_offset.assign(1, 0);
  out.experts_read = 0;
  ws.ids.clear();
  ws.row_pos.clear();
  ws.visible.clear();
  ws.visible_at.assign(p.seqs.size(), -1);
  for (size_t si = 0; si < p.seqs.size(); ++si) {
    const BatchSeq& q = p.seqs[si];
    const int Ts = static_cast<int>(q.ids.size());
    if (Ts == 0) return Error("empty input: at least one token is required");
    if (q.logit_rows < 0 || q.logit_rows > Ts) return Error("logit_rows out of range");
    assert(q.cache != nullptr && q.cache->num_layers() == p.seqs[0].cache->num_layers());
    for (size_t sj = 0; sj < si; ++sj)
      assert(p.seqs[sj].cache != q.cache && "one cache per sequence");
    for (int id : q.ids) {
      if (id < 0 || id >= c.vocab_size) {
        return Error("token id " + std::to_string(id) + " is out of range [0, " +
                     std::to_string(c.vocab_size) + ")");
      }
    }
    if (Status st = q.cache->CheckAppend(Ts); !st.ok()) return st;
    const int pos0 = q.cache->length();
    if (!q.parents.empty()) {
      if (Status st = PlanTree(q, c.sliding_window, &ws.visible, &ws.row_pos); !st.ok()) return st;
      ws.visible_at[si] = static_cast<long>(ws.visible.size()) - 2L * Ts * Ts;
    } else {
      for (int t = 0; t < Ts; ++t) ws.row_pos.push_back(pos0 + t);
    }
    ws.ids.insert(ws.ids.end(), q.ids.begin(), q.ids.end());
    p.max_keys = std::max(p.max_keys, pos0 + Ts);
    p.max_rows = std::max(p.max_rows, static_cast<size_t>(Ts));
    out.row_offset.push_back(out.row_offset.back() + Ts);
    out.logit_offset.push_back(out.logit_offset.back() + q.logit_rows);
  }
  p.T = out.row_offset.back();
  const size_t uT = static_cast<size_t>(p.T), uH = static_cast<size_t>(c.hidden_size);

  // RoPE cos/sin per row and layer type, shared by every head and layer of that type.
  const int hd_sliding = c.head_dim, hd_full = c.global_head_dim;
  ws.rope_sliding.resize(uT * static_cast<size_t>(hd_sliding));
  ws.rope_full.resize(uT * static_cast<size_t>(hd_full));
  for (size_t t = 0; t < uT; ++t) {
    RopeCosSin(hd_sliding, rope_sliding_.data(), ws.row_pos[t],
               &ws.rope_sliding[t * static_cast<size_t>(hd_sliding)]);
    RopeCosSin(hd_full, rope_full_.data(), ws.row_pos[t],
               &ws.rope_full[t * static_cast<size_t>(hd_full)]);
  }

  // Scratch for this pass's new K/V, committed to the cache after the last layer so that
  // KV-shared layers and early rows still see the pre-pass ring contents.
  const size_t n_slots = static_cast<size_t>(p.seqs[0].cache->num_layers());
  ws.new_k.resize(n_slots);
  ws.new_v.resize(n_slots);
  ws.attn_scratch.resize(static_cast<size_t>(p.pool.num_threads()));
  ws.ranges.resize(static_cast<size_t>(p.pool.num_threads()));
  ws.xn.resize(uT * uH);
  return OkStatus();
}

// x = E[ids] * sqrt(H), and the per-layer inputs where there are some (E2B/E4B).
void Gemma4Model::Embed(Pass& p) const {
  const Gemma4Config& c = config_;
  Workspace& ws = p.ws;
  const int T = p.T, H = c.hidden_size, P = c.ple_dim, L = c.num_layers;
  const size_t uT = static_cast<size_t>(T), uH = static_cast<size_t>(H);
  ws.x.resize(uT * uH);
  for (int t = 0; t < T; ++t) EmbedScaled(ws.ids[static_cast<size_t>(t)], &ws.x[t * uH]);

  // ple[T, L, P] = (norm(x Wp^T / sqrt(H)) + E_ple[ids] * sqrt(P)) / sqrt(2)
  if (P > 0) {
    const size_t LP = static_cast<size_t>(L) * static_cast<size_t>(P);
    ws.ple.resize(uT * LP);
    MatMul(p.kt, p.pool, ple_proj_, ws.x.data(), uT, ws.ple.data());
    const float proj_scale = 1.0f / std::sqrt(static_cast<float>(H));
    const float sum_scale = 1.0f / std::sqrt(2.0f);
    ForEachRow(p.pool, T, [&](int t) {
      int id = ws.ids[static_cast<size_t>(t)];
      if (id >= c.ple_vocab ||
          std::find(c.multimodal_token_ids.begin(), c.multimodal_token_ids.end(), id) !=
              c.multimodal_token_ids.end()) {
        id = 0;  // multimodal placeholders use the pad row
      }
      const void* tok_row = ple_embed_.Row(id);
      float* row = &ws.ple[static_cast<size_t>(t) * LP];
      for (int l = 0; l < L; ++l) {
        float* chunk = row + static_cast<size_t>(l) * static_cast<size_t>(P);
        for (int i = 0; i < P; ++i) chunk[i] *= proj_scale;
        RmsNorm(chunk, ple_norm_.data(), static_cast<size_t>(P), c.rms_norm_eps, chunk);
        for (int i = 0; i < P; ++i) {
          const size_t e = static_cast<size_t>(l * P + i);
          chunk[i] =
              (chunk[i] + LoadAsF32(ple_embed_.dtype, tok_row, e) * ple_embed_scale_) * sum_scale;
        }
      }
    });
  }
}

// x += post_attn_norm(o_proj(attention(q, K, V))), q/k/v from input_norm(x).
void Gemma4Model::AttentionBlock(Pass& p, int l) const {
  const Gemma4Config& c = config_;
  Workspace& ws = p.ws;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const size_t uT = static_cast<size_t>(p.T), uH = static_cast<size_t>(c.hidden_size);
  ProjectQkv(p, l);
  Attend(p, l);
  ws.a.resize(uT * uH);
  MatMul(p.kt, p.pool, w.o, ws.o.data(), uT, ws.a.data());
  AddNormedRows(p.pool, ws.a.data(), w.post_attn_norm, c.rms_norm_eps, uH, p.T, ws.x.data());
}

// q = RoPE(q_norm(q_proj xn)) and, on a layer that owns its K/V, this pass's new keys
// RoPE(k_norm(k_proj xn)) and values v_norm(v_proj xn) (or of the raw K where V is K), xn the
// input-normed rows.
void Gemma4Model::ProjectQkv(Pass& p, int l) const {
  const Gemma4Config& c = config_;
  Workspace& ws = p.ws;
  const Gemma4LayerSpec& s = c.layers[static_cast<size_t>(l)];
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const int T = p.T, hd = s.head_dim, nh = c.num_heads, nkv = s.num_kv_heads;
  const size_t uT = static_cast<size_t>(T), uH = static_cast<size_t>(c.hidden_size);
  const size_t qd = static_cast<size_t>(nh * hd), kvd = static_cast<size_t>(nkv * hd);
  const bool full = s.type == AttnType::kFull;
  const float* inv_freq = full ? rope_full_.data() : rope_sliding_.data();
  const float* rope = full ? ws.rope_full.data() : ws.rope_sliding.data();  // [T, hd]
  const int slot = kv_slot_[static_cast<size_t>(l)];

  NormRows(p.pool, ws.x.data(), w.input_norm, c.rms_norm_eps, uH, T, ws.xn.data());
  ws.q.resize(uT * qd);
  std::vector<float>& nk = ws.new_k[static_cast<size_t>(slot)];
  std::vector<float>& nv = ws.new_v[static_cast<size_t>(slot)];
  if (s.owns_kv) {  // q, k and (unless V is K) v in one dispatch
    nk.resize(uT * kvd);
    nv.resize(uT * kvd);
    const MatMulOut qkv[] = {{w.q, ws.q.data()}, {w.k, nk.data()}, {w.v, nv.data()}};
    MatMulShared(p.kt, p.pool, std::span<const MatMulOut>(qkv, s.k_eq_v ? 2 : 3), ws.xn.data(), uT);
    if (s.k_eq_v) nv = nk;  // V comes from the raw K projection, before k_norm and RoPE
  } else {
    MatMul(p.kt, p.pool, w.q, ws.xn.data(), uT, ws.q.data());
  }
  ForEachRow(p.pool, T, [&](int t) {
    if (s.owns_kv) {
      for (int h = 0; h < nkv; ++h) {
        float* kh = &nk[t * kvd + static_cast<size_t>(h * hd)];
        float* vh = &nv[t * kvd + static_cast<size_t>(h * hd)];
        RmsNorm(kh, w.k_norm.data(), static_cast<size_t>(hd), c.rms_norm_eps, kh);
        ApplyRopeTable(kh, hd, inv_freq, rope + static_cast<size_t>(t * hd));
        RmsNorm(vh, nullptr, static_cast<size_t>(hd), c.rms_norm_eps, vh);
      }
    }
    for (int h = 0; h < nh; ++h) {
      float* qh = &ws.q[t * qd + static_cast<size_t>(h * hd)];
      RmsNorm(qh, w.q_norm.data(), static_cast<size_t>(hd), c.rms_norm_eps, qh);
      ApplyRopeTable(qh, hd, inv_freq, rope + static_cast<size_t>(t * hd));
    }
  });
}

// o = softmax(q·K^T) V with scale 1, causal, sliding window on sliding layers, GQA, over each
// sequence's cached keys and this pass's new ones. One task per (sequence, KV head, share of its
// query heads): the kernel reads the head's keys and values once for all the task's rows and
// heads. Heads are split only as far as needed to give every thread work; a vector's output does
// not depend on the split.
void Gemma4Model::Attend(Pass& p, int l) const {
  const Gemma4Config& c = config_;
  Workspace& ws = p.ws;
  const Gemma4LayerSpec& s = c.layers[static_cast<size_t>(l)];
  const int hd = s.head_dim, nh = c.num_heads, nkv = s.num_kv_heads;
  const size_t qd = static_cast<size_t>(nh * hd), kvd = static_cast<size_t>(nkv * hd);
  const int slot = kv_slot_[static_cast<size_t>(l)];
  const float* new_k = ws.new_k[static_cast<size_t>(slot)].data();  // [T, kvd]
  const float* new_v = ws.new_v[static_cast<size_t>(slot)].data();
  const int window = s.type == AttnType::kSliding ? c.sliding_window : 0;
  const int group = nh / nkv;
  const size_t per_head = p.seqs.size() * static_cast<size_t>(nkv);
  const int splits = std::clamp(
      static_cast<int>((static_cast<size_t>(p.pool.num_threads()) + per_head - 1) / per_head), 1,
      group);
  const int heads_per_task = (group + splits - 1) / splits;
  // Grown only: layer types alternate head sizes, and a shrink-then-grow would zero it again.
  const size_t scratch =
      AttentionScratchFloats(p.max_rows, static_cast<size_t>(heads_per_task),
                             static_cast<size_t>(hd), static_cast<size_t>(p.max_keys));
  for (auto& sc : ws.attn_scratch) {
    if (sc.size() < scratch) sc.resize(scratch);
  }
  ws.o.resize(static_cast<size_t>(p.T) * qd);
  const BatchOutput& out = *p.out;
  p.pool.ParallelFor(per_head * static_cast<size_t>(splits), [&](size_t task, int thread) {
    const size_t si = task / (static_cast<size_t>(nkv) * static_cast<size_t>(splits));
    const int g = static_cast<int>(task / static_cast<size_t>(splits)) % nkv;
    const int h0 = static_cast<int>(task % static_cast<size_t>(splits)) * heads_per_task;
    const int heads = std::min(heads_per_task, group - h0);
    if (heads <= 0) return;
    const KvCache& cache = *p.seqs[si].cache;
    const int pos0 = cache.length();
    const int first_row = out.row_offset[si], Ts = out.row_offset[si + 1] - first_row;
    // Key index j is position kv0 + j: the cached keys the first row sees, then this pass's.
    const int kv0 = FirstVisibleKey(pos0, window);
    const size_t col = static_cast<size_t>(g * hd);
    KvRun runs[3];
    size_t nruns = cache.Runs(slot, kv0, pos0, col, std::span<KvRun>(runs, 2));
    runs[nruns++] = {.k = new_k + static_cast<size_t>(first_row) * kvd + col,
                     .v = new_v + static_cast<size_t>(first_row) * kvd + col,
                     .ld = kvd,
                     .n = static_cast<size_t>(Ts)};
    std::vector<int>& range = ws.ranges[static_cast<size_t>(thread)];
    range.resize(2 * static_cast<size_t>(Ts));
    for (int t = 0; t < Ts; ++t) {
      // A tree row's key is its row index; its position (by depth) sets its window.
      const int pos = ws.row_pos[static_cast<size_t>(first_row + t)];
      range[static_cast<size_t>(t)] = FirstVisibleKey(pos, window) - kv0;
      range[static_cast<size_t>(Ts + t)] = pos0 + t - kv0;
    }
    const long tree = ws.visible_at[si];
    const size_t q_at =
        static_cast<size_t>(first_row) * qd + static_cast<size_t>((g * group + h0) * hd);
    p.kt.attention(
        {.runs = std::span<const KvRun>(runs, nruns),
         .q = ws.q.data() + q_at,
         .ldq = qd,
         .rows = static_cast<size_t>(Ts),
         .heads = static_cast<size_t>(heads),
         .head_dim = static_cast<size_t>(hd),
         .first = range.data(),
         .last = range.data() + Ts,
         .o = ws.o.data() + q_at,
         .ldo = qd,
         .scratch = ws.attn_scratch[static_cast<size_t>(thread)].data(),
         .visible = tree < 0 ? nullptr : ws.visible.data() + tree + (window > 0 ? Ts * Ts : 0),
         .tree_key0 = static_cast<size_t>(pos0 - kv0),
         .tree_keys = static_cast<size_t>(Ts)});
  });
}

// x += post_ffn_norm(y), y = MLP(pre_ffn_norm(x)), MLP(v) = down(gelu(gate v) * up v). With
// experts (26B-A4B): y = post_ffn_norm_1(MLP(...)) + post_ffn_norm_2(experts(pre_ffn_norm_2(x))),
// the experts routed from x itself (the post-attention residual).
void Gemma4Model::FeedForwardBlock(Pass& p, int l) const {
  const Gemma4Config& c = config_;
  Workspace& ws = p.ws;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const int T = p.T, H = c.hidden_size;
  const size_t uT = static_cast<size_t>(T), uH = static_cast<size_t>(H);
  NormRows(p.pool, ws.x.data(), w.pre_ffn_norm, c.rms_norm_eps, uH, T, ws.xn.data());
  GatedMlp(p.kt, p.pool,
           {.gate = w.gate,
            .up = w.up,
            .down = w.down,
            .in = ws.xn.data(),
            .rows = T,
            .out = ws.a.data()},
           ws.g, ws.u);

  if (c.moe()) {
    RouteExperts(p.kt, p.pool, w.moe, ws.x.data(), T, H, c.rms_norm_eps, &ws.moe, &ws.routing);
    NormRows(p.pool, ws.x.data(), w.pre_ffn_norm_2, c.rms_norm_eps, uH, T, ws.xn.data());
    ws.e.resize(uT * uH);
    p.out->experts_read +=
        RunExperts(p.kt, p.pool, w.moe, ws.routing, ws.xn.data(), T, H, &ws.moe, ws.e.data());
    ForEachRow(p.pool, T, [&](int t) {
      float* a = &ws.a[t * uH];
      float* e = &ws.e[t * uH];
      RmsNorm(a, w.post_ffn_norm_1.data(), uH, c.rms_norm_eps, a);
      RmsNorm(e, w.post_ffn_norm_2.data(), uH, c.rms_norm_eps, e);
      for (size_t i = 0; i < uH; ++i) a[i] += e[i];
    });
  }
  AddNormedRows(p.pool, ws.a.data(), w.post_ffn_norm, c.rms_norm_eps, uH, T, ws.x.data());
}

// The layer's end: the per-layer input where there is one (E2B/E4B),
// x += norm(proj(gelu(gate x) * ple[:, l])), then x *= layer_scalar.
void Gemma4Model::EndLayer(Pass& p, int l) const {
  const Gemma4Config& c = config_;
  Workspace& ws = p.ws;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const int T = p.T, P = c.ple_dim;
  const size_t uT = static_cast<size_t>(T), uH = static_cast<size_t>(c.hidden_size);
  const auto scale_row = [&](int t) {
    for (size_t i = t * uH; i < (t + 1) * uH; ++i) ws.x[i] *= w.layer_scalar;
  };
  if (P > 0) {
    const size_t uP = static_cast<size_t>(P), LP = static_cast<size_t>(c.num_layers) * uP;
    ws.ple_tmp.resize(uT * uP);
    MatMul(p.kt, p.pool, w.ple_gate, ws.x.data(), uT, ws.ple_tmp.data());
    ForEachRow(p.pool, T, [&](int t) {
      p.kt.gelu_mul(&ws.ple_tmp[t * uP], &ws.ple[t * LP + static_cast<size_t>(l) * uP], uP);
    });
    MatMul(p.kt, p.pool, w.ple_proj, ws.ple_tmp.data(), uT, ws.a.data());
    AddNormedRows(p.pool, ws.a.data(), w.ple_post_norm, c.rms_norm_eps, uH, T, ws.x.data());
  }
  ForEachRow(p.pool, T, scale_row);
}

// Appends this pass's K/V to each sequence's cache.
void Gemma4Model::CommitKv(Pass& p) const {
  Workspace& ws = p.ws;
  const size_t uT = static_cast<size_t>(p.T);
  const BatchOutput& out = *p.out;
  for (size_t si = 0; si < p.seqs.size(); ++si) {
    const size_t first = static_cast<size_t>(out.row_offset[si]);
    const int Ts = out.row_offset[si + 1] - out.row_offset[si];
    for (size_t sl = 0; sl < ws.new_k.size(); ++sl) {
      const size_t kvd = ws.new_k[sl].size() / uT;
      p.seqs[si].cache->Append(static_cast<int>(sl), Ts, ws.new_k[sl].data() + first * kvd,
                               ws.new_v[sl].data() + first * kvd);
    }
    p.seqs[si].cache->Commit(Ts);
  }
}

// Final norm (every row: the drafter reads it), LM head (only the rows that need logits), softcap.
void Gemma4Model::Head(Pass& p) const {
  const Gemma4Config& c = config_;
  Workspace& ws = p.ws;
  BatchOutput& out = *p.out;
  const size_t uT = static_cast<size_t>(p.T), uH = static_cast<size_t>(c.hidden_size);
  out.hidden.resize(uT * uH);
  ForEachRow(p.pool, p.T, [&](int t) {
    RmsNorm(&ws.x[t * uH], final_norm_.data(), uH, c.rms_norm_eps, &out.hidden[t * uH]);
  });
  const size_t rows = static_cast<size_t>(out.logit_offset.back());
  ws.head_in.resize(rows * uH);
  for (size_t si = 0; si < p.seqs.size(); ++si) {
    const size_t n = static_cast<size_t>(p.seqs[si].logit_rows);
    const size_t src = static_cast<size_t>(out.row_offset[si + 1]) - n;
    std::copy_n(out.hidden.data() + src * uH, n * uH,
                ws.head_in.data() + static_cast<size_t>(out.logit_offset[si]) * uH);
  }
  const size_t uV = static_cast<size_t>(c.vocab_size);
  out.logits.resize(rows * uV);
  if (rows == 0) return;
  MatMul(p.kt, p.pool, lm_head_, ws.head_in.data(), rows, out.logits.data());
  if (c.final_logit_softcapping > 0) {
    // Elementwise, so split over the pool: one tanh per logit is ~1.5 ms for 16 rows of a 262k
    // vocabulary on one core.
    constexpr size_t kChunk = size_t{1} << 16;
    const size_t total = out.logits.size();
    p.pool.ParallelFor((total + kChunk - 1) / kChunk, [&](size_t t, int) {
      const size_t begin = t * kChunk;
      p.kt.softcap(out.logits.data() + begin, std::min(kChunk, total - begin),
                   c.final_logit_softcapping);
    });
  }
}

}  // namespace specula
