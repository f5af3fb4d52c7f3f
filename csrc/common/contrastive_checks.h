#pragma once
// Argument validation of the contrastive ops (row_logsumexp, normalize_rows), shared by their
// CPU and CUDA entry points.
#include "common/checks.h"

namespace fastclust {

inline void check_normalize_rows_args(const at::Tensor& x) { check_matrix(x, "x"); }

inline void check_normalize_rows_backward_args(const at::Tensor& grad_out, const at::Tensor& x) {
  check_matrix(x, "x");
  check_same_device_dtype(x, "x", grad_out, "grad_out");
  TORCH_CHECK(grad_out.sizes() == x.sizes(), "fastclust: grad_out has shape ", grad_out.sizes(),
              " but x has shape ", x.sizes());
}

// Any self_offset is valid (a negative one leaves every column in), so it is not checked.
inline void check_row_logsumexp_args(const at::Tensor& queries, const at::Tensor& keys, double tau) {
  check_matrix(queries, "queries");
  check_matrix(keys, "keys");
  check_same_device_dtype(queries, "queries", keys, "keys");
  TORCH_CHECK(keys.size(1) == queries.size(1), "fastclust: keys has ", keys.size(1),
              " features per row but queries has ", queries.size(1));
  check_positive(tau, "tau");
}

// A per-row tensor (R,) on the queries' device.
inline void check_row_vector(const at::Tensor& v, const at::Tensor& queries, const char* name) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == queries.size(0), "fastclust: ", name,
              " must have shape (", queries.size(0), ",) (one value per query row), got ",
              v.sizes());
  TORCH_CHECK(v.device() == queries.device(), "fastclust: ", name, " is on ", v.device(),
              " but queries is on ", queries.device());
  TORCH_CHECK(at::isFloatingType(v.scalar_type()), "fastclust: ", name,
              " must be a floating tensor, got ", v.scalar_type());
}

inline void check_row_logsumexp_backward_args(const at::Tensor& grad_lse, const at::Tensor& queries,
                                              const at::Tensor& keys, const at::Tensor& lse,
                                              double tau) {
  check_row_logsumexp_args(queries, keys, tau);
  check_row_vector(grad_lse, queries, "grad_lse");
  check_row_vector(lse, queries, "lse");
}

}  // namespace fastclust
