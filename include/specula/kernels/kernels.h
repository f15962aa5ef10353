// SIMD kernels, written once with Highway and compiled for every target in the build (AVX-512,
// AVX2, scalar fallback on x86; NEON/SVE on ARM). A KernelTable holds one target's entry points;
// the model picks the best table once, at the forward entry, and calls through it.
//
// Batch invariance: every output element is one dot product whose accumulation schedule depends
// only on K (never on how many rows share the call, nor on which thread runs it). A row computed in
// a 512-row prefill is bit-identical to the same row computed alone; lossless speculative decoding
// relies on this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "specula/base/dtype.h"

namespace specula {

class ThreadPool;

// A row-major weight matrix [rows, cols] in its stored dtype (F32, F16, BF16, or the Q8_0/Q4_0
// block dtypes, where cols is a multiple of 32).
struct MatView {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* Row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * StorageBytes(dtype, cols);
  }
};

struct MatMulRowsArgs {
  MatView w;       // [N, K]
  const float* x;  // [M, K], row stride ldx
  size_t ldx;
  size_t m;         // number of activation rows
  int64_t n_begin;  // output columns [n_begin, n_end) of w's rows
  int64_t n_end;
  float* y;  // [M, N], row stride ldy; y[i, n] = dot(w[n], x[i])
  size_t ldy;
  // Optional working memory, 64-byte aligned (ThreadPool::Scratch); a kernel that needs more
  // than scratch_floats allocates its own.
  float* scratch = nullptr;
  size_t scratch_floats = 0;
  // Set by MatMulShared when an earlier call on this thread, for a matrix of the same dtype, left
  // x (same x, m, K) prepared in this scratch (packed or quantized): the kernel skips that step.
  bool x_prepared = false;
};

// One KV head's keys and values as runs of consecutive positions (a sliding ring's two halves, the
// rows a forward adds). Key index j counts across the runs in order; row e of a run starts at
// k + e * ld and v + e * ld.
struct KvRun {
  const float* k;
  const float* v;
  size_t ld;
  size_t n;
};

// softmax(q · K^T) V (scale 1) for the query heads sharing one KV head (GQA) over `rows` query
// rows. Row t sees key indices first[t] .. last[t] (causal and sliding windows are ranges), and
// with a tree mask only the keys of [tree_key0, tree_key0 + tree_keys) that visible[t] marks (its
// ancestors in a token tree). A hidden key adds exact zeros, so a row gets the bits it would get
// from its visible keys alone.
struct AttentionArgs {
  std::span<const KvRun> runs;
  const float* q;  // query (t, h) at q + t * ldq + h * head_dim
  size_t ldq;
  size_t rows;
  size_t heads;
  size_t head_dim;
  const int* first;  // [rows]
  const int* last;   // [rows], first[t] <= last[t] < total keys
  float* o;          // output (t, h) at o + t * ldo + h * head_dim
  size_t ldo;
  float* scratch;                    // AttentionScratchFloats floats
  const uint8_t* visible = nullptr;  // [rows, tree_keys] 1 = seen; nullptr: no tree mask
  size_t tree_key0 = 0;
  size_t tree_keys = 0;
};

// keys: an upper bound on max(last) - min(first) + 1.
inline size_t AttentionScratchFloats(size_t rows, size_t heads, size_t head_dim, size_t keys) {
  return rows * heads * (head_dim + keys);
}

// The scratch a matmul_rows call over m activation rows of K columns can use.
inline size_t MatMulScratchFloats(size_t m, size_t K) { return m * K; }

// How matmul_rows quantizes the activation rows for a block dtype's weights: to int16 with one
// scale per row, or to int8 with one scale per 256-value super-block (llama.cpp's Q8_K: the
// k-quants and IQ4_XS on x86, and on ARM with SDOT). Tests model each exactly.
enum class ActQuant { kInt16Row, kInt8SuperBlock };

