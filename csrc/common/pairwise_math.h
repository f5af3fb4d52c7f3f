#pragma once
// Per-pair math of the pairwise clustering losses, shared by CPU and CUDA kernels.
// A pair (i, j) has similarity s = L_i . L_j; it is selected as positive when its selection
// similarity exceeds u and as negative when it is below l (DAC Eq. 6-10, DSEC Eq. 8-12).
#include "common/scalar_math.h"

namespace fastclust {

enum PairLossKind : int64_t {
  kDacLog = 0,      // "dac": -log(clamp(s, eps, 1)) / -log(clamp(1 - s, eps, 1)), select on s
  kDsecSquared = 1  // "dsec": (1 - s)^2 / s^2, select on cos(L_i, L_j)
};

// +1 positive, -1 negative, 0 ignored. NaN compares false both ways: ignored here, and the
// caller poisons the loss with it separately.
template <typename T>
FC_HD int select_pair(T selection_similarity, T u, T l) {
  return selection_similarity > u ? 1 : (selection_similarity < l ? -1 : 0);
}

template <typename T>
FC_HD T clamp_unit(T x, T eps) { return x < eps ? eps : (x > T(1) ? T(1) : x); }

// Strictly inside (eps, 1): the clamp passes its gradient there and nowhere else, bounds
// included (fastclust.reference spells the same rule out, independent of torch.clamp's version).
template <typename T>
FC_HD bool in_clamp_range(T x, T eps) { return x > eps && x < T(1); }

template <typename T>
FC_HD T pair_loss(int64_t kind, int selection, T s, T eps) {
  if (selection == 0) return T(0);
  if (kind == kDacLog) {
    return selection > 0 ? -fc_log(clamp_unit(s, eps)) : -fc_log(clamp_unit(T(1) - s, eps));
  }
  const T r = selection > 0 ? T(1) : T(0);
  return (r - s) * (r - s);
}

// d pair_loss / d s.
template <typename T>
FC_HD T pair_loss_grad(int64_t kind, int selection, T s, T eps) {
  if (selection == 0) return T(0);
  if (kind == kDacLog) {
    if (selection > 0) return in_clamp_range(s, eps) ? -T(1) / s : T(0);
    return in_clamp_range(T(1) - s, eps) ? T(1) / (T(1) - s) : T(0);
  }
  const T r = selection > 0 ? T(1) : T(0);
  return T(2) * (s - r);
}

// What a pair is selected on: s itself for DAC, the cosine for DSEC.
template <typename T>
FC_HD T selection_similarity(int64_t kind, T s, T inv_norm_i, T inv_norm_j) {
  return kind == kDsecSquared ? s * inv_norm_i * inv_norm_j : s;
}

}  // namespace fastclust
