#pragma once
// Helpers shared by the CUDA kernels, and the one place that includes the CUDA toolkit: the
// emulated-CUDA test build (FASTCLUST_CUDA_EMU) compiles the same kernels with g++ against
// csrc/emu/cuda_emu.h instead. c10/cuda headers only: ATen/cuda/CUDAContext.h pulls in
// cuBLAS/cuSPARSE headers that a plain toolkit install may lack.
#ifdef FASTCLUST_CUDA_EMU
#include "emu/cuda_emu.h"
#else
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

// kernel<<<grid, block, 0, stream>>>(args...), written FC_LAUNCH(grid, block, stream,
// kernel)(args...) so that the emulated build can run the same launch on CPU threads.
#define FC_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<(grid), (block), 0, (stream)>>>
// Where the kernels register: the CUDA key of torch.ops.fastclust (the emulated build: the
// CPU key of torch.ops.fastclust_emu).
#define FC_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(fastclust, CUDA, m)
#endif

#include <cstdint>

namespace fastclust {

constexpr int kWarp = 32;
// The block size of the tiled kernels (8 warps): a 64 x 64 tile is 16 x 16 threads of 4 x 4.
constexpr int kThreads = 256;

// Butterfly reductions: every lane ends with the same value, summed in a fixed order.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const T other = __shfl_xor_sync(0xffffffffu, v, offset);
    v = other > v ? other : v;
  }
  return v;
}

// Block-wide sum in a fixed order (warp butterflies, then the first warp over warp totals).
// `scratch` holds one T per warp; every thread receives the total.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int num_warps = (blockDim.x + kWarp - 1) / kWarp;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < num_warps; ++w) total += scratch[w];
  return total;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace fastclust
