#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "common/restraint_checks.h"
#include "common/restraint_math.h"

namespace fastclust {
namespace {

at::Tensor restraint_cpu(const at::Tensor& x, double p) {
  check_restraint_args(x, p);
  const auto xc = x.contiguous();
  auto out = at::empty(xc.sizes(), xc.options());
  const int64_t n = xc.size(0), k = xc.size(1);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "restraint_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* in = xc.const_data_ptr<scalar_t>();
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    const acc_t pp = static_cast<acc_t>(p);
    at::parallel_for(0, n, std::max<int64_t>(1, 4096 / k), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t* row = in + i * k;
        scalar_t* yrow = y + i * k;
        acc_t mx = row[0];
        for (int64_t c = 1; c < k; ++c) mx = fc_max(mx, static_cast<acc_t>(row[c]));
        acc_t sum = 0;
        for (int64_t c = 0; c < k; ++c) {
          const acc_t t = fc_exp(static_cast<acc_t>(row[c]) - mx);
          yrow[c] = t;
          sum += restraint_power(t, pp);
        }
        const acc_t inv_norm = acc_t(1) / restraint_root(sum, pp);
        for (int64_t c = 0; c < k; ++c) yrow[c] = static_cast<acc_t>(yrow[c]) * inv_norm;
      }
    });
  });
  return out;
}

at::Tensor restraint_backward_cpu(const at::Tensor& grad_out, const at::Tensor& out, double p) {
  check_restraint_backward_args(grad_out, out, p);
  const auto gc = grad_out.contiguous();
  const auto yc = out.contiguous();
  auto grad_in = at::empty(yc.sizes(), yc.options());
  const int64_t n = yc.size(0), k = yc.size(1);
  AT_DISPATCH_FLOATING_TYPES(yc.scalar_type(), "restraint_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* g = gc.const_data_ptr<scalar_t>();
    const scalar_t* y = yc.const_data_ptr<scalar_t>();
    scalar_t* gx = grad_in.mutable_data_ptr<scalar_t>();
    const acc_t pp = static_cast<acc_t>(p);
    at::parallel_for(0, n, std::max<int64_t>(1, 4096 / k), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t o = i * k;
        acc_t g_dot_y = 0;
        for (int64_t c = 0; c < k; ++c) g_dot_y += static_cast<acc_t>(g[o + c]) * y[o + c];
        for (int64_t c = 0; c < k; ++c)
          gx[o + c] = restraint_input_grad<acc_t>(y[o + c], g[o + c], g_dot_y, pp);
      }
    });
  });
  return grad_in;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastclust, CPU, m) {
  m.impl("restraint", &restraint_cpu);
  m.impl("restraint_backward", &restraint_backward_cpu);
}

}  // namespace fastclust
