#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "common/restraint_checks.h"
#include "common/restraint_math.h"
#include "cuda/cuda_utils.cuh"

namespace fastclust {
namespace {

constexpr int kRowsPerBlock = 8;  // one warp per row

template <typename scalar_t, typename acc_t>
__global__ void restraint_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                 int64_t n, int64_t k, acc_t p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= n) return;
  const scalar_t* xr = x + row * k;
  acc_t mx = static_cast<acc_t>(xr[0]);
  for (int64_t c = lane; c < k; c += kWarp) mx = fc_max(mx, static_cast<acc_t>(xr[c]));
  mx = warp_max(mx);
  acc_t sum = 0;
  for (int64_t c = lane; c < k; c += kWarp)
    sum += restraint_power(fc_exp(static_cast<acc_t>(xr[c]) - mx), p);
  const acc_t inv_norm = acc_t(1) / restraint_root(warp_sum(sum), p);
  // exp is recomputed rather than staged in y, which may be half precision.
  for (int64_t c = lane; c < k; c += kWarp)
    y[row * k + c] = static_cast<scalar_t>(fc_exp(static_cast<acc_t>(xr[c]) - mx) * inv_norm);
}

template <typename scalar_t, typename acc_t>
__global__ void restraint_backward_kernel(const scalar_t* __restrict__ g,
                                          const scalar_t* __restrict__ y,
                                          scalar_t* __restrict__ gx, int64_t n, int64_t k,
                                          acc_t p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= n) return;
  const int64_t o = row * k;
  acc_t g_dot_y = 0;
  for (int64_t c = lane; c < k; c += kWarp)
    g_dot_y += static_cast<acc_t>(g[o + c]) * static_cast<acc_t>(y[o + c]);
  g_dot_y = warp_sum(g_dot_y);
  for (int64_t c = lane; c < k; c += kWarp)
    gx[o + c] = static_cast<scalar_t>(restraint_input_grad<acc_t>(
        static_cast<acc_t>(y[o + c]), static_cast<acc_t>(g[o + c]), g_dot_y, p));
}

at::Tensor restraint_cuda(const at::Tensor& x, double p) {
  check_restraint_args(x, p);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  auto out = at::empty(xc.sizes(), xc.options());
  const int64_t n = xc.size(0), k = xc.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "restraint_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    FC_LAUNCH(ceil_div(n, kRowsPerBlock), kRowsPerBlock * kWarp, stream,
              restraint_kernel<scalar_t, acc_t>)(
        xc.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n, k,
        static_cast<acc_t>(p));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor restraint_backward_cuda(const at::Tensor& grad_out, const at::Tensor& out, double p) {
  check_restraint_backward_args(grad_out, out, p);
  const c10::cuda::CUDAGuard guard(out.device());
  const auto gc = grad_out.contiguous();
  const auto yc = out.contiguous();
  auto grad_in = at::empty(yc.sizes(), yc.options());
  const int64_t n = yc.size(0), k = yc.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, yc.scalar_type(), "restraint_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    FC_LAUNCH(ceil_div(n, kRowsPerBlock), kRowsPerBlock * kWarp, stream,
              restraint_backward_kernel<scalar_t, acc_t>)(
            gc.const_data_ptr<scalar_t>(), yc.const_data_ptr<scalar_t>(),
            grad_in.mutable_data_ptr<scalar_t>(), n, k, static_cast<acc_t>(p));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_in;
}

}  // namespace

FC_CUDA_KERNELS(m) {
  m.impl("restraint", &restraint_cuda);
  m.impl("restraint_backward", &restraint_backward_cuda);
}

}  // namespace fastclust
