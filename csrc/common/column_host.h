#pragma once
// Host-side code of the column-statistics ops shared by the CPU and CUDA entry points: the
// preparation of the backward, and the fused statistics + loss forward (fused_column_loss). The backward of (gram, sq_norms, sums) over V = [a | b] is, per row i,
//   grad_V[i, :] = V[i, :] W + 2 V[i, :] * grad_sq_norms + grad_sums,
// with W the 2k x 2k matrix of backward_weight (common/column_math.h): one pass over n that
// reads each input row once.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <optional>
#include <tuple>

#include "common/column_checks.h"

namespace fastclust {

// An optional gradient, contiguous, in the accumulation dtype.
inline at::Tensor column_vector(const std::optional<at::Tensor>& v, at::ScalarType acc_dtype) {
  return v.has_value() ? v->to(acc_dtype).contiguous() : at::Tensor();
}

template <typename T>
const T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

// Validated, contiguous inputs of column_stats_backward; gradients in the accumulation dtype,
// undefined where absent.
struct StatsBackwardInputs {
  at::Tensor a, b, grad_gram, grad_sq_norms, grad_sums;
  int64_t n, k;
};

inline StatsBackwardInputs prepare_stats_backward(const std::optional<at::Tensor>& grad_gram,
                                                  const std::optional<at::Tensor>& grad_sq_norms,
                                                  const std::optional<at::Tensor>& grad_sums,
                                                  const at::Tensor& a, const at::Tensor& b,
                                                  bool full_gram) {
  check_column_stats_backward_args(grad_gram, grad_sq_norms, grad_sums, a, b, full_gram);
  const int64_t k = a.size(1);
  const auto acc_dtype = at::toOpMathType(a.scalar_type());
  return {a.contiguous(), b.contiguous(), column_vector(grad_gram, acc_dtype),
          column_vector(grad_sq_norms, acc_dtype), column_vector(grad_sums, acc_dtype), a.size(0), k};
}

// The local (non-distributed) loss in one op, shared by the CPU and CUDA entry points: the
// device's column_stats then its column_loss_from_stats, with no dispatcher or autograd between
// them. At the sizes people train with the passes take tens of microseconds, so the op call
// and autograd node this saves are a good part of the time.
template <typename Stats, typename Loss>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> fused_column_loss(
    const at::Tensor& a, const at::Tensor& b, c10::string_view kind, double tau, double weight,
    const Stats& stats, const Loss& loss) {
  const auto [gram, sq_norms, sums] = stats(a, b, column_loss_kind(kind) == kClusterContrastive);
  return loss(gram, sq_norms, sums, kind, tau, weight);
}

}  // namespace fastclust
