// CUDA kernels of the pairwise losses. Similarities are computed per (row tile, column tile)
// in registers from shared-memory chunks of the features and never stored: the forward
// reduces each tile to one partial sum, the backward recomputes the tile and multiplies its
// per-pair gradients into the columns. Partial sums land in per-block slots that are added
// in a fixed order, and every gradient element is owned by one thread: no atomics, so the
// results are bitwise reproducible.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "common/pairwise_checks.h"
#include "common/row_norms.h"
#include "cuda/weighted_columns.cuh"

namespace fastclust {
namespace {

template <typename acc_t>
__device__ __forceinline__ acc_t inv_norm_at(const acc_t* inv_norm, int64_t i) {
  return inv_norm == nullptr ? acc_t(1) : inv_norm[i];
}

struct PairwiseParams {
  int64_t n, m, k, kind;
  bool symmetric;
};

// What the pair (i, j) with similarity s is selected on: s, the dot product of the selectors
// when there are any, or (DSEC) either's cosine.
template <typename scalar_t, typename acc_t>
struct PairSelection {
  const scalar_t* sel_rows;  // n x ks, or nullptr: select on s
  const scalar_t* sel_cols;  // m x ks
  int64_t ks, kind;
  const acc_t* inv_norm_rows;  // of the selection side; nullptr unless DSEC
  const acc_t* inv_norm_cols;

  __device__ acc_t operator()(int64_t i, int64_t j, acc_t s) const {
    if (sel_rows != nullptr) {
      // Straight from global memory (rows stay in L1/L2): the shared-memory tiles serve the
      // loss's similarities; selecting on separate features is the less common case.
      acc_t dot = 0;
      for (int64_t f = 0; f < ks; ++f) {
        dot += static_cast<acc_t>(sel_rows[i * ks + f]) * static_cast<acc_t>(sel_cols[j * ks + f]);
      }
      s = dot;
    }
    return selection_similarity(kind, s, inv_norm_at(inv_norm_rows, i), inv_norm_at(inv_norm_cols, j));
  }
};

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) pairwise_forward_kernel(
    const scalar_t* __restrict__ rows, const scalar_t* __restrict__ cols,
    PairSelection<scalar_t, acc_t> selection, PairwiseParams p, acc_t u, acc_t l, acc_t eps,
    double* __restrict__ partial_loss,
    int64_t* __restrict__ partial_pos, int64_t* __restrict__ partial_neg) {
  const int64_t row_tile = blockIdx.y, col_tile = blockIdx.x;
  // Symmetric: tiles left of the diagonal mirror tiles right of it (their slots stay zero).
  if (p.symmetric && col_tile < row_tile) return;
  constexpr int kRowsPerThread = kForwardTileRows / kThreadRows;
  using Tiles = SimilarityTiles<kForwardTileRows, scalar_t, acc_t>;
  __shared__ typename Tiles::Storage tiles;
  __shared__ acc_t loss_scratch[kThreads / kWarp];
  __shared__ int64_t count_scratch[kThreads / kWarp];
  const int64_t row0 = row_tile * kForwardTileRows, col0 = col_tile * kTileCols;
  acc_t s[kRowsPerThread][kColsPerThread];
  Tiles::compute(rows, p.n, cols, p.m, p.k, row0, col0, tiles, s);

  acc_t loss = 0;
  int64_t pos = 0, neg = 0;
  for_each_tile_entry<kRowsPerThread>(row0, col0, [&](int r, int c, int64_t i, int64_t j) {
    if (i >= p.n || j >= p.m) return;
    const acc_t sim = s[r][c];
    const int sel = select_pair(selection(i, j, sim), u, l);
    loss += pair_loss(p.kind, sel, sim, eps) + nan_unless_finite(sim);
    pos += sel > 0;
    neg += sel < 0;
  });
  const acc_t tile_loss = block_sum(loss, loss_scratch);
  const int64_t tile_pos = block_sum(pos, count_scratch);
  const int64_t tile_neg = block_sum(neg, count_scratch);
  if (threadIdx.x == 0) {
    const int64_t weight = (p.symmetric && col_tile != row_tile) ? 2 : 1;
    const int64_t slot = row_tile * gridDim.x + col_tile;
    partial_loss[slot] = static_cast<double>(weight) * static_cast<double>(tile_loss);
    partial_pos[slot] = weight * tile_pos;
    partial_neg[slot] = weight * tile_neg;
  }
}

// d loss_ij / d S_ij for weighted_columns_kernel: row i's gradient is
// grad_sum * factor * sum_j dloss(S_ij)/dS_ij * cols[j].
template <typename scalar_t, typename acc_t>
struct PairLossGrad {
  PairSelection<scalar_t, acc_t> selection;
  acc_t u, l, eps;
  const acc_t* grad_sum;
  acc_t factor;

