// CPU kernels of the row-wise log-sum-exp. Queries are processed in tiles of kTile rows
// against key tiles of kTile columns; each row's running (max, sum) absorbs one key tile at a
// time, so no R x C buffer exists. Backward recomputes the similarities twice: once per query
// tile for d queries, once per key tile for d keys, so every gradient row is owned by one
// task and summed in a fixed order: the result does not depend on the number of threads.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/contrastive_checks.h"
#include "common/lse_math.h"
#include "cpu/cpu_utils.h"

namespace fastclust {
namespace {

constexpr int64_t kTile = 64;

template <typename T>
FC_CPU_MULTIVERSION void forward_row_tile(const T* queries, const T* keys_t, int64_t rows,
                                          int64_t cols, int64_t d, T inv_tau, int64_t self_offset,
                                          int64_t tile, T* lse) {
  T x[kTile];
  const int64_t r0 = tile * kTile, r1 = std::min(rows, r0 + kTile);
  std::vector<T> run_max(r1 - r0, minus_infinity<T>()), run_sum(r1 - r0, T(0));
  for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
    const int64_t cn = std::min(kTile, cols - c0);
    for (int64_t r = r0; r < r1; ++r) {
      similarity_row(queries + r * d, keys_t, cols, d, c0, cn, x);
      T tile_max = minus_infinity<T>();
      for (int64_t j = 0; j < cn; ++j) {
        x[j] = is_self_column(r, c0 + j, self_offset) ? minus_infinity<T>() : x[j] * inv_tau;
        tile_max = nan_max(tile_max, x[j]);
      }
      if (tile_max == minus_infinity<T>()) continue;
      T tile_sum = 0;
      for (int64_t j = 0; j < cn; ++j) tile_sum += fc_exp(x[j] - tile_max);
      lse_merge(run_max[r - r0], run_sum[r - r0], tile_max, tile_sum);
    }
  }
  for (int64_t r = r0; r < r1; ++r) lse[r] = lse_value(run_max[r - r0], run_sum[r - r0]);
}

// grad[a] = inv_tau * sum_b weight(a, b, s_ab) * other[b] for the rows a of one tile, where
// `rows` is the side being differentiated and `other_t` the other side, transposed.
template <typename T, typename Weight>
FC_CPU_MULTIVERSION void weighted_sum_tile(const T* rows, const T* other_t, int64_t n_rows,
                                           int64_t n_other, int64_t d, T inv_tau, int64_t tile,
                                           const Weight& weight, T* grad) {
  const int64_t a0 = tile * kTile, a1 = std::min(n_rows, a0 + kTile);
  std::vector<T> acc((a1 - a0) * d, T(0));
  for (int64_t b0 = 0; b0 < n_other; b0 += kTile) {
    const int64_t bn = std::min(kTile, n_other - b0);
    for (int64_t a = a0; a < a1; ++a) {
      const auto pair_weight = [&](int64_t b, T s) { return weight(a, b, s); };
      accumulate_weighted_columns<kTile>(rows + a * d, other_t, n_other, d, b0, bn, pair_weight,
                                         acc.data() + (a - a0) * d);
    }
  }
  for (int64_t idx = 0; idx < (a1 - a0) * d; ++idx) grad[a0 * d + idx] = inv_tau * acc[idx];
}

template <typename F>
void for_each_tile(int64_t n, const F& body) {
  at::parallel_for(0, (n + kTile - 1) / kTile, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) body(t);
  });
}

at::Tensor row_logsumexp_cpu(const at::Tensor& queries, const at::Tensor& keys, double tau,
                             int64_t self_offset) {
  check_row_logsumexp_args(queries, keys, tau);
  const auto q = queries.contiguous();
  const auto keys_t = keys.t().contiguous();
  const int64_t rows = q.size(0), cols = keys.size(0), d = q.size(1);
  auto lse = at::empty({rows}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "row_logsumexp_cpu", [&] {
    const scalar_t* qp = q.const_data_ptr<scalar_t>();
    const scalar_t* kt = keys_t.const_data_ptr<scalar_t>();
    scalar_t* out = lse.mutable_data_ptr<scalar_t>();
    const auto inv_tau = static_cast<scalar_t>(1.0 / tau);
    for_each_tile(rows, [&](int64_t t) {
      forward_row_tile(qp, kt, rows, cols, d, inv_tau, self_offset, t, out);
    });
  });
  return lse;
}

std::tuple<at::Tensor, at::Tensor> row_logsumexp_backward_cpu(
    const at::Tensor& grad_lse, const at::Tensor& queries, const at::Tensor& keys,
    const at::Tensor& lse, double tau, int64_t self_offset) {
  check_row_logsumexp_backward_args(grad_lse, queries, keys, lse, tau);
  const auto q = queries.contiguous(), k = keys.contiguous();
  const auto q_t = q.t().contiguous(), k_t = k.t().contiguous();
  const auto g = grad_lse.to(q.scalar_type()).contiguous();
  const auto lse_c = lse.to(q.scalar_type()).contiguous();
  const int64_t rows = q.size(0), cols = k.size(0), d = q.size(1);
  auto grad_q = at::empty(q.sizes(), q.options());
  auto grad_k = at::empty(k.sizes(), k.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "row_logsumexp_backward_cpu", [&] {
    using T = scalar_t;
    const T* gp = g.const_data_ptr<T>();
    const T* lp = lse_c.const_data_ptr<T>();
    const auto inv_tau = static_cast<T>(1.0 / tau);
    const auto weight_of = [&](int64_t r, int64_t c, T s) {
      return lse_pair_weight(s, inv_tau, gp[r], lp[r], is_self_column(r, c, self_offset));
    };
    // d queries: rows are queries, the other side keys; d keys: the roles swap.
    const auto query_weight = [&](int64_t r, int64_t c, T s) { return weight_of(r, c, s); };
    const auto key_weight = [&](int64_t c, int64_t r, T s) { return weight_of(r, c, s); };
    const T* qp = q.const_data_ptr<T>();
    const T* kp = k.const_data_ptr<T>();
    T* gq = grad_q.mutable_data_ptr<T>();
    T* gk = grad_k.mutable_data_ptr<T>();
    for_each_tile(rows, [&](int64_t t) {
      weighted_sum_tile(qp, k_t.const_data_ptr<T>(), rows, cols, d, inv_tau, t, query_weight, gq);
    });
    for_each_tile(cols, [&](int64_t t) {
      weighted_sum_tile(kp, q_t.const_data_ptr<T>(), cols, rows, d, inv_tau, t, key_weight, gk);
    });
  });
  return {grad_q, grad_k};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastclust, CPU, m) {
  m.impl("row_logsumexp", &row_logsumexp_cpu);
  m.impl("row_logsumexp_backward", &row_logsumexp_backward_cpu);
}

}  // namespace fastclust
