#pragma once
// The backward shared by the pairwise losses and the row-wise log-sum-exp: it recomputes the
// similarity tiles (cuda/similarity_tiles.cuh) and multiplies per-pair weights into the
// columns, each gradient element owned by one thread and summed in a fixed order (no atomics,
// bitwise reproducible).
#include <ATen/ATen.h>

#include "cuda/similarity_tiles.cuh"

namespace fastclust {

// grad[i] = weight.scale() * sum_j weight(i, j, S_ij) * cols[j], for an (n, k) `rows` and an
// (m, k) `cols`; `weight` is a device functor called for i < n, j < m only. One block per row
// tile walks all column tiles; per tile it stages the weights and a chunk of the columns'
// features in shared memory and multiplies them. Each (row, feature) element of the block's
// gradient belongs to one thread, which adds the column tiles in order: deterministic, no
// atomics. With k <= kFeatChunk (the common case for cluster outputs) the sums stay in
// registers across all column tiles; wider features keep them in `grad_acc` (float32 or
// better, zeroed, see weighted_columns_accumulator), one read-modify-write per tile.
constexpr int kFeatChunk = 32;  // features of the columns staged per backward step

template <typename scalar_t, typename acc_t, typename PairWeight>
__global__ void __launch_bounds__(kThreads) weighted_columns_kernel(
    const scalar_t* __restrict__ rows, int64_t n, const scalar_t* __restrict__ cols, int64_t m,
    int64_t k, PairWeight weight, acc_t* __restrict__ grad_acc, scalar_t* __restrict__ grad) {
  constexpr int kRowsPerThread = kBackwardTileRows / kThreadRows;
  // Outputs of one feature chunk per thread (rows x chunk width over the block's threads).
  constexpr int kOutPerThread = kBackwardTileRows * kFeatChunk / kThreads;
  using Tiles = SimilarityTiles<kBackwardTileRows, scalar_t, acc_t>;
  __shared__ typename Tiles::Storage tiles;
  __shared__ acc_t w_smem[kBackwardTileRows][kTileCols + 1];  // +1: no bank conflicts
  __shared__ acc_t c_smem[kTileCols][kFeatChunk];
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBackwardTileRows;
  const bool sums_in_registers = k <= kFeatChunk;
  acc_t out[kOutPerThread] = {};

  for (int64_t col0 = 0; col0 < m; col0 += kTileCols) {
    acc_t s[kRowsPerThread][kColsPerThread];
    Tiles::compute(rows, n, cols, m, k, row0, col0, tiles, s);
    for_each_tile_entry<kRowsPerThread>(row0, col0, [&](int r, int c, int64_t i, int64_t j) {
      w_smem[i - row0][j - col0] = (i < n && j < m) ? weight(i, j, s[r][c]) : acc_t(0);
    });
    const int cols_here = static_cast<int>(min(static_cast<int64_t>(kTileCols), m - col0));
    for (int64_t f0 = 0; f0 < k; f0 += kFeatChunk) {
      __syncthreads();  // w_smem is written; c_smem is free again
      for (int e = threadIdx.x; e < kTileCols * kFeatChunk; e += kThreads) {
        const int j = e / kFeatChunk, f = e % kFeatChunk;
        c_smem[j][f] = (j < cols_here && f0 + f < k)
                           ? static_cast<acc_t>(cols[(col0 + j) * k + f0 + f]) : acc_t(0);
      }
      __syncthreads();
      // Only the chunk's real features get threads: narrow k (10, say) would otherwise spend
      // most of the products on padding.
      const int width = static_cast<int>(min(static_cast<int64_t>(kFeatChunk), k - f0));
#pragma unroll
      for (int o = 0; o < kOutPerThread; ++o) {
        const int e = threadIdx.x + o * kThreads, r = e / width, f = e % width;
        if (r >= kBackwardTileRows) break;
        acc_t sum = 0;
        for (int j = 0; j < cols_here; ++j) sum += w_smem[r][j] * c_smem[j][f];
        const int64_t i = row0 + r;
        if (sums_in_registers) {
          out[o] += sum;
        } else if (i < n) {
          grad_acc[i * k + f0 + f] += sum;
        }
      }
    }
    __syncthreads();  // w_smem and c_smem are rewritten for the next column tile
  }
  const acc_t scale = weight.scale();
  for (int64_t f0 = 0; f0 < k; f0 += kFeatChunk) {
    const int width = static_cast<int>(min(static_cast<int64_t>(kFeatChunk), k - f0));
#pragma unroll
    for (int o = 0; o < kOutPerThread; ++o) {
      const int e = threadIdx.x + o * kThreads, r = e / width, f = e % width;
      const int64_t i = row0 + r, idx = i * k + f0 + f;
      if (r < kBackwardTileRows && i < n)
        grad[idx] = static_cast<scalar_t>(scale * (sums_in_registers ? out[o] : grad_acc[idx]));
    }
  }
}

// The memory weighted_columns_kernel sums into for an (n, k) side: none where the sums fit
// in registers.
inline at::Tensor weighted_columns_accumulator(const at::Tensor& rows, at::ScalarType acc_dtype) {
  return rows.size(1) > kFeatChunk ? at::zeros(rows.sizes(), rows.options().dtype(acc_dtype))
                                   : at::Tensor();
}

template <typename acc_t>
acc_t* optional_mutable_ptr(at::Tensor& t) {
  return t.defined() ? t.mutable_data_ptr<acc_t>() : nullptr;
}

}  // namespace fastclust
