#pragma once
// Row x column similarity tiles shared by the CUDA kernels of the pairwise losses and the
// row-wise log-sum-exp. A block of kThreads threads computes a (kTileRows x kTileCols) tile of
// S = rows . cols^T in registers from shared-memory chunks of the features; the tile is never
// stored. weighted_columns_kernel is the common backward: it recomputes the tiles and
// multiplies per-pair weights into the columns, each gradient element owned by one thread
// and summed in a fixed order (no atomics, bitwise reproducible).
#include "cuda/cuda_utils.cuh"

namespace fastclust {

constexpr int kThreads = 256;
constexpr int kThreadCols = 16;                        // threads along a tile's columns
constexpr int kThreadRows = kThreads / kThreadCols;    // threads along a tile's rows
constexpr int kChunk = 16;                             // features staged per step
constexpr int kTileCols = 64;
constexpr int kColsPerThread = kTileCols / kThreadCols;
constexpr int kForwardTileRows = 64;
constexpr int kBackwardTileRows = 32;  // smaller: the backward also stages a weight tile

// s[r][c] = rows[row0 + ty + kThreadRows r] . cols[col0 + tx + kThreadCols c], zero outside
// the matrices, with tx = threadIdx.x % kThreadCols and ty = threadIdx.x / kThreadCols.
// Features are summed in ascending order, so S_ij and S_ji are bit-identical.
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

// grad[i] = weight.scale() * sum_j weight(i, j, S_ij) * cols[j], for an (n, k) `rows` and an
// (m, k) `cols`; `weight` is a device functor called for i < n, j < m only. One block per row
// tile walks all column tiles, and each (row, feature) element of the block's gradient belongs
// to one thread, which adds the column tiles in order into grad_acc (zeroed, (n, k)).
template <typename scalar_t, typename acc_t, typename PairWeight>
__global__ void __launch_bounds__(kThreads) weighted_columns_kernel(
    const scalar_t* __restrict__ rows, int64_t n, const scalar_t* __restrict__ cols, int64_t m,
    int64_t k, PairWeight weight, acc_t* __restrict__ grad_acc, scalar_t* __restrict__ grad) {
  constexpr int kRowsPerThread = kBackwardTileRows / kThreadRows;
  __shared__ acc_t a_smem[kChunk][kBackwardTileRows];
  __shared__ acc_t b_smem[kChunk][kTileCols];
  __shared__ acc_t w_smem[kBackwardTileRows][kTileCols + 1];  // +1: no bank conflicts
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBackwardTileRows;
  const int64_t tile_elems = kBackwardTileRows * k;
  const int tx = threadIdx.x % kThreadCols, ty = threadIdx.x / kThreadCols;

  for (int64_t col0 = 0; col0 < m; col0 += kTileCols) {
    acc_t s[kRowsPerThread][kColsPerThread];
    similarity_tile<kBackwardTileRows>(rows, n, cols, m, k, row0, col0, a_smem, b_smem, s);
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      const int64_t i = row0 + ty + kThreadRows * r;
#pragma unroll
      for (int c = 0; c < kColsPerThread; ++c) {
        const int64_t j = col0 + tx + kThreadCols * c;
        w_smem[ty + kThreadRows * r][tx + kThreadCols * c] =
            (i < n && j < m) ? weight(i, j, s[r][c]) : acc_t(0);
      }
    }
    __syncthreads();
    const int64_t cols_here = min(static_cast<int64_t>(kTileCols), m - col0);
    for (int64_t e = threadIdx.x; e < tile_elems; e += kThreads) {
      const int64_t r = e / k, f = e % k, i = row0 + r;
      if (i >= n) break;  // e grows with r: every later element is past the last row too
      acc_t sum = 0;
      for (int64_t j = 0; j < cols_here; ++j)
        sum += w_smem[r][j] * static_cast<acc_t>(cols[(col0 + j) * k + f]);
      grad_acc[i * k + f] += sum;
    }
    __syncthreads();  // w_smem is rewritten for the next column tile
  }
  const acc_t scale = weight.scale();
  for (int64_t e = threadIdx.x; e < tile_elems; e += kThreads) {
    const int64_t i = row0 + e / k;
    if (i >= n) break;
    const int64_t idx = i * k + e % k;
    grad[idx] = static_cast<scalar_t>(scale * grad_acc[idx]);
  }
}

}  // namespace fastclust
