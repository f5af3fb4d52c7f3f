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
#include "cuda/cuda_utils.cuh"

namespace fastclust {
namespace {

constexpr int kThreads = 256;
constexpr int kThreadCols = 16;                        // threads along a tile's columns
constexpr int kThreadRows = kThreads / kThreadCols;    // threads along a tile's rows
constexpr int kChunk = 16;                             // features staged per step
constexpr int kTileCols = 64;
constexpr int kColsPerThread = kTileCols / kThreadCols;
constexpr int kForwardTileRows = 64;
constexpr int kBackwardTileRows = 32;  // smaller: the backward also stages a gradient tile
constexpr int kFeatChunk = 32;         // features of the columns staged per backward step

template <typename acc_t>
__device__ __forceinline__ acc_t inv_norm_at(const acc_t* inv_norm, int64_t i) {
  return inv_norm == nullptr ? acc_t(1) : inv_norm[i];
}

// s[r][c] = rows[row0 + ty + kThreadRows r] . cols[col0 + tx + kThreadCols c], zero outside
// the matrices. Features are summed in ascending order, so S_ij and S_ji are bit-identical.
template <int kTileRows, typename scalar_t, typename acc_t>
__device__ __forceinline__ void similarity_tile(
    const scalar_t* __restrict__ rows, int64_t n, const scalar_t* __restrict__ cols, int64_t m,
    int64_t k, int64_t row0, int64_t col0, acc_t (&a_smem)[kChunk][kTileRows],
    acc_t (&b_smem)[kChunk][kTileCols], acc_t (&s)[kTileRows / kThreadRows][kColsPerThread]) {
  constexpr int kRowsPerThread = kTileRows / kThreadRows;
  const int tx = threadIdx.x % kThreadCols, ty = threadIdx.x / kThreadCols;
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) s[r][c] = acc_t(0);
  for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
    for (int e = threadIdx.x; e < kTileRows * kChunk; e += kThreads) {
      const int r = e / kChunk, kk = e % kChunk;
      const int64_t i = row0 + r, f = k0 + kk;
      a_smem[kk][r] = (i < n && f < k) ? static_cast<acc_t>(rows[i * k + f]) : acc_t(0);
    }
    for (int e = threadIdx.x; e < kTileCols * kChunk; e += kThreads) {
      const int c = e / kChunk, kk = e % kChunk;
      const int64_t j = col0 + c, f = k0 + kk;
      b_smem[kk][c] = (j < m && f < k) ? static_cast<acc_t>(cols[j * k + f]) : acc_t(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kChunk; ++kk) {
      acc_t a[kRowsPerThread], b[kColsPerThread];
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) a[r] = a_smem[kk][ty + kThreadRows * r];
#pragma unroll
      for (int c = 0; c < kColsPerThread; ++c) b[c] = b_smem[kk][tx + kThreadCols * c];
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
        for (int c = 0; c < kColsPerThread; ++c) s[r][c] += a[r] * b[c];
    }
    __syncthreads();  // the next chunk overwrites the staged features
  }
}

struct PairwiseParams {
  int64_t n, m, k, kind;
  bool symmetric;
};

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) pairwise_forward_kernel(
    const scalar_t* __restrict__ rows, const scalar_t* __restrict__ cols,
    const acc_t* __restrict__ inv_norm_rows, const acc_t* __restrict__ inv_norm_cols,
    PairwiseParams p, acc_t u, acc_t l, acc_t eps, double* __restrict__ partial_loss,
    int64_t* __restrict__ partial_pos, int64_t* __restrict__ partial_neg) {
  const int64_t row_tile = blockIdx.y, col_tile = blockIdx.x;
  // Symmetric: tiles left of the diagonal mirror tiles right of it (their slots stay zero).
  if (p.symmetric && col_tile < row_tile) return;
  constexpr int kRowsPerThread = kForwardTileRows / kThreadRows;
  __shared__ acc_t a_smem[kChunk][kForwardTileRows];
  __shared__ acc_t b_smem[kChunk][kTileCols];
  __shared__ acc_t loss_scratch[kThreads / kWarp];
  __shared__ int64_t count_scratch[kThreads / kWarp];
  const int64_t row0 = row_tile * kForwardTileRows, col0 = col_tile * kTileCols;
  acc_t s[kRowsPerThread][kColsPerThread];
  similarity_tile<kForwardTileRows>(rows, p.n, cols, p.m, p.k, row0, col0, a_smem, b_smem, s);

  const int tx = threadIdx.x % kThreadCols, ty = threadIdx.x / kThreadCols;
  acc_t loss = 0;
  int64_t pos = 0, neg = 0;
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int64_t i = row0 + ty + kThreadRows * r;
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) {
      const int64_t j = col0 + tx + kThreadCols * c;
      if (i >= p.n || j >= p.m) continue;
      const acc_t sim = s[r][c];
      const int sel = select_pair(
          selection_similarity(p.kind, sim, inv_norm_at(inv_norm_rows, i), inv_norm_at(inv_norm_cols, j)),
          u, l);
      loss += pair_loss(p.kind, sel, sim, eps) + nan_unless_finite(sim);
      pos += sel > 0;
      neg += sel < 0;
    }
  }
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

