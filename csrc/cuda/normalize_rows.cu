// CUDA kernels of row-wise L2 normalisation with a norm floor: one warp per row, the row's
// sums reduced by fixed warp butterflies (deterministic).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "common/contrastive_checks.h"
#include "common/contrastive_math.h"
#include "cuda/cuda_utils.cuh"

namespace fastclust {
namespace {

constexpr int kRowsPerBlock = 8;  // one warp per row

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t row_sum_of_squares(const scalar_t* __restrict__ row, int64_t d) {
  acc_t sum = 0;
  for (int64_t c = threadIdx.x % kWarp; c < d; c += kWarp) {
    const acc_t v = static_cast<acc_t>(row[c]);
    sum += v * v;
  }
  return warp_sum(sum);
}

template <typename scalar_t, typename acc_t>
__global__ void normalize_rows_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                      int64_t n, int64_t d) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= n) return;
  const scalar_t* xr = x + row * d;
  const acc_t inv_norm = inverse_clamped_norm(row_sum_of_squares<scalar_t, acc_t>(xr, d));
  for (int64_t c = threadIdx.x % kWarp; c < d; c += kWarp)
    y[row * d + c] = static_cast<scalar_t>(static_cast<acc_t>(xr[c]) * inv_norm);
}

template <typename scalar_t, typename acc_t>
__global__ void normalize_rows_backward_kernel(const scalar_t* __restrict__ g,
                                               const scalar_t* __restrict__ x,
                                               scalar_t* __restrict__ gx, int64_t n, int64_t d) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= n) return;
  const int64_t o = row * d;
  const acc_t squares = row_sum_of_squares<scalar_t, acc_t>(x + o, d);
  const acc_t inv_norm = inverse_clamped_norm(squares);
  const bool at_floor = norm_below_floor(squares);
  acc_t g_dot_y = 0;
  for (int64_t c = threadIdx.x % kWarp; c < d; c += kWarp)
    g_dot_y += static_cast<acc_t>(g[o + c]) * static_cast<acc_t>(x[o + c]) * inv_norm;
  g_dot_y = warp_sum(g_dot_y);
  for (int64_t c = threadIdx.x % kWarp; c < d; c += kWarp)
    gx[o + c] = static_cast<scalar_t>(normalize_input_grad<acc_t>(
        static_cast<acc_t>(g[o + c]), static_cast<acc_t>(x[o + c]) * inv_norm, g_dot_y, inv_norm,
        at_floor));
}

at::Tensor normalize_rows_cuda(const at::Tensor& x) {
  check_normalize_rows_args(x);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  auto out = at::empty(xc.sizes(), xc.options());
  const int64_t n = xc.size(0), d = xc.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "normalize_rows_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    FC_LAUNCH(ceil_div(n, kRowsPerBlock), kRowsPerBlock * kWarp, stream,
              normalize_rows_kernel<scalar_t, acc_t>)(
        xc.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n, d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor normalize_rows_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x) {
  check_normalize_rows_backward_args(grad_out, x);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous(), gc = grad_out.contiguous();
  auto grad_in = at::empty(xc.sizes(), xc.options());
  const int64_t n = xc.size(0), d = xc.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "normalize_rows_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    FC_LAUNCH(ceil_div(n, kRowsPerBlock), kRowsPerBlock * kWarp, stream,
              normalize_rows_backward_kernel<scalar_t, acc_t>)(
            gc.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(),
            grad_in.mutable_data_ptr<scalar_t>(), n, d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_in;
}

}  // namespace

FC_CUDA_KERNELS(m) {
  m.impl("normalize_rows", &normalize_rows_cuda);
  m.impl("normalize_rows_backward", &normalize_rows_backward_cuda);
}

}  // namespace fastclust
