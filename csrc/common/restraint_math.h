#pragma once
// DAC's restraint layer / DSEC's constraint layer C_p, per element:
//   t = exp(x - max(x)),  y = t / ||t||_p.
// Backward needs only y: dL/dx_i = y_i g_i - (g . y) y_i^p. Writing y_i * y_i^(p-1) as
// y_i^p keeps p < 1 finite where exp underflows to y_i = 0.
#include "common/scalar_math.h"

namespace fastclust {

template <typename T>
FC_HD T restraint_power(T t, T p) {
  if (p == T(2)) return t * t;
  if (p == T(1)) return t;
  return fc_pow(t, p);
}

template <typename T>
FC_HD T restraint_root(T sum_of_powers, T p) {
  if (p == T(2)) return fc_sqrt(sum_of_powers);
  if (p == T(1)) return sum_of_powers;
  return fc_pow(sum_of_powers, T(1) / p);
}

template <typename T>
FC_HD T restraint_input_grad(T y, T g, T g_dot_y, T p) {
  return y * g - g_dot_y * restraint_power(y, p);
}

}  // namespace fastclust
