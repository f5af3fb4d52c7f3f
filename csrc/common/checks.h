#pragma once
// Argument validation shared by the CPU and CUDA entry points: every op checks its
// inputs here first, so both devices reject the same inputs with the same message.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <optional>

#include <cmath>

namespace fastclust {

inline void check_float_dtype(const at::Tensor& t, const char* name) {
  const auto dt = t.scalar_type();
  const bool full = dt == at::kFloat || dt == at::kDouble;
  const bool half = dt == at::kHalf || dt == at::kBFloat16;
  TORCH_CHECK(full || (half && t.is_cuda()), "fastclust: ", name,
              " must be float32 or float64 (float16/bfloat16 on CUDA only), got ", dt, " on ",
              t.device());
}

// An (n, k) matrix with n >= 1 and k >= 1 of a supported floating dtype.
inline void check_matrix(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, "fastclust: ", name, " must be a 2-D (n, k) tensor, got shape ",
              t.sizes());
  TORCH_CHECK(t.size(0) >= 1, "fastclust: ", name, " must have at least one row, got shape ",
              t.sizes());
  TORCH_CHECK(t.size(1) >= 1, "fastclust: ", name,
              " must have at least one column (k >= 1), got shape ", t.sizes());
  check_float_dtype(t, name);
}

inline void check_same_device_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                                    const char* b_name) {
  TORCH_CHECK(a.device() == b.device(), "fastclust: ", b_name, " is on ", b.device(), " but ",
              a_name, " is on ", a.device());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "fastclust: ", b_name, " has dtype ",
              b.scalar_type(), " but ", a_name, " has dtype ", a.scalar_type());
}

// Two views of the same batch: same shape, device and dtype.
inline void check_same_matrix(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                              const char* b_name) {
  check_matrix(a, a_name);
  check_matrix(b, b_name);
  check_same_device_dtype(a, a_name, b, b_name);
  TORCH_CHECK(a.sizes() == b.sizes(), "fastclust: ", b_name, " has shape ", b.sizes(), " but ",
              a_name, " has shape ", a.sizes());
}

inline void check_finite(double v, const char* name) {
  TORCH_CHECK(std::isfinite(v), "fastclust: ", name, " must be finite, got ", v);
}

inline void check_positive(double v, const char* name) {
  TORCH_CHECK(std::isfinite(v) && v > 0, "fastclust: ", name, " must be a finite number > 0, got ",
              v);
}

// A 0-dim upstream gradient on the device of the op's input.
inline void check_scalar_grad(const at::Tensor& g, const at::Tensor& like, const char* name) {
  TORCH_CHECK(g.dim() == 0, "fastclust: ", name, " must be a 0-dim tensor, got shape ", g.sizes());
  TORCH_CHECK(g.device() == like.device(), "fastclust: ", name, " is on ", g.device(),
              " but the features are on ", like.device());
}

}  // namespace fastclust
