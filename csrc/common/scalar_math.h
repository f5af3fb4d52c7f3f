#pragma once
// Per-element math is written once and compiled for both the CPU kernels and the CUDA
// kernels, so the CPU tests exercise the arithmetic the GPU runs.
#ifdef __CUDACC__
#define FC_HD __host__ __device__ __forceinline__
#else
#define FC_HD inline
#endif

#include <math.h>

namespace fastclust {

// Overloads rather than std:: functions: std:: math is not callable from device code,
// and the float versions must stay in float (no silent promotion to double).
FC_HD float fc_exp(float x) { return expf(x); }
FC_HD double fc_exp(double x) { return exp(x); }
FC_HD float fc_log(float x) { return logf(x); }
FC_HD double fc_log(double x) { return log(x); }
FC_HD float fc_sqrt(float x) { return sqrtf(x); }
FC_HD double fc_sqrt(double x) { return sqrt(x); }
FC_HD float fc_pow(float x, float y) { return powf(x, y); }
FC_HD double fc_pow(double x, double y) { return pow(x, y); }
FC_HD float fc_max(float a, float b) { return fmaxf(a, b); }
FC_HD double fc_max(double a, double b) { return fmax(a, b); }

// Floor of a row or column norm in a cosine, as torch.nn.functional.normalize uses: a zero
// vector normalises to the zero vector instead of NaN.
constexpr double kNormFloor = 1e-12;

// Whether ||x|| lies below the floor, from ||x||^2 (compared squared: no root is taken).
template <typename T>
FC_HD bool norm_below_floor(T sum_of_squares) {
  return sum_of_squares < static_cast<T>(kNormFloor * kNormFloor);
}

// 1 / max(||x||, floor) from ||x||^2.
template <typename T>
FC_HD T inverse_clamped_norm(T sum_of_squares) {
  return norm_below_floor(sum_of_squares) ? static_cast<T>(1 / kNormFloor) : T(1) / fc_sqrt(sum_of_squares);
}

// x - x is 0 for finite x and NaN for +-inf or NaN; returning it lets a non-finite
// similarity poison a loss sum instead of being silently dropped by a comparison.
template <typename T>
FC_HD T nan_unless_finite(T x) { return x - x; }

template <typename T>
FC_HD bool is_finite(T x) { return x - x == T(0); }

}  // namespace fastclust
