#pragma once
// Row x column similarity tiles shared by the CUDA kernels of the pairwise losses and the
// row-wise log-sum-exp. A block of kThreads threads computes a (kTileRows x kTileCols) tile of
// S = rows . cols^T from shared-memory chunks of the features and hands every thread its
// kRowsPerThread x kColsPerThread share in registers: float32/float64 on the SIMT cores,
// float16/bfloat16 on the tensor cores (WMMA, float32 accumulation). The backward that
// recomputes them is cuda/weighted_columns.cuh.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <type_traits>

#include <ATen/ATen.h>

#include "cuda/cuda_utils.cuh"

namespace fastclust {

constexpr int kThreadCols = 16;                        // threads along a tile's columns
constexpr int kThreadRows = kThreads / kThreadCols;    // threads along a tile's rows
constexpr int kChunk = 16;                             // features staged per step
constexpr int kTileCols = 64;
constexpr int kColsPerThread = kTileCols / kThreadCols;
constexpr int kForwardTileRows = 64;
constexpr int kBackwardTileRows = 32;  // smaller: the backward also stages a weight tile

// Calls f(r, c, i, j) for each entry s[r][c] of a tile at (row0, col0) that this thread holds
// (the layout below), with (i, j) its place in S; at the matrices' edges (i, j) may lie past
// their ends, which f checks.
template <int kRowsPerThread, typename F>
__device__ __forceinline__ void for_each_tile_entry(int64_t row0, int64_t col0, F&& f) {
  const int tx = threadIdx.x % kThreadCols, ty = threadIdx.x / kThreadCols;
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int64_t i = row0 + ty + kThreadRows * r;
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) f(r, c, i, col0 + tx + kThreadCols * c);
  }
}

// s[r][c] = rows[row0 + ty + kThreadRows r] . cols[col0 + tx + kThreadCols c], zero outside
// the matrices, with tx = threadIdx.x % kThreadCols and ty = threadIdx.x / kThreadCols.
// SIMT version: features are summed in ascending order, so S_ij and S_ji are bit-identical.
template <int kTileRows, typename scalar_t, typename acc_t>
struct SimilarityTiles {
  static constexpr int kRowsPerThread = kTileRows / kThreadRows;
  struct Storage {
    acc_t a[kChunk][kTileRows];
    acc_t b[kChunk][kTileCols];
  };

  static __device__ __forceinline__ void compute(
      const scalar_t* __restrict__ rows, int64_t n, const scalar_t* __restrict__ cols, int64_t m,
      int64_t k, int64_t row0, int64_t col0, Storage& st,
      acc_t (&s)[kRowsPerThread][kColsPerThread]) {
    const int tx = threadIdx.x % kThreadCols, ty = threadIdx.x / kThreadCols;
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
      for (int c = 0; c < kColsPerThread; ++c) s[r][c] = acc_t(0);
    for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
      for (int e = threadIdx.x; e < kTileRows * kChunk; e += kThreads) {
        const int r = e / kChunk, kk = e % kChunk;
        const int64_t i = row0 + r, f = k0 + kk;
        st.a[kk][r] = (i < n && f < k) ? static_cast<acc_t>(rows[i * k + f]) : acc_t(0);
      }
      for (int e = threadIdx.x; e < kTileCols * kChunk; e += kThreads) {
        const int c = e / kChunk, kk = e % kChunk;
        const int64_t j = col0 + c, f = k0 + kk;
        st.b[kk][c] = (j < m && f < k) ? static_cast<acc_t>(cols[j * k + f]) : acc_t(0);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kChunk; ++kk) {
        acc_t a[kRowsPerThread], b[kColsPerThread];
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r) a[r] = st.a[kk][ty + kThreadRows * r];
#pragma unroll
        for (int c = 0; c < kColsPerThread; ++c) b[c] = st.b[kk][tx + kThreadCols * c];
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
          for (int c = 0; c < kColsPerThread; ++c) s[r][c] += a[r] * b[c];
      }
      __syncthreads();  // the next chunk overwrites the staged features
    }
  }
};

__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// Tensor-core version for 16-bit inputs: the tile is cut into 16 x 16 WMMA fragments spread
// over the block's warps, accumulated in float32 over the features, stored to shared memory
// and read back in the SIMT layout above, so every epilogue serves both versions. The
// products of 16-bit values are exact in float32, as on the SIMT path; only the order of the
// float32 sums differs. bfloat16 WMMA needs sm_80: older GPUs multiply the staged bfloat16
// tile on the SIMT cores instead.
template <int kTileRows, typename scalar_t, typename half_t>
struct TensorCoreTiles {
  static constexpr int kRowsPerThread = kTileRows / kThreadRows;
  static constexpr int kFrag = 16;                 // WMMA m = n = k
  static constexpr int kStep = 32;                 // features staged per step
  static constexpr int kStageLd = kStep + 8;       // halves; a multiple of 8 (16 bytes) as
                                                   // WMMA wants, padded off bank conflicts
  static constexpr int kTileLd = kTileCols + 4;    // floats; a multiple of 4 (16 bytes)
  static constexpr int kFragCols = kTileCols / kFrag;
  static constexpr int kFragsPerWarp = (kTileRows / kFrag) * kFragCols / (kThreads / kWarp);
  static_assert(kFragsPerWarp >= 1, "every warp owns at least one fragment");