// grad_rows[i] = grad_sum * factor * sum_j dloss(S_ij)/dS_ij * cols[j]. One block per row tile
// walks all column tiles; per tile it stages the per-pair gradients and a chunk of the columns'
// features in shared memory and multiplies them. Each (row, feature) element of the block's
// gradient belongs to one thread, which adds the column tiles in order: deterministic, no atomics.
// With k <= kFeatChunk (the common case) the sums stay in registers across all column tiles;
// wider features keep them in `grad_acc` (float32 or better), one read-modify-write per tile.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) pairwise_backward_kernel(
    const scalar_t* __restrict__ rows, const scalar_t* __restrict__ cols,
    const acc_t* __restrict__ inv_norm_rows, const acc_t* __restrict__ inv_norm_cols,
    PairwiseParams p, acc_t u, acc_t l, acc_t eps, const acc_t* __restrict__ grad_sum,
    acc_t factor, acc_t* __restrict__ grad_acc, scalar_t* __restrict__ grad) {
  constexpr int kRowsPerThread = kBackwardTileRows / kThreadRows;
  // Outputs of one feature chunk per thread (rows x chunk width over the block's threads).
  constexpr int kOutPerThread = kBackwardTileRows * kFeatChunk / kThreads;
  __shared__ acc_t a_smem[kChunk][kBackwardTileRows];
  __shared__ acc_t b_smem[kChunk][kTileCols];
  __shared__ acc_t g_smem[kBackwardTileRows][kTileCols + 1];  // +1: no bank conflicts
  __shared__ acc_t c_smem[kTileCols][kFeatChunk];
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBackwardTileRows;
  const int tx = threadIdx.x % kThreadCols, ty = threadIdx.x / kThreadCols;
  const bool sums_in_registers = p.k <= kFeatChunk;
  acc_t out[kOutPerThread] = {};

  for (int64_t col0 = 0; col0 < p.m; col0 += kTileCols) {
    acc_t s[kRowsPerThread][kColsPerThread];
    similarity_tile<kBackwardTileRows>(rows, p.n, cols, p.m, p.k, row0, col0, a_smem, b_smem, s);
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      const int64_t i = row0 + ty + kThreadRows * r;
#pragma unroll
      for (int c = 0; c < kColsPerThread; ++c) {
        const int64_t j = col0 + tx + kThreadCols * c;
        acc_t g = 0;
        if (i < p.n && j < p.m) {
          const acc_t sim = s[r][c];
          const int sel = select_pair(
              selection_similarity(p.kind, sim, inv_norm_at(inv_norm_rows, i), inv_norm_at(inv_norm_cols, j)),
              u, l);
          g = pair_loss_grad(p.kind, sel, sim, eps);
        }
        g_smem[ty + kThreadRows * r][tx + kThreadCols * c] = g;
      }
    }
    const int cols_here = static_cast<int>(min(static_cast<int64_t>(kTileCols), p.m - col0));
    for (int64_t f0 = 0; f0 < p.k; f0 += kFeatChunk) {
      __syncthreads();  // g_smem is written; c_smem is free again
      for (int e = threadIdx.x; e < kTileCols * kFeatChunk; e += kThreads) {
        const int j = e / kFeatChunk, f = e % kFeatChunk;
        c_smem[j][f] = (j < cols_here && f0 + f < p.k)
                           ? static_cast<acc_t>(cols[(col0 + j) * p.k + f0 + f]) : acc_t(0);
      }
      __syncthreads();
      // Only the chunk's real features get threads: narrow k (10, say) would otherwise spend
      // most of the products on padding.
      const int width = static_cast<int>(min(static_cast<int64_t>(kFeatChunk), p.k - f0));
#pragma unroll
      for (int o = 0; o < kOutPerThread; ++o) {
        const int e = threadIdx.x + o * kThreads, r = e / width, f = e % width;
        if (r >= kBackwardTileRows) break;
        acc_t sum = 0;
        for (int j = 0; j < cols_here; ++j) sum += g_smem[r][j] * c_smem[j][f];
        const int64_t i = row0 + r;
        if (sums_in_registers) {
          out[o] += sum;
        } else if (i < p.n) {
          grad_acc[i * p.k + f0 + f] += sum;
        }
      }
    }
    __syncthreads();  // g_smem and c_smem are rewritten for the next column tile
  }
  const acc_t scale = *grad_sum * factor;
  for (int64_t f0 = 0; f0 < p.k; f0 += kFeatChunk) {
    const int width = static_cast<int>(min(static_cast<int64_t>(kFeatChunk), p.k - f0));
#pragma unroll
    for (int o = 0; o < kOutPerThread; ++o) {
      const int e = threadIdx.x + o * kThreads, r = e / width, f = e % width;
      const int64_t i = row0 + r, idx = i * p.k + f0 + f;
      if (r < kBackwardTileRows && i < p.n)
        grad[idx] = static_cast<scalar_t>(scale * (sums_in_registers ? out[o] : grad_acc[idx]));
    }
  }
}

