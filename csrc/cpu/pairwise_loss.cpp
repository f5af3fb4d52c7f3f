// CPU kernels of the pairwise losses. Rows are processed in tiles of kTile against column
// tiles of kTile; the similarity of a (row, column tile) is recomputed where needed, so no
// n x n buffer exists. Every tile's partial sum is written to its own slot and the slots are
// added in a fixed order: the result does not depend on the number of threads.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/pairwise_checks.h"
#include "common/row_norms.h"
#include "cpu/cpu_utils.h"

namespace fastclust {
namespace {

constexpr int64_t kTile = 64;

template <typename T>
struct PairwiseBlock {
  const T* rows;     // n x k, row-major
  const T* cols;     // m x k, row-major
  const T* cols_t;   // k x m: columns transposed, so a row's similarities to a column tile
                     // come out of contiguous, vectorisable loops
  // Separate selectors (n x ks, and ks x m transposed), or nullptr: select on rows x cols.
  const T* sel_rows;
  const T* sel_cols_t;
  const T* inv_norm_rows;  // n, of the selection side; used for DSEC's cosine selection only
  const T* inv_norm_cols;  // m
  int64_t n, m, k, ks;
  bool symmetric;    // cols are the rows themselves: S is symmetric
  T u, l, eps;
  int64_t kind;
};

// What row i's pairs with columns [j0, j0 + jn) are selected on, given their similarities s:
// s itself, the selectors' similarities, or (DSEC) either's cosine. Uses `scratch` as needed.
template <typename T>
inline const T* selection_row(const PairwiseBlock<T>& b, int64_t i, int64_t j0, int64_t jn,
                              const T* s, T* scratch) {
  const T* base = s;
  if (b.sel_rows != nullptr) {
    similarity_row(b.sel_rows + i * b.ks, b.sel_cols_t, b.m, b.ks, j0, jn, scratch);
    base = scratch;
  }
  if (b.kind != kDsecSquared) return base;
  for (int64_t j = 0; j < jn; ++j) {
    scratch[j] = selection_similarity(b.kind, base[j], b.inv_norm_rows[i], b.inv_norm_cols[j0 + j]);
  }
  return scratch;
}

// Row tiles t and (tiles - 1 - t) go to one task: with the symmetric trick a row tile's work
// shrinks with its index, and pairing them evens out the threads.
template <typename F>
void for_each_row_tile_balanced(int64_t row_tiles, const F& body) {
  at::parallel_for(0, (row_tiles + 1) / 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      body(t);
      if (row_tiles - 1 - t != t) body(row_tiles - 1 - t);
    }
  });
}

template <typename T>
struct TileSums {
  double loss = 0;
  int64_t positives = 0, negatives = 0;
};

template <typename T>
FC_CPU_MULTIVERSION TileSums<T> forward_row_tile(const PairwiseBlock<T>& b, int64_t tile) {
  TileSums<T> sums;
  T s[kTile], scratch[kTile];
  const int64_t i0 = tile * kTile, i1 = std::min(b.n, i0 + kTile);
  // Symmetric: only column tiles at or right of the diagonal; the others mirror them.
  for (int64_t jt = b.symmetric ? tile : 0; jt * kTile < b.m; ++jt) {
    const int64_t j0 = jt * kTile, jn = std::min(kTile, b.m - j0);
    const int64_t weight = (b.symmetric && jt != tile) ? 2 : 1;
    for (int64_t i = i0; i < i1; ++i) {
      similarity_row(b.rows + i * b.k, b.cols_t, b.m, b.k, j0, jn, s);
      const T* selection = selection_row(b, i, j0, jn, s, scratch);
      T loss = 0, poison = 0;
      int64_t pos = 0, neg = 0;
      for (int64_t j = 0; j < jn; ++j) {
        const int sel = select_pair(selection[j], b.u, b.l);
        loss += pair_loss(b.kind, sel, s[j], b.eps);
        poison += nan_unless_finite(s[j]);
        pos += sel > 0;
        neg += sel < 0;
      }
      sums.loss += static_cast<double>(weight) * (static_cast<double>(loss) + poison);
      sums.positives += weight * pos;
      sums.negatives += weight * neg;
    }
  }
  return sums;
}

// grad_rows[i] = scale * sum_j dloss(S_ij)/dS_ij * cols[j], over all columns.
template <typename T>
FC_CPU_MULTIVERSION void backward_row_tile(const PairwiseBlock<T>& b, int64_t tile, T scale, T* grad) {
  const int64_t i0 = tile * kTile, i1 = std::min(b.n, i0 + kTile);
  std::vector<T> acc((i1 - i0) * b.k, T(0));
  for (int64_t j0 = 0; j0 < b.m; j0 += kTile) {
    const int64_t jn = std::min(kTile, b.m - j0);
    for (int64_t i = i0; i < i1; ++i) {
      const auto pair_grads = [&](int64_t first, int64_t count, const T* s, T* g) {
        T scratch[kTile];
        const T* selection = selection_row(b, i, first, count, s, scratch);
        for (int64_t j = 0; j < count; ++j) {
          g[j] = pair_loss_grad(b.kind, select_pair(selection[j], b.u, b.l), s[j], b.eps);
        }
      };
      accumulate_weighted_columns<kTile>(b.rows + i * b.k, b.cols, b.cols_t, b.m, b.k, j0, jn, pair_grads,
                                         acc.data() + (i - i0) * b.k);
    }
  }
  for (int64_t idx = 0; idx < (i1 - i0) * b.k; ++idx) grad[i0 * b.k + idx] = scale * acc[idx];
}

