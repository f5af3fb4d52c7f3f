#pragma once
// Argument validation of the pairwise loss ops, shared by their CPU and CUDA entry points.
#include "common/checks.h"
#include "common/pairwise_math.h"

namespace fastclust {

// A selector: one row per row of `side`, on its device and dtype.
inline void check_selector(const at::Tensor& selector, const char* name, const at::Tensor& side,
                           const char* side_name) {
  check_matrix(selector, name);
  check_same_device_dtype(side, side_name, selector, name);
  FC_CHECK(selector.size(0) == side.size(0), name, " has ", selector.size(0), " rows but ",
           side_name, " has ", side.size(0));
}

constexpr std::pair<const char*, int64_t> kPairLossKindNames[] = {{"dac", kDacLog},
                                                                   {"dsec", kDsecSquared}};

// Checks the arguments; returns the PairLossKind named `kind`.
inline int64_t check_pairwise_args(const at::Tensor& rows, const std::optional<at::Tensor>& cols,
                                   const std::optional<at::Tensor>& select_rows,
                                   const std::optional<at::Tensor>& select_cols, double u,
                                   double l, c10::string_view kind, double eps) {
  check_matrix(rows, "feats");
  if (cols.has_value()) {
    check_matrix(*cols, "cols");
    check_same_device_dtype(rows, "feats", *cols, "cols");
    FC_CHECK(cols->size(1) == rows.size(1), "cols has ", cols->size(1),
                " features per row but feats has ", rows.size(1));
  }
  if (select_rows.has_value()) {
    check_selector(*select_rows, "select", rows, "feats");
    FC_CHECK(cols.has_value() == select_cols.has_value(),
             "select_cols must be given exactly when cols is (a rectangular block selects on a "
             "rectangular block)");
    if (select_cols.has_value()) {
      check_selector(*select_cols, "select_cols", *cols, "cols");
      FC_CHECK(select_cols->size(1) == select_rows->size(1), "select_cols has ",
               select_cols->size(1), " features per row but select has ", select_rows->size(1));
    }
  } else {
    FC_CHECK(!select_cols.has_value(), "select_cols needs select_rows");
  }
  check_finite(u, "u");
  check_finite(l, "l");
  FC_CHECK(l <= u, "the lower threshold l (", l,
              ") must not exceed the upper threshold u (", u, ")");
  FC_CHECK(std::isfinite(eps) && eps >= 0 && eps < 1, "eps must be in [0, 1), got ", eps);
  return kind_named(kind, kPairLossKindNames);
}

inline int64_t check_pairwise_backward_args(const at::Tensor& grad_sum, const at::Tensor& rows,
                                            const std::optional<at::Tensor>& cols,
                                            const std::optional<at::Tensor>& select_rows,
                                            const std::optional<at::Tensor>& select_cols,
                                            double u, double l, c10::string_view kind, double eps) {
  check_scalar_grad(grad_sum, rows, "grad_sum");
  return check_pairwise_args(rows, cols, select_rows, select_cols, u, l, kind, eps);
}

}  // namespace fastclust
