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
  T x[kTile], e[kTile];
  const int64_t r0 = tile * kTile, r1 = std::min(rows, r0 + kTile);
  std::vector<T> run_max(r1 - r0, minus_infinity<T>()), run_sum(r1 - r0, T(0));
  for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
    const int64_t cn = std::min(kTile, cols - c0);
    for (int64_t r = r0; r < r1; ++r) {
      similarity_row(queries + r * d, keys_t, cols, d, c0, cn, x);
      for (int64_t j = 0; j < cn; ++j)
        x[j] = is_self_column(r, c0 + j, self_offset) ? minus_infinity<T>() : x[j] * inv_tau;
      const T tile_max = reduce_lanes(cn, minus_infinity<T>(), nan_max<T>, [&](int64_t j) { return x[j]; });
      if (tile_max == minus_infinity<T>()) continue;
      exp_shifted(x, tile_max, e, cn);
      const T tile_sum = reduce_lanes(cn, T(0), plus<T>, [&](int64_t j) { return e[j]; });
      lse_merge(run_max[r - r0], run_sum[r - r0], tile_max, tile_sum);
    }
  }
  for (int64_t r = r0; r < r1; ++r) lse[r] = lse_value(run_max[r - r0], run_sum[r - r0]);
}

// grad[a] = inv_tau * sum_b w_ab other[b] for the rows a of one tile, where `rows` is the
// side being differentiated, `other` the other side (and `other_t` it transposed), and
// tile_weights(a, b0, bn, s, w) turns the similarities s_ab, b in [b0, b0 + bn), into w_ab.
template <typename T, typename TileWeights>
FC_CPU_MULTIVERSION void weighted_sum_tile(const T* rows, const T* other, const T* other_t,
                                           int64_t n_rows,
                                           int64_t n_other, int64_t d, T inv_tau, int64_t tile,
                                           const TileWeights& tile_weights, T* grad) {
  const int64_t a0 = tile * kTile, a1 = std::min(n_rows, a0 + kTile);
  std::vector<T> acc((a1 - a0) * d, T(0));
  for (int64_t b0 = 0; b0 < n_other; b0 += kTile) {
    const int64_t bn = std::min(kTile, n_other - b0);
    for (int64_t a = a0; a < a1; ++a) {
      const auto row_weights = [&](int64_t first, int64_t count, const T* s, T* w) {
        tile_weights(a, first, count, s, w);
      };
      accumulate_weighted_columns<kTile>(rows + a * d, other, other_t, n_other, d, b0, bn,
                                         row_weights, acc.data() + (a - a0) * d);
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
    // w_rc = g_r p_rc. d queries: row r against key columns c; d keys: row c against query
    // columns r.
    const auto query_weights = [&](int64_t r, int64_t c0, int64_t cn, const T* s, T* w) {
      for (int64_t j = 0; j < cn; ++j)
        w[j] = lse_log_weight(s[j], inv_tau, lp[r], is_self_column(r, c0 + j, self_offset));
      exp_shifted(w, T(0), w, cn);
      for (int64_t j = 0; j < cn; ++j) w[j] *= gp[r];
    };
    const auto key_weights = [&](int64_t c, int64_t r0, int64_t rn, const T* s, T* w) {
      for (int64_t j = 0; j < rn; ++j)
        w[j] = lse_log_weight(s[j], inv_tau, lp[r0 + j], is_self_column(r0 + j, c, self_offset));
      exp_shifted(w, T(0), w, rn);
      for (int64_t j = 0; j < rn; ++j) w[j] *= gp[r0 + j];
    };
    const T* qp = q.const_data_ptr<T>();
    const T* kp = k.const_data_ptr<T>();
    T* gq = grad_q.mutable_data_ptr<T>();
    T* gk = grad_k.mutable_data_ptr<T>();
    for_each_tile(rows, [&](int64_t t) {
      weighted_sum_tile(qp, kp, k_t.const_data_ptr<T>(), rows, cols, d, inv_tau, t, query_weights, gq);
    });
    for_each_tile(cols, [&](int64_t t) {
      weighted_sum_tile(kp, qp, q_t.const_data_ptr<T>(), cols, rows, d, inv_tau, t, key_weights, gk);
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
