#pragma once
// Argument validation of the pairwise loss ops, shared by their CPU and CUDA entry points.
#include "common/checks.h"
#include "common/pairwise_math.h"

namespace fastclust {

inline void check_pairwise_args(const at::Tensor& rows, const std::optional<at::Tensor>& cols,
                                double u, double l, int64_t kind, double eps) {
  check_matrix(rows, "feats");
  if (cols.has_value()) {
    check_matrix(*cols, "cols");
    check_same_device_dtype(rows, "feats", *cols, "cols");
    FC_CHECK(cols->size(1) == rows.size(1), "cols has ", cols->size(1),
                " features per row but feats has ", rows.size(1));
  }
  check_finite(u, "u");
  check_finite(l, "l");
  FC_CHECK(l <= u, "the lower threshold l (", l,
              ") must not exceed the upper threshold u (", u, ")");
  FC_CHECK(kind >= 0 && kind < kNumPairLossKinds, "kind must be 0 (DAC) or 1 (DSEC), got ",
              kind);
  FC_CHECK(std::isfinite(eps) && eps >= 0 && eps < 1, "eps must be in [0, 1), got ", eps);
}

inline void check_pairwise_backward_args(const at::Tensor& grad_sum, const at::Tensor& rows,
                                         const std::optional<at::Tensor>& cols, double u, double l,
                                         int64_t kind, double eps) {
  check_pairwise_args(rows, cols, u, l, kind, eps);
  check_scalar_grad(grad_sum, rows, "grad_sum");
}

}  // namespace fastclust
