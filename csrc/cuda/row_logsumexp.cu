// CUDA kernels of the row-wise log-sum-exp. Forward: one block per tile of kForwardTileRows
// query rows walks all key tiles; each thread folds its share of every similarity tile into
// running (max, sum) pairs in registers, and the kThreadCols threads of a row merge theirs
// with a fixed butterfly at the end, so no R x C buffer exists and the result is bitwise
// reproducible. Backward recomputes the tiles through weighted_columns_kernel twice: per query
// tile for d queries and per key tile for d keys (no atomics). float16/bfloat16 tiles run on
// the tensor cores (see similarity_tiles.cuh).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>

#include "common/contrastive_checks.h"
#include "common/contrastive_math.h"
#include "cuda/weighted_columns.cuh"

namespace fastclust {
namespace {

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) row_logsumexp_kernel(
    const scalar_t* __restrict__ queries, int64_t rows, const scalar_t* __restrict__ keys,
    int64_t cols, int64_t d, acc_t inv_tau, int64_t self_offset, int64_t cols_per_split,
    acc_t* __restrict__ partial_lse) {
  constexpr int kRowsPerThread = kForwardTileRows / kThreadRows;
  using Tiles = SimilarityTiles<kForwardTileRows, scalar_t, acc_t>;
  __shared__ typename Tiles::Storage tiles;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kForwardTileRows;
  const int tx = threadIdx.x % kThreadCols, ty = threadIdx.x / kThreadCols;
  acc_t run_max[kRowsPerThread], run_sum[kRowsPerThread];
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    run_max[r] = minus_infinity<acc_t>();
    run_sum[r] = acc_t(0);
  }
  const int64_t split = blockIdx.y;
  const int64_t col_end = min(cols, (split + 1) * cols_per_split);
  for (int64_t col0 = split * cols_per_split; col0 < col_end; col0 += kTileCols) {
    acc_t x[kRowsPerThread][kColsPerThread];
    Tiles::compute(queries, rows, keys, cols, d, row0, col0, tiles, x);
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      const int64_t i = row0 + ty + kThreadRows * r;
      acc_t tile_max = minus_infinity<acc_t>();
#pragma unroll
      for (int c = 0; c < kColsPerThread; ++c) {
        const int64_t j = col0 + tx + kThreadCols * c;
        x[r][c] = (j < cols && !is_self_column(i, j, self_offset)) ? x[r][c] * inv_tau
                                                                   : minus_infinity<acc_t>();
        tile_max = nan_max(tile_max, x[r][c]);
      }
      if (tile_max == minus_infinity<acc_t>()) continue;
      acc_t tile_sum = 0;
#pragma unroll
      for (int c = 0; c < kColsPerThread; ++c) tile_sum += fc_exp(x[r][c] - tile_max);
      lse_merge(run_max[r], run_sum[r], tile_max, tile_sum);
    }
  }
  // The kThreadCols threads of a row are adjacent lanes of one warp. lse_merge is symmetric
  // in its two sides, so both lanes of every butterfly step end with the same bits.
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    for (int offset = kThreadCols / 2; offset > 0; offset /= 2) {
      const acc_t other_max = __shfl_xor_sync(0xffffffffu, run_max[r], offset);
      const acc_t other_sum = __shfl_xor_sync(0xffffffffu, run_sum[r], offset);
      lse_merge(run_max[r], run_sum[r], other_max, other_sum);
    }
    const int64_t i = row0 + ty + kThreadRows * r;
    if (tx == 0 && i < rows) partial_lse[split * rows + i] = lse_value(run_max[r], run_sum[r]);
  }
}

// g_r p_rc for weighted_columns_kernel, from either side: with rows_are_keys the kernel's row
// index is the key c and its column index the query r.
template <typename acc_t>
struct LsePairWeight {
  const acc_t* grad_lse;
  const acc_t* lse;
  acc_t inv_tau;
  int64_t self_offset;
  bool rows_are_keys;

  __device__ acc_t operator()(int64_t i, int64_t j, acc_t s) const {
    const int64_t r = rows_are_keys ? j : i, c = rows_are_keys ? i : j;
    return grad_lse[r] * fc_exp(lse_log_weight(s, inv_tau, lse[r], is_self_column(r, c, self_offset)));
  }
  __device__ acc_t scale() const { return inv_tau; }
};

