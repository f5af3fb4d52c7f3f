#pragma once
// The per-element math of the contrastive ops, shared by the CPU and CUDA kernels: row
// normalisation's gradient (the norm floor is common/scalar_math.h's) and the row-wise
// log-sum-exp of scaled similarities x_rc = (q_r . k_c) / tau. A row's sum is kept as a running pair (max m, sum l of exp(x - m)) into which
// tiles of columns are folded one at a time (flash attention's online softmax), so that the
// R x C matrix is never held: lse = m + log(l). Backward recomputes x and uses the softmax
// weight p_rc = exp(x_rc - lse_r).
#include "common/scalar_math.h"

namespace fastclust {

// Column c is row r's own column, left out of its sum, when c == r + self_offset; a negative
// self_offset leaves every column in. Row r of a local block against keys gathered from
// several ranks has its own column at r + (the rank's first global row).
FC_HD bool is_self_column(int64_t r, int64_t c, int64_t self_offset) {
  return self_offset >= 0 && c == r + self_offset;
}

template <typename T>
FC_HD T minus_infinity() { return static_cast<T>(-INFINITY); }

// A max that returns NaN when either side is NaN (fmax would drop it), so that a non-finite
// similarity turns the row's log-sum-exp into NaN instead of vanishing.
template <typename T>
FC_HD T nan_max(T a, T b) { return (a != a || a > b) ? a : b; }

// Folds a partial (max2, sum2) into the running (max, sum). An empty side has max -inf and
// sum 0; the early returns keep exp(-inf - -inf) = NaN out of the sum.
template <typename T>
FC_HD void lse_merge(T& max, T& sum, T max2, T sum2) {
  if (max2 == minus_infinity<T>()) return;
  if (max == minus_infinity<T>()) {
    max = max2;
    sum = sum2;
    return;
  }
  const T m = nan_max(max, max2);
  sum = sum * fc_exp(max - m) + sum2 * fc_exp(max2 - m);
  max = m;
}

// The log-sum-exp of a running pair: -inf for a row with no column left, +inf for a row with
// a +inf entry (whose sum holds exp(inf - inf) = NaN), as torch.logsumexp.
template <typename T>
FC_HD T lse_value(T max, T sum) {
  return (max == minus_infinity<T>() || max == -minus_infinity<T>()) ? max : max + fc_log(sum);
}

// log p_rc = s_rc / tau - lse_r, -inf for a left-out column. d(g_r lse_r)/d s_rc is
// g_r exp(log p_rc) / tau; the exp is the caller's (the CPU kernels use a vectorisable one).
template <typename T>
FC_HD T lse_log_weight(T s, T inv_tau, T lse, bool excluded) {
  return excluded ? minus_infinity<T>() : s * inv_tau - lse;
}

// d/dx of y = x / max(||x||, floor) applied to g, per element: (g - y (g . y)) / ||x|| where
// the norm reaches the floor; below it the denominator is the constant floor, so g / floor
// (torch.clamp_min passes its gradient where norm >= floor).
template <typename T>
FC_HD T normalize_input_grad(T g, T y, T g_dot_y, T inv_norm, bool norm_at_floor) {
  return norm_at_floor ? g * inv_norm : (g - y * g_dot_y) * inv_norm;
}

}  // namespace fastclust