struct KernelTable {
  const char* target = "";
  void (*matmul_rows)(const MatMulRowsArgs& args) = nullptr;
  float (*dot)(const float* a, const float* b, size_t n) = nullptr;     // same schedule as matmul
  void (*axpy)(float a, const float* x, float* y, size_t n) = nullptr;  // y += a * x
  // Every key and value row is read once for all of a call's query vectors, and each vector's
  // output has the same bits whatever else shares the call (scores as `dot` computes them, values
  // accumulated in key order). Double-precision reference: tests/attention_test.cc.
  void (*attention)(const AttentionArgs& args) = nullptr;
  // g[i] = gelu_tanh(g[i]) * u[i] (the gated MLP activation); scalar reference: GeluTanh in ops.h.
  void (*gelu_mul)(float* g, const float* u, size_t n) = nullptr;
  // x = cap * tanh(x / cap); scalar reference: SoftCap in ops.h.
  void (*softcap)(float* x, size_t n, float cap) = nullptr;
  // w[i] = exp((x[i] - max) * scale), returning the sum of w in f64 (lane partial sums in a fixed
  // order: the same n gives the same bits). Softmax weights for sampling; x[i] <= max.
  double (*exp_weights)(const float* x, size_t n, float max, float scale, float* w) = nullptr;
  // The first index of the largest of x[0, n), n >= 1 (inputs without NaN).
  size_t (*argmax)(const float* x, size_t n) = nullptr;
  // The activation quantization of matmul_rows for a block dtype.
  ActQuant (*act_quant)(DType t) = nullptr;
  // Runs `iters` rounds of 16 independent vector FMA chains held in registers and returns the
  // flops done (2 per lane per FMA): the core's peak FMA throughput.
  double (*fma_probe)(size_t iters) = nullptr;
  // Reads `bytes` (a multiple of 64) as fast as the target can; returns a checksum so the reads
  // cannot be optimised away. Used to measure memory bandwidth.
  uint64_t (*stream_read)(const uint8_t* p, size_t bytes) = nullptr;
};

// The best table for this CPU; selected once per process.
const KernelTable& BestKernels();

// For tests: every target compiled into this binary that this CPU can run, and its table.
std::vector<int64_t> RunnableTargets();
KernelTable KernelsForTarget(int64_t target);
// A target's kernels with or without the int8 dot-product instructions it looks for at run time
// (AVX-VNNI on the AVX2 target, SDOT on NEON). RunnableVariants lists every target, and where such
// instructions change the table, the target without them too.
struct KernelVariant {
  int64_t target = 0;
  bool dot_ext = true;  // false: without them even where the CPU has them
};
std::vector<KernelVariant> RunnableVariants();
KernelTable KernelsFor(KernelVariant v);

// Sustained read bandwidth in GB/s: the pool's threads stream a buffer far larger than the caches
// with the best kernels. (Allocates `bytes`; run it where that memory does not matter.)
double MeasureReadBandwidthGBs(ThreadPool& pool, size_t bytes = size_t{1} << 30, int reps = 3);

// Peak f32 FMA throughput of the pool's threads in GFLOP/s (register-resident, no memory traffic).
double MeasurePeakGflops(ThreadPool& pool);

// y[M, N] = x[M, K] · w[N, K]^T, parallel over N. Every element is computed by one task.
void MatMul(const KernelTable& k, ThreadPool& pool, const MatView& w, const float* x, size_t m,
            float* y);

// One product of a MatMulShared group: y[M, w.rows] = x · w^T.
struct MatMulOut {
  MatView w;
  float* y;
};

// Several matrices with the same input (q/k/v, gate/up) in one dispatch: their rows are sliced
// across threads as if stacked, so small matrices share one fork/join and keep every core
// streaming. Each output element is computed exactly as MatMul computes it. All w.cols must match.
void MatMulShared(const KernelTable& k, ThreadPool& pool, std::span<const MatMulOut> outs,
                  const float* x, size_t m);

// One product of a MatMulGrouped call, with its own input: y[m, w.rows] = x · w^T, where row i of
// x starts at x + i * ldx (ldx >= w.cols).
struct MatMulJob {
  MatView w;
  const float* x;
  size_t ldx;
  size_t m;
  float* y;
};

// Products with different inputs (a mixture-of-experts layer: each selected expert over the rows
// routed to it) in one dispatch, sliced across threads as MatMulShared slices its matrices. Each
// output element is computed exactly as MatMul computes it.
void MatMulGrouped(const KernelTable& k, ThreadPool& pool, std::span<const MatMulJob> jobs);

}  // namespace specula