// Shared set-up of forward and backward: contiguous rows and columns, transposed columns,
// selectors, inverse norms.
template <typename T>
struct PreparedBlock {
  at::Tensor rows, cols, cols_t, sel_rows, sel_cols_t, inv_norm_rows, inv_norm_cols;
  PairwiseBlock<T> block;
};

template <typename T>
PreparedBlock<T> prepare(const at::Tensor& rows, const std::optional<at::Tensor>& cols,
                         const std::optional<at::Tensor>& select_rows,
                         const std::optional<at::Tensor>& select_cols, double u, double l,
                         int64_t kind, double eps) {
  PreparedBlock<T> p;
  p.rows = rows.contiguous();
  const at::Tensor& c = cols.has_value() ? *cols : rows;
  p.cols = cols.has_value() ? c.contiguous() : p.rows;
  p.cols_t = c.t().contiguous();
  const bool selector = select_rows.has_value();
  if (selector) {
    p.sel_rows = select_rows->contiguous();
    p.sel_cols_t = (select_cols.has_value() ? *select_cols : *select_rows).t().contiguous();
  }
  if (kind == kDsecSquared) {
    const at::Tensor& side_rows = selector ? p.sel_rows : p.rows;
    const at::Tensor& side_cols = selector ? (select_cols.has_value() ? *select_cols : p.sel_rows) : c;
    p.inv_norm_rows = inverse_row_norms(side_rows, rows.scalar_type());
    p.inv_norm_cols = cols.has_value() ? inverse_row_norms(side_cols, rows.scalar_type()) : p.inv_norm_rows;
  }
  auto& b = p.block;
  b.rows = p.rows.template const_data_ptr<T>();
  b.cols = p.cols.template const_data_ptr<T>();
  b.cols_t = p.cols_t.template const_data_ptr<T>();
  b.sel_rows = selector ? p.sel_rows.template const_data_ptr<T>() : nullptr;
  b.sel_cols_t = selector ? p.sel_cols_t.template const_data_ptr<T>() : nullptr;
  b.inv_norm_rows = p.inv_norm_rows.defined() ? p.inv_norm_rows.template const_data_ptr<T>() : nullptr;
  b.inv_norm_cols = p.inv_norm_cols.defined() ? p.inv_norm_cols.template const_data_ptr<T>() : nullptr;
  b.n = rows.size(0);
  b.m = c.size(0);
  b.k = rows.size(1);
  b.ks = selector ? select_rows->size(1) : b.k;
  b.symmetric = !cols.has_value();
  b.u = static_cast<T>(u);
  b.l = static_cast<T>(l);
  b.eps = static_cast<T>(eps);
  b.kind = kind;
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pairwise_loss_cpu(
    const at::Tensor& rows, const std::optional<at::Tensor>& cols,
    const std::optional<at::Tensor>& select_rows, const std::optional<at::Tensor>& select_cols,
    double u, double l, c10::string_view kind_name, double eps) {
  const int64_t kind = check_pairwise_args(rows, cols, select_rows, select_cols, u, l, kind_name, eps);
  double loss = 0;
  int64_t positives = 0, negatives = 0;
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "pairwise_loss_cpu", [&] {
    const auto prepared = prepare<scalar_t>(rows, cols, select_rows, select_cols, u, l, kind, eps);
    const auto& b = prepared.block;
    const int64_t row_tiles = (b.n + kTile - 1) / kTile;
    std::vector<TileSums<scalar_t>> partial(row_tiles);
    for_each_row_tile_balanced(row_tiles, [&](int64_t t) { partial[t] = forward_row_tile(b, t); });
    for (const auto& p : partial) {
      loss += p.loss;
      positives += p.positives;
      negatives += p.negatives;
    }
  });
  const auto opts = rows.options();
  return {at::scalar_tensor(loss, opts), at::scalar_tensor(positives, opts.dtype(at::kLong)),
          at::scalar_tensor(negatives, opts.dtype(at::kLong))};
}

at::Tensor pairwise_loss_backward_cpu(const at::Tensor& grad_sum, const at::Tensor& rows,
                                      const std::optional<at::Tensor>& cols,
                                      const std::optional<at::Tensor>& select_rows,
                                      const std::optional<at::Tensor>& select_cols, double u,
                                      double l, c10::string_view kind_name, double eps) {
  const int64_t kind =
      check_pairwise_backward_args(grad_sum, rows, cols, select_rows, select_cols, u, l, kind_name, eps);
  auto grad = at::empty(rows.sizes(), rows.options());
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "pairwise_loss_backward_cpu", [&] {
    const auto prepared = prepare<scalar_t>(rows, cols, select_rows, select_cols, u, l, kind, eps);
    const auto& b = prepared.block;
    // Symmetric: row i is both sides of its pairs, and S_ij = S_ji, so its gradient is twice
    // the one-sided sum.
    const scalar_t scale = static_cast<scalar_t>(grad_sum.item<double>() * (b.symmetric ? 2 : 1));
    const int64_t row_tiles = (b.n + kTile - 1) / kTile;
    scalar_t* out = grad.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, row_tiles, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) backward_row_tile(b, t, scale, out);
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastclust, CPU, m) {
  m.impl("pairwise_loss", &pairwise_loss_cpu);
  m.impl("pairwise_loss_backward", &pairwise_loss_backward_cpu);
}

}  // namespace fastclust
