// CPU kernels of the row-wise log-sum-exp. Forward: each task owns a tile of query rows and
// walks the keys in blocks; a BLAS GEMM gives the tile's similarities to one block (the
// dominant cost, at BLAS speed rather than a hand-written loop's), and the rows fold the block
// into their running (max, sum) before the next one overwrites it, so no R x C buffer exists.
// Backward recomputes the similarities of one (query tile, key tile) pair at a time and feeds
// both gradients from them: three GEMMs a pair, where a pass per side would take four. The
// pairs run in steps (for_each_tile_pair) that keep every gradient tile summed in a fixed
// order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/mm_cpu_dispatch.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "common/contrastive_checks.h"
#include "common/contrastive_math.h"
#include "cpu/blas.h"
#include "cpu/cpu_utils.h"

namespace fastclust {
namespace {

// Rows of a tile (forward: a task's query rows; backward: both sides of a pair) and keys of a
// forward GEMM block. Tiles of 64-256 rows against blocks of 512-2048 keys ran within noise of
// each other forward, backward key tiles of 128-512 within 5% (one thread, 512-8192 rows,
// d = 128). Square 128-row pairs keep min(nq, nk) of them in a backward step; a 128 x 512
// block (256 KiB in float32) stays in a core's L2 between its GEMM and the pass over it.
constexpr int64_t kRowTile = 128;
constexpr int64_t kColBlock = 512;

int64_t tile_count(int64_t n) { return (n + kRowTile - 1) / kRowTile; }

// s (m x n, dense) = a b^T for m rows a and n rows b of length k.
template <typename T>
void similarity_block(const T* a, int64_t m, const T* b, int64_t n, int64_t k, T* s) {
  auto out = dense(s, m, n);
  at::cpu::mm_out(out, dense(a, m, k), dense_transposed(b, n, k));
}

// acc (m x k) += w b for w (m x n, strides w_row and w_col) and n rows b of length k.
template <typename T>
void add_weighted_rows(const T* w, int64_t m, int64_t n, int64_t w_row, int64_t w_col,
                       const T* b, int64_t k, T* acc) {
  auto out = dense(acc, m, k);
  at::cpu::addmm_(out, matrix(w, m, n, w_row, w_col), dense(b, n, k));
}

// combine-reduction of x[0..len) over four independent 8-lane vector chains, then the tail,
// then the lanes in a fixed order: reduce_lanes' single chain is latency-bound here, and the
// compiler leaves nan_max's select scalar. combine(acc, v) folds v into acc, for floats and
// 8-float vectors alike (by reference: a vector returned by value changes the ABI between
// the clones).
template <typename Combine>
inline float reduce_row(const float* x, int64_t len, float init, const Combine& combine) {
  typedef float Float8 __attribute__((vector_size(32)));
  constexpr int kChains = 4;
  const Float8 zero = {};
  Float8 chains[kChains];
  for (auto& chain : chains) chain = zero + init;
  int64_t j = 0;
  for (; j + 8 * kChains <= len; j += 8 * kChains) {
    for (int c = 0; c < kChains; ++c) {
      Float8 v;
      std::memcpy(&v, x + j + 8 * c, sizeof v);
      combine(chains[c], v);
    }
  }
  float total = init;
  for (; j < len; ++j) combine(total, x[j]);
  for (const auto& chain : chains)
    for (int l = 0; l < 8; ++l) combine(total, chain[l]);
  return total;
}

// nan_max and plus, written once for floats and vectors.
constexpr auto kNanMax = [](auto& acc, const auto& v) {
  acc = ((acc != acc) | (acc > v)) ? acc : v;
};
constexpr auto kPlus = [](auto& acc, const auto& v) { acc += v; };

inline float row_max(const float* x, int64_t len) {
  return reduce_row(x, len, minus_infinity<float>(), kNanMax);
}
inline float row_sum(const float* x, int64_t len) { return reduce_row(x, len, 0.0f, kPlus); }

// float64 is the precision of the tests, not of the hot path.
inline double row_max(const double* x, int64_t len) {
  return reduce_lanes(len, minus_infinity<double>(), nan_max<double>,
                      [&](int64_t j) { return x[j]; });
}
inline double row_sum(const double* x, int64_t len) {
  return reduce_lanes(len, 0.0, plus<double>, [&](int64_t j) { return x[j]; });
}

// Folds the similarities s (rn x cn, dense) of rows r0.. to columns c0.. into the rows'
// running (max, sum); s is overwritten. The one left-out column of a row is found directly,
// so that the passes over a row carry no per-element test and vectorise; flatten inlines the
// exp and the reductions into each clone (called, they ran in the baseline clone's SSE2).
template <typename T>
FC_CPU_MULTIVERSION __attribute__((flatten)) void fold_block(
    T* s, int64_t r0, int64_t rn, int64_t c0, int64_t cn, T inv_tau, int64_t self_offset,
    T* run_max, T* run_sum) {
  for (int64_t i = 0; i < rn; ++i) {
    T* x = s + i * cn;
    const int64_t r = r0 + i, self = r + self_offset - c0;
    if (self >= 0 && self < cn && is_self_column(r, c0 + self, self_offset))
      x[self] = minus_infinity<T>();  // stays -inf when scaled: inv_tau > 0
    for (int64_t j = 0; j < cn; ++j) x[j] *= inv_tau;
    const T block_max = row_max(x, cn);
    if (block_max == minus_infinity<T>()) continue;
    exp_shifted(x, block_max, x, cn);
    const T block_sum = row_sum(x, cn);
    lse_merge(run_max[i], run_sum[i], block_max, block_sum);
  }
}

template <typename T>
void forward_row_tile(const T* queries, const T* keys, int64_t rows, int64_t cols, int64_t d,
                      T inv_tau, int64_t self_offset, int64_t tile, T* lse) {
  SequentialBlas sequential;
  const int64_t r0 = tile * kRowTile, rn = std::min(kRowTile, rows - r0);
  std::vector<T> run_max(rn, minus_infinity<T>()), run_sum(rn, T(0));
  std::vector<T> s(rn * std::min(kColBlock, cols));
  for (int64_t c0 = 0; c0 < cols; c0 += kColBlock) {
    const int64_t cn = std::min(kColBlock, cols - c0);
    similarity_block(queries + r0 * d, rn, keys + c0 * d, cn, d, s.data());
    fold_block(s.data(), r0, rn, c0, cn, inv_tau, self_offset, run_max.data(), run_sum.data());
  }
  for (int64_t i = 0; i < rn; ++i) lse[r0 + i] = lse_value(run_max[i], run_sum[i]);
}

// Turns the similarities s (rn x cn, dense) of query rows r0.. to key columns c0.. into the
// weights row_weights(r, c0, cn, s_r, w_r) gives, in place.
template <typename T, typename RowWeights>
FC_CPU_MULTIVERSION __attribute__((flatten)) void weigh_block(T* s, int64_t r0, int64_t rn,
                                                              int64_t c0, int64_t cn,
                                                              const RowWeights& row_weights) {
  for (int64_t i = 0; i < rn; ++i) row_weights(r0 + i, c0, cn, s + i * cn, s + i * cn);
}

// One (query tile i, key tile j) pair of the backward: the weights w_rc = g_r p_rc of one
// similarity block feed both sides, grad_q's rows of tile i (w k) and grad_k's rows of tile j
// (w^T q), unscaled by 1 / tau.
template <typename T, typename RowWeights>
void backward_pair(const T* q, const T* k, int64_t rows, int64_t cols, int64_t d, int64_t i,
                   int64_t j, const RowWeights& row_weights, T* grad_q, T* grad_k) {
  SequentialBlas sequential;
  const int64_t r0 = i * kRowTile, rn = std::min(kRowTile, rows - r0);
  const int64_t c0 = j * kRowTile, cn = std::min(kRowTile, cols - c0);
  std::vector<T> w(rn * cn);
  similarity_block(q + r0 * d, rn, k + c0 * d, cn, d, w.data());
  weigh_block(w.data(), r0, rn, c0, cn, row_weights);
  add_weighted_rows(w.data(), rn, cn, cn, 1, k + c0 * d, d, grad_q + r0 * d);
  add_weighted_rows(w.data(), cn, rn, 1, cn, q + r0 * d, d, grad_k + c0 * d);
}

// Runs body(i, j) once for every pair of query tile i < nq and key tile j < nk, in
// max(nq, nk) steps: in step t, tile i meets tile (i + t) mod steps, so that no two pairs of a
// step share a gradient tile, and each gradient tile sums its pairs in step order whatever the
// number of threads. A step holds min(nq, nk) pairs, each one task: a thin block (a rank's few
// rows against the gathered batch) runs its pairs nearly one by one, at three GEMMs a pair
// still no slower on two threads than a pass per side.
template <typename F>
void for_each_tile_pair(int64_t nq, int64_t nk, const F& body) {
  const int64_t steps = std::max(nq, nk);
  for (int64_t t = 0; t < steps; ++t) {
    at::parallel_for(0, std::min(nq, nk), 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        if (nq <= nk)
          body(p, (p + t) % steps);
        else
          body((p + steps - t) % steps, p);
      }
    });
  }
}

