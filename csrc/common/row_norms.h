#pragma once
// Host-side preparation shared by the CPU and CUDA pairwise entry points.
#include <ATen/ATen.h>

#include "common/pairwise_math.h"

namespace fastclust {

// 1 / max(||x_i||_2, floor) per row, in the kernels' accumulation dtype.
inline at::Tensor inverse_row_norms(const at::Tensor& x, at::ScalarType acc_dtype) {
  return x.to(acc_dtype).norm(2, {1}).clamp_min(kNormFloor).reciprocal();
}

}  // namespace fastclust
