#pragma once
// Host-side preparation of the column-statistics backward, shared by the CPU and CUDA entry
// points. The backward of (gram, sq_norms, sums) over V = [a | b] is, per row i,
//   grad_V[i, :] = V[i, :] W + 2 V[i, :] * grad_sq_norms + grad_sums,
// with W the 2k x 2k matrix below: one pass over n that reads each input row once.
#include <ATen/ATen.h>

#include <optional>

namespace fastclust {

// Cross Gram a^T b: grad_a = b grad^T and grad_b = a grad, so W holds grad^T in its lower-left
// block and grad in its upper-right one; its diagonal blocks are never read (left unset).
// Full Gram V^T V: W = grad + grad^T. Undefined when no gradient reaches the Gram. The copies
// are of k x k matrices, negligible beside the pass over n.
inline at::Tensor backward_weights(const std::optional<at::Tensor>& grad_gram, int64_t k,
                                   bool full_gram, at::ScalarType acc_dtype) {
  if (!grad_gram.has_value()) return {};
  const auto g = grad_gram->to(acc_dtype);
  if (full_gram) return (g + g.t()).contiguous();
  auto w = at::empty({2 * k, 2 * k}, g.options());
  w.slice(0, k, 2 * k).slice(1, 0, k).copy_(g.t());
  w.slice(0, 0, k).slice(1, k, 2 * k).copy_(g);
  return w;
}

// An optional per-column gradient as a contiguous vector of the accumulation dtype.
inline at::Tensor column_vector(const std::optional<at::Tensor>& v, at::ScalarType acc_dtype) {
  return v.has_value() ? v->to(acc_dtype).contiguous() : at::Tensor();
}

}  // namespace fastclust