template <typename F>
void for_each_tile(int64_t n, const F& body) {
  at::parallel_for(0, tile_count(n), 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) body(t);
  });
}

at::Tensor row_logsumexp_cpu(const at::Tensor& queries, const at::Tensor& keys, double tau,
                             int64_t self_offset) {
  check_row_logsumexp_args(queries, keys, tau);
  const auto q = queries.contiguous(), k = keys.contiguous();
  const int64_t rows = q.size(0), cols = k.size(0), d = q.size(1);
  auto lse = at::empty({rows}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "row_logsumexp_cpu", [&] {
    const scalar_t* qp = q.const_data_ptr<scalar_t>();
    const scalar_t* kp = k.const_data_ptr<scalar_t>();
    scalar_t* out = lse.mutable_data_ptr<scalar_t>();
    const auto inv_tau = static_cast<scalar_t>(1.0 / tau);
    for_each_tile(rows, [&](int64_t t) {
      forward_row_tile(qp, kp, rows, cols, d, inv_tau, self_offset, t, out);
    });
  });
  return lse;
}

std::tuple<at::Tensor, at::Tensor> row_logsumexp_backward_cpu(
    const at::Tensor& grad_lse, const at::Tensor& queries, const at::Tensor& keys,
    const at::Tensor& lse, double tau, int64_t self_offset) {
  check_row_logsumexp_backward_args(grad_lse, queries, keys, lse, tau);
  const auto q = queries.contiguous(), k = keys.contiguous();
  const auto g = grad_lse.to(q.scalar_type()).contiguous();
  const auto lse_c = lse.to(q.scalar_type()).contiguous();
  const int64_t rows = q.size(0), cols = k.size(0), d = q.size(1);
  auto grad_q = at::zeros(q.sizes(), q.options());
  auto grad_k = at::zeros(k.sizes(), k.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "row_logsumexp_backward_cpu", [&] {
    using T = scalar_t;
    const T* gp = g.const_data_ptr<T>();
    const T* lp = lse_c.const_data_ptr<T>();
    const auto inv_tau = static_cast<T>(1.0 / tau);
    // w_rc = g_r p_rc for query row r against key columns c0..; as in fold_block, the
    // left-out entry is patched after the pass.
    const auto row_weights = [&](int64_t r, int64_t c0, int64_t cn, const T* s, T* w) {
      for (int64_t j = 0; j < cn; ++j) w[j] = lse_log_weight(s[j], inv_tau, lp[r], false);
      const int64_t self = r + self_offset - c0;
      if (self >= 0 && self < cn && is_self_column(r, c0 + self, self_offset))
        w[self] = lse_log_weight(s[self], inv_tau, lp[r], true);
      exp_shifted(w, T(0), w, cn);
      for (int64_t j = 0; j < cn; ++j) w[j] *= gp[r];
    };
    const T* qp = q.const_data_ptr<T>();
    const T* kp = k.const_data_ptr<T>();
    T* gq = grad_q.mutable_data_ptr<T>();
    T* gk = grad_k.mutable_data_ptr<T>();
    for_each_tile_pair(tile_count(rows), tile_count(cols), [&](int64_t i, int64_t j) {
      backward_pair(qp, kp, rows, cols, d, i, j, row_weights, gq, gk);
    });
    grad_q.mul_(inv_tau);
    grad_k.mul_(inv_tau);
  });
  return {grad_q, grad_k};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastclust, CPU, m) {
  m.impl("row_logsumexp", &row_logsumexp_cpu);
  m.impl("row_logsumexp_backward", &row_logsumexp_backward_cpu);
}

}  // namespace fastclust
