// CPU kernels of row-wise L2 normalisation with a norm floor (torch.nn.functional.normalize).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/contrastive_checks.h"
#include "common/contrastive_math.h"

namespace fastclust {
namespace {

template <typename F>
void for_each_row(int64_t n, int64_t d, const F& body) {
  at::parallel_for(0, n, std::max<int64_t>(1, 4096 / d), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) body(i);
  });
}

template <typename acc_t, typename scalar_t>
acc_t sum_of_squares(const scalar_t* row, int64_t d) {
  acc_t sum = 0;
  for (int64_t c = 0; c < d; ++c) sum += static_cast<acc_t>(row[c]) * static_cast<acc_t>(row[c]);
  return sum;
}

at::Tensor normalize_rows_cpu(const at::Tensor& x) {
  check_normalize_rows_args(x);
  const auto xc = x.contiguous();
  auto out = at::empty(xc.sizes(), xc.options());
  const int64_t n = xc.size(0), d = xc.size(1);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "normalize_rows_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* in = xc.const_data_ptr<scalar_t>();
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    for_each_row(n, d, [&](int64_t i) {
      const acc_t inv_norm = inverse_clamped_norm(sum_of_squares<acc_t>(in + i * d, d));
      for (int64_t c = 0; c < d; ++c) y[i * d + c] = static_cast<acc_t>(in[i * d + c]) * inv_norm;
    });
  });
  return out;
}

at::Tensor normalize_rows_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x) {
  check_normalize_rows_backward_args(grad_out, x);
  const auto xc = x.contiguous(), gc = grad_out.contiguous();
  auto grad_in = at::empty(xc.sizes(), xc.options());
  const int64_t n = xc.size(0), d = xc.size(1);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "normalize_rows_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* in = xc.const_data_ptr<scalar_t>();
    const scalar_t* g = gc.const_data_ptr<scalar_t>();
    scalar_t* gx = grad_in.mutable_data_ptr<scalar_t>();
    for_each_row(n, d, [&](int64_t i) {
      const int64_t o = i * d;
      const acc_t squares = sum_of_squares<acc_t>(in + o, d);
      const acc_t inv_norm = inverse_clamped_norm(squares);
      const bool at_floor = norm_below_floor(squares);
      acc_t g_dot_y = 0;
      for (int64_t c = 0; c < d; ++c) g_dot_y += static_cast<acc_t>(g[o + c]) * in[o + c] * inv_norm;
      for (int64_t c = 0; c < d; ++c)
        gx[o + c] = normalize_input_grad<acc_t>(g[o + c], in[o + c] * inv_norm, g_dot_y, inv_norm,
                                                at_floor);
    });
  });
  return grad_in;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastclust, CPU, m) {
  m.impl("normalize_rows", &normalize_rows_cpu);
  m.impl("normalize_rows_backward", &normalize_rows_backward_cpu);
}

}  // namespace fastclust