  struct __align__(32) Storage {
    half_t a[kTileRows][kStageLd];  // a[r][kk] = rows[row0 + r][k0 + kk]
    half_t b[kTileCols][kStageLd];  // b[c][kk] = cols[col0 + c][k0 + kk]: B = b^T, col-major
    float s[kTileRows][kTileLd];
  };

  static __device__ __forceinline__ void compute(
      const scalar_t* __restrict__ rows_in, int64_t n, const scalar_t* __restrict__ cols_in,
      int64_t m, int64_t k, int64_t row0, int64_t col0, Storage& st,
      float (&s)[kRowsPerThread][kColsPerThread]) {
    using namespace nvcuda;
    // c10::Half / c10::BFloat16 hold the same 16 bits as __half / __nv_bfloat16.
    const half_t* rows = reinterpret_cast<const half_t*>(rows_in);
    const half_t* cols = reinterpret_cast<const half_t*>(cols_in);
    const half_t zero{};  // value-initialised: all bits zero
    const int warp = threadIdx.x / kWarp;
    constexpr bool kUseWmma =
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
        std::is_same<half_t, __half>::value;
#else
        true;
#endif
    wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> acc[kFragsPerWarp];
#pragma unroll
    for (int f = 0; f < kFragsPerWarp; ++f) wmma::fill_fragment(acc[f], 0.0f);
    const int tx = threadIdx.x % kThreadCols, ty = threadIdx.x / kThreadCols;
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
      for (int c = 0; c < kColsPerThread; ++c) s[r][c] = 0.0f;

    for (int64_t k0 = 0; k0 < k; k0 += kStep) {
      for (int e = threadIdx.x; e < kTileRows * kStep; e += kThreads) {
        const int r = e / kStep, kk = e % kStep;
        const int64_t i = row0 + r, f = k0 + kk;
        st.a[r][kk] = (i < n && f < k) ? rows[i * k + f] : zero;
      }
      for (int e = threadIdx.x; e < kTileCols * kStep; e += kThreads) {
        const int c = e / kStep, kk = e % kStep;
        const int64_t j = col0 + c, f = k0 + kk;
        st.b[c][kk] = (j < m && f < k) ? cols[j * k + f] : zero;
      }
      __syncthreads();
      if constexpr (kUseWmma) {
#pragma unroll
        for (int kk = 0; kk < kStep; kk += kFrag) {
#pragma unroll
          for (int f = 0; f < kFragsPerWarp; ++f) {
            const int frag = warp * kFragsPerWarp + f;
            const int fr = frag / kFragCols, fc = frag % kFragCols;
            wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, half_t, wmma::row_major> fa;
            wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, half_t, wmma::col_major> fb;
            wmma::load_matrix_sync(fa, &st.a[fr * kFrag][kk], kStageLd);
            wmma::load_matrix_sync(fb, &st.b[fc * kFrag][kk], kStageLd);
            wmma::mma_sync(acc[f], fa, fb, acc[f]);
          }
        }
      } else {
        for (int kk = 0; kk < kStep; ++kk)
#pragma unroll
          for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
            for (int c = 0; c < kColsPerThread; ++c)
              s[r][c] += to_float(st.a[ty + kThreadRows * r][kk]) *
                         to_float(st.b[tx + kThreadCols * c][kk]);
      }
      __syncthreads();  // the next step overwrites the staged features
    }
    if constexpr (kUseWmma) {
#pragma unroll
      for (int f = 0; f < kFragsPerWarp; ++f) {
        const int frag = warp * kFragsPerWarp + f;
        const int fr = frag / kFragCols, fc = frag % kFragCols;
        wmma::store_matrix_sync(&st.s[fr * kFrag][fc * kFrag], acc[f], kTileLd, wmma::mem_row_major);
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
        for (int c = 0; c < kColsPerThread; ++c)
          s[r][c] = st.s[ty + kThreadRows * r][tx + kThreadCols * c];
      __syncthreads();  // st.s is rewritten by the next tile
    }
  }
};

template <int kTileRows>
struct SimilarityTiles<kTileRows, c10::Half, float> : TensorCoreTiles<kTileRows, c10::Half, __half> {};
template <int kTileRows>
struct SimilarityTiles<kTileRows, c10::BFloat16, float>
    : TensorCoreTiles<kTileRows, c10::BFloat16, __nv_bfloat16> {};

}  // namespace fastclust