  __device__ acc_t operator()(int64_t i, int64_t j, acc_t s) const {
    return pair_loss_grad(selection.kind, select_pair(selection(i, j, s), u, l), s, eps);
  }
  __device__ acc_t scale() const { return *grad_sum * factor; }
};

struct DeviceBlock {
  at::Tensor rows, cols, sel_rows, sel_cols, inv_norm_rows, inv_norm_cols;
  PairwiseParams params;
};

DeviceBlock prepare(const at::Tensor& rows, const std::optional<at::Tensor>& cols,
                    const std::optional<at::Tensor>& select_rows,
                    const std::optional<at::Tensor>& select_cols, int64_t kind,
                    at::ScalarType acc_dtype) {
  DeviceBlock d;
  d.rows = rows.contiguous();
  d.cols = cols.has_value() ? cols->contiguous() : d.rows;
  if (select_rows.has_value()) {
    d.sel_rows = select_rows->contiguous();
    d.sel_cols = select_cols.has_value() ? select_cols->contiguous() : d.sel_rows;
  }
  if (kind == kDsecSquared) {
    const bool selector = select_rows.has_value();
    d.inv_norm_rows = inverse_row_norms(selector ? d.sel_rows : d.rows, acc_dtype);
    d.inv_norm_cols = cols.has_value() ? inverse_row_norms(selector ? d.sel_cols : d.cols, acc_dtype)
                                       : d.inv_norm_rows;
  }
  d.params = {d.rows.size(0), d.cols.size(0), d.rows.size(1), kind, !cols.has_value()};
  return d;
}

template <typename T>
const T* optional_ptr(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

template <typename scalar_t, typename acc_t>
PairSelection<scalar_t, acc_t> selection_of(const DeviceBlock& d) {
  return {optional_ptr<scalar_t>(d.sel_rows), optional_ptr<scalar_t>(d.sel_cols),
          d.sel_rows.defined() ? d.sel_rows.size(1) : 0, d.params.kind,
          optional_ptr<acc_t>(d.inv_norm_rows), optional_ptr<acc_t>(d.inv_norm_cols)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pairwise_loss_cuda(
    const at::Tensor& rows, const std::optional<at::Tensor>& cols,
    const std::optional<at::Tensor>& select_rows, const std::optional<at::Tensor>& select_cols,
    double u, double l, c10::string_view kind_name, double eps) {
  const int64_t kind = check_pairwise_args(rows, cols, select_rows, select_cols, u, l, kind_name, eps);
  const c10::cuda::CUDAGuard guard(rows.device());
  const auto acc_dtype = at::toOpMathType(rows.scalar_type());
  const auto d = prepare(rows, cols, select_rows, select_cols, kind, acc_dtype);
  const dim3 grid(ceil_div(d.params.m, kTileCols), ceil_div(d.params.n, kForwardTileRows));
  FC_CHECK(grid.y <= 65535, "feats has too many rows (", d.params.n, ") for one launch");
  const auto slots = static_cast<int64_t>(grid.x) * grid.y;
  auto partial_loss = at::zeros({slots}, rows.options().dtype(at::kDouble));
  auto partial_pos = at::zeros({slots}, rows.options().dtype(at::kLong));
  auto partial_neg = at::zeros({slots}, rows.options().dtype(at::kLong));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, rows.scalar_type(), "pairwise_loss_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    FC_LAUNCH(grid, kThreads, stream, pairwise_forward_kernel<scalar_t, acc_t>)(
        d.rows.const_data_ptr<scalar_t>(), d.cols.const_data_ptr<scalar_t>(),
        selection_of<scalar_t, acc_t>(d), d.params,
        static_cast<acc_t>(u), static_cast<acc_t>(l), static_cast<acc_t>(eps),
        partial_loss.mutable_data_ptr<double>(), partial_pos.mutable_data_ptr<int64_t>(),
        partial_neg.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {partial_loss.sum().to(acc_dtype), partial_pos.sum(), partial_neg.sum()};
}

at::Tensor pairwise_loss_backward_cuda(const at::Tensor& grad_sum, const at::Tensor& rows,
                                       const std::optional<at::Tensor>& cols,
                                       const std::optional<at::Tensor>& select_rows,
                                       const std::optional<at::Tensor>& select_cols, double u,
                                       double l, c10::string_view kind_name, double eps) {
  const int64_t kind =
      check_pairwise_backward_args(grad_sum, rows, cols, select_rows, select_cols, u, l, kind_name, eps);
  const c10::cuda::CUDAGuard guard(rows.device());
  const auto acc_dtype = at::toOpMathType(rows.scalar_type());
  const auto d = prepare(rows, cols, select_rows, select_cols, kind, acc_dtype);
  const auto grad_scalar = grad_sum.to(acc_dtype).contiguous();
  auto grad_acc = weighted_columns_accumulator(d.rows, acc_dtype);
  auto grad = at::empty(d.rows.sizes(), rows.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, rows.scalar_type(), "pairwise_loss_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    // Symmetric: row i is both sides of its pairs, and S_ij = S_ji, so its gradient is twice
    // the one-sided sum.
    const acc_t factor = d.params.symmetric ? acc_t(2) : acc_t(1);
    const PairLossGrad<scalar_t, acc_t> pair_grad{
        selection_of<scalar_t, acc_t>(d), static_cast<acc_t>(u), static_cast<acc_t>(l),
        static_cast<acc_t>(eps), grad_scalar.const_data_ptr<acc_t>(), factor};
    FC_LAUNCH(ceil_div(d.params.n, kBackwardTileRows), kThreads, stream,
              weighted_columns_kernel<scalar_t, acc_t>)(
            d.rows.const_data_ptr<scalar_t>(), d.params.n, d.cols.const_data_ptr<scalar_t>(),
            d.params.m, d.params.k, pair_grad, optional_mutable_ptr<acc_t>(grad_acc),
            grad.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad;
}

}  // namespace

FC_CUDA_KERNELS(m) {
  m.impl("pairwise_loss", &pairwise_loss_cuda);
  m.impl("pairwise_loss_backward", &pairwise_loss_backward_cuda);
}

}  // namespace fastclust