at::Tensor row_logsumexp_cuda(const at::Tensor& queries, const at::Tensor& keys, double tau,
                              int64_t self_offset) {
  check_row_logsumexp_args(queries, keys, tau);
  const c10::cuda::CUDAGuard guard(queries.device());
  const auto q = queries.contiguous(), k = keys.contiguous();
  const int64_t rows = q.size(0), cols = k.size(0), d = q.size(1);
  const auto acc_dtype = at::toOpMathType(q.scalar_type());
  // One block per (row tile, column split). A block per row tile alone leaves most of a large
  // GPU idle below some ten thousand rows, so the key tiles are split until there are a few
  // blocks per SM; the split partial log-sum-exps are then combined in a fixed order. The
  // split count depends only on the shape and the device, so results are reproducible.
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, q.get_device()));
  const int64_t row_tiles = ceil_div(rows, kForwardTileRows), col_tiles = ceil_div(cols, kTileCols);
  const int64_t wanted_splits = std::min(col_tiles, std::max<int64_t>(1, ceil_div(4 * sms, row_tiles)));
  const int64_t cols_per_split = ceil_div(col_tiles, wanted_splits) * kTileCols;
  const int64_t splits = ceil_div(cols, cols_per_split);
  auto partial = at::empty({splits, rows}, q.options().dtype(acc_dtype));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "row_logsumexp_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    FC_LAUNCH(dim3(row_tiles, splits), kThreads, stream, row_logsumexp_kernel<scalar_t, acc_t>)(
        q.const_data_ptr<scalar_t>(), rows, k.const_data_ptr<scalar_t>(), cols, d,
        static_cast<acc_t>(1.0 / tau), self_offset, cols_per_split,
        partial.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return splits == 1 ? partial[0] : at::logsumexp(partial, {0});
}

std::tuple<at::Tensor, at::Tensor> row_logsumexp_backward_cuda(
    const at::Tensor& grad_lse, const at::Tensor& queries, const at::Tensor& keys,
    const at::Tensor& lse, double tau, int64_t self_offset) {
  check_row_logsumexp_backward_args(grad_lse, queries, keys, lse, tau);
  const c10::cuda::CUDAGuard guard(queries.device());
  const auto q = queries.contiguous(), k = keys.contiguous();
  const int64_t rows = q.size(0), cols = k.size(0), d = q.size(1);
  const auto acc_dtype = at::toOpMathType(q.scalar_type());
  const auto g = grad_lse.to(acc_dtype).contiguous();
  const auto lse_c = lse.to(acc_dtype).contiguous();
  auto grad_q = at::empty(q.sizes(), q.options());
  auto grad_k = at::empty(k.sizes(), k.options());
  auto acc_q = weighted_columns_accumulator(q, acc_dtype);
  auto acc_k = weighted_columns_accumulator(k, acc_dtype);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "row_logsumexp_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto inv_tau = static_cast<acc_t>(1.0 / tau);
    const acc_t* gp = g.const_data_ptr<acc_t>();
    const acc_t* lp = lse_c.const_data_ptr<acc_t>();
    const scalar_t* qp = q.const_data_ptr<scalar_t>();
    const scalar_t* kp = k.const_data_ptr<scalar_t>();
    FC_LAUNCH(ceil_div(rows, kBackwardTileRows), kThreads, stream,
              weighted_columns_kernel<scalar_t, acc_t>)(
            qp, rows, kp, cols, d, LsePairWeight<acc_t>{gp, lp, inv_tau, self_offset, false},
            optional_mutable_ptr<acc_t>(acc_q), grad_q.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    FC_LAUNCH(ceil_div(cols, kBackwardTileRows), kThreads, stream,
              weighted_columns_kernel<scalar_t, acc_t>)(
            kp, cols, qp, rows, d, LsePairWeight<acc_t>{gp, lp, inv_tau, self_offset, true},
            optional_mutable_ptr<acc_t>(acc_k), grad_k.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_q, grad_k};
}

}  // namespace

FC_CUDA_KERNELS(m) {
  m.impl("row_logsumexp", &row_logsumexp_cuda);
  m.impl("row_logsumexp_backward", &row_logsumexp_backward_cuda);
}

}  // namespace fastclust
