#pragma once
// Argument validation of the restraint ops, shared by their CPU and CUDA entry points.
#include "common/checks.h"

namespace fastclust {

inline void check_restraint_args(const at::Tensor& feats, double p) {
  check_matrix(feats, "feats");
  check_positive(p, "p");
}

inline void check_restraint_backward_args(const at::Tensor& grad_out, const at::Tensor& out,
                                          double p) {
  check_matrix(out, "out");
  check_same_device_dtype(out, "out", grad_out, "grad_out");
  FC_CHECK(grad_out.sizes() == out.sizes(), "grad_out has shape ", grad_out.sizes(),
              " but out has shape ", out.sizes());
  check_positive(p, "p");
}

}  // namespace fastclust
