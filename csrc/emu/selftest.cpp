// Kernels that test the emulation itself (tests/test_cuda_emulated.py): warp shuffles and the
// block sum give known results, and each faulty kernel holds one mistake the emulation must
// report as an error naming the kernel instead of hanging or computing on.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <string>

#include "cuda/cuda_utils.cuh"

namespace fastclust {
namespace {

constexpr int kShuffles = 4;

// out[t][i]: thread t's results of shuffling its own lane number.
__global__ void shuffles_kernel(int* out) {
  const int lane = threadIdx.x % kWarp;
  int* mine = out + (blockIdx.x * blockDim.x + threadIdx.x) * kShuffles;
  mine[0] = __shfl_xor_sync(0xffffffffu, lane, 5);
  mine[1] = __shfl_up_sync(0xffffffffu, lane, 3);
  mine[2] = __shfl_down_sync(0xffffffffu, lane, 3, 16);
  mine[3] = __shfl_sync(0xffffffffu, lane, 7);
}

// out[block] = the sum of the block's thread numbers, through block_sum.
__global__ void block_sum_kernel(int64_t* out) {
  __shared__ int64_t scratch[kWarp];
  const int64_t total = block_sum(static_cast<int64_t>(threadIdx.x), scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = total;
}

__global__ void early_return_kernel() {
  if (threadIdx.x >= 200) return;
  __syncthreads();
}

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

__global__ void shuffle_with_exited_lane_kernel() {
  if (threadIdx.x == 5) return;
  (void)__shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

__global__ void shuffle_outside_mask_kernel() {
  if (threadIdx.x % kWarp < 16) (void)__shfl_xor_sync(0x0000ffffu, 1.0f, 16);
}

__global__ void wmma_misaligned_kernel() {
  using namespace nvcuda;
  __shared__ __align__(32) __half tile[16 * 17];
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
  wmma::load_matrix_sync(a, tile + 1, 16);
}

__global__ void barrier_in_one_warp_kernel() {
  if (threadIdx.x < kWarp) __syncthreads();
}

std::optional<at::Tensor> emulation_selftest(const std::string& kernel) {
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (kernel == "shuffles") {
    auto out = at::empty({2, 64, kShuffles}, at::kInt);
    FC_LAUNCH(2, 64, stream, shuffles_kernel)(out.mutable_data_ptr<int>());
    return out;
  }
  if (kernel == "block_sum") {
    auto out = at::empty({3}, at::kLong);
    FC_LAUNCH(3, 256, stream, block_sum_kernel)(out.mutable_data_ptr<int64_t>());
    return out;
  }
  if (kernel == "early_return") FC_LAUNCH(2, 256, stream, early_return_kernel)();
  else if (kernel == "divergent_barrier") FC_LAUNCH(1, 64, stream, divergent_barrier_kernel)();
  else if (kernel == "shuffle_with_exited_lane") FC_LAUNCH(1, 32, stream, shuffle_with_exited_lane_kernel)();
  else if (kernel == "shuffle_outside_mask") FC_LAUNCH(1, 32, stream, shuffle_outside_mask_kernel)();
  else if (kernel == "wmma_misaligned") FC_LAUNCH(1, 32, stream, wmma_misaligned_kernel)();
  else if (kernel == "barrier_in_one_warp") FC_LAUNCH(1, 64, stream, barrier_in_one_warp_kernel)();
  else if (kernel == "bad_launch") FC_LAUNCH(1, 2048, stream, early_return_kernel)();
  else TORCH_CHECK(false, "no self-test kernel named ", kernel);
  return std::nullopt;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastclust_emu, m) {
  m.def("emulation_selftest(str kernel) -> Tensor?", &emulation_selftest);
}

}  // namespace fastclust