struct DeviceBlock {
  at::Tensor rows, cols, inv_norm_rows, inv_norm_cols;
  PairwiseParams params;
};

DeviceBlock prepare(const at::Tensor& rows, const std::optional<at::Tensor>& cols, int64_t kind,
                    at::ScalarType acc_dtype) {
  DeviceBlock d;
  d.rows = rows.contiguous();
  d.cols = cols.has_value() ? cols->contiguous() : d.rows;
  if (kind == kDsecSquared) {
    d.inv_norm_rows = inverse_row_norms(d.rows, acc_dtype);
    d.inv_norm_cols = cols.has_value() ? inverse_row_norms(d.cols, acc_dtype) : d.inv_norm_rows;
  }
  d.params = {d.rows.size(0), d.cols.size(0), d.rows.size(1), kind, !cols.has_value()};
  return d;
}

template <typename acc_t>
const acc_t* optional_ptr(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<acc_t>() : nullptr;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pairwise_loss_cuda(
    const at::Tensor& rows, const std::optional<at::Tensor>& cols, double u, double l,
    int64_t kind, double eps) {
  check_pairwise_args(rows, cols, u, l, kind, eps);
  const c10::cuda::CUDAGuard guard(rows.device());
  const auto acc_dtype = at::toOpMathType(rows.scalar_type());
  const auto d = prepare(rows, cols, kind, acc_dtype);
  const dim3 grid(ceil_div(d.params.m, kTileCols), ceil_div(d.params.n, kForwardTileRows));
  FC_CHECK(grid.y <= 65535, "feats has too many rows (", d.params.n, ") for one launch");
  const auto slots = static_cast<int64_t>(grid.x) * grid.y;
  auto partial_loss = at::zeros({slots}, rows.options().dtype(at::kDouble));
  auto partial_pos = at::zeros({slots}, rows.options().dtype(at::kLong));
  auto partial_neg = at::zeros({slots}, rows.options().dtype(at::kLong));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, rows.scalar_type(), "pairwise_loss_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    pairwise_forward_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
        d.rows.const_data_ptr<scalar_t>(), d.cols.const_data_ptr<scalar_t>(),
        optional_ptr<acc_t>(d.inv_norm_rows), optional_ptr<acc_t>(d.inv_norm_cols), d.params,
        static_cast<acc_t>(u), static_cast<acc_t>(l), static_cast<acc_t>(eps),
        partial_loss.mutable_data_ptr<double>(), partial_pos.mutable_data_ptr<int64_t>(),
        partial_neg.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {partial_loss.sum().to(acc_dtype), partial_pos.sum(), partial_neg.sum()};
}

at::Tensor pairwise_loss_backward_cuda(const at::Tensor& grad_sum, const at::Tensor& rows,
                                       const std::optional<at::Tensor>& cols, double u, double l,
                                       int64_t kind, double eps) {
  check_pairwise_backward_args(grad_sum, rows, cols, u, l, kind, eps);
  const c10::cuda::CUDAGuard guard(rows.device());
  const auto acc_dtype = at::toOpMathType(rows.scalar_type());
  const auto d = prepare(rows, cols, kind, acc_dtype);
  const auto grad_scalar = grad_sum.to(acc_dtype).contiguous();
  // Features wider than one chunk accumulate in memory; narrower ones in registers.
  auto grad_acc = d.params.k > kFeatChunk ? at::zeros(d.rows.sizes(), rows.options().dtype(acc_dtype))
                                          : at::Tensor();
  auto grad = at::empty(d.rows.sizes(), rows.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, rows.scalar_type(), "pairwise_loss_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    // Symmetric: row i is both sides of its pairs, and S_ij = S_ji, so its gradient is twice
    // the one-sided sum.
    const acc_t factor = d.params.symmetric ? acc_t(2) : acc_t(1);
    pairwise_backward_kernel<scalar_t, acc_t>
        <<<ceil_div(d.params.n, kBackwardTileRows), kThreads, 0, stream>>>(
            d.rows.const_data_ptr<scalar_t>(), d.cols.const_data_ptr<scalar_t>(),
            optional_ptr<acc_t>(d.inv_norm_rows), optional_ptr<acc_t>(d.inv_norm_cols),
            d.params, static_cast<acc_t>(u), static_cast<acc_t>(l), static_cast<acc_t>(eps),
            grad_scalar.const_data_ptr<acc_t>(), factor,
            grad_acc.defined() ? grad_acc.mutable_data_ptr<acc_t>() : nullptr,
            grad.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastclust, CUDA, m) {
  m.impl("pairwise_loss", &pairwise_loss_cuda);
  m.impl("pairwise_loss_backward", &pairwise_loss_backward_cuda);
}

}  // namespace fastclust
