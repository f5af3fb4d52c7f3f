#pragma once
// CPU-only helpers shared by the CPU kernels.

// The hot loops are compiled twice, for baseline x86-64 and for AVX2 + FMA (x86-64-v3), and
// the loader picks the clone the machine supports: wheels stay portable, and the common
// machine gets 8-wide vectors. Each clone is deterministic on its own.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FC_CPU_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FC_CPU_MULTIVERSION
#endif

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastclust {

// s[j] = a . cols[j0 + j] for j < jn, with the m columns stored transposed (k x m) so that a
// row's similarities to a column tile come out of contiguous, vectorisable loops. Features are
// summed in order, so a . b and b . a come out bit-identical.
template <typename T>
inline void similarity_row(const T* __restrict__ a, const T* __restrict__ cols_t, int64_t m,
                           int64_t k, int64_t j0, int64_t jn, T* __restrict__ s) {
  for (int64_t j = 0; j < jn; ++j) s[j] = T(0);
  for (int64_t c = 0; c < k; ++c) {
    const T ac = a[c];
    const T* __restrict__ bc = cols_t + c * m + j0;
    for (int64_t j = 0; j < jn; ++j) s[j] += ac * bc[j];
  }
}

// combine-reduction of term(0), ..., term(len - 1) over kLanes independent lanes (then the
// tail, then the lanes, in a fixed order): vectorisable without reassociating one running
// value, and the same bits whatever the machine.
template <typename T, typename Combine, typename Term>
inline T reduce_lanes(int64_t len, T init, const Combine& combine, const Term& term) {
  constexpr int kLanes = 8;
  T lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = init;
  int64_t j = 0;
  for (; j + kLanes <= len; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] = combine(lanes[l], term(j + l));
  T total = init;
  for (; j < len; ++j) total = combine(total, term(j));
  for (int l = 0; l < kLanes; ++l) total = combine(total, lanes[l]);
  return total;
}

template <typename T>
inline T plus(T a, T b) { return a + b; }

template <typename T>
inline T dot_lanes(const T* __restrict__ x, const T* __restrict__ y, int64_t len) {
  return reduce_lanes(len, T(0), plus<T>, [&](int64_t j) { return x[j] * y[j]; });
}

// out[0..8) = exp(in[0..8) - shift), written with GCC vector extensions so that it is
// vectorised whatever the auto-vectoriser decides (a library exp is a call per element):
// AVX2 in the x86-64-v3 clone, SSE2 pairs otherwise. Cody-Waite reduction to 2^n exp(r),
// |r| <= ln2 / 2, and Cephes' polynomial: within 1 ulp of expf. Results below 2^-126 flush
// to 0 (terms < 1e-38 of a sum that holds a term near 1); NaN stays NaN, -inf gives 0.
inline void exp8(const float* in, float shift, float* out) {
  typedef float Float8 __attribute__((vector_size(32)));
  typedef int32_t Int8 __attribute__((vector_size(32)));
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer n,
                                         // which lands in the low mantissa bits
  Float8 x;
  std::memcpy(&x, in, sizeof x);
  x = x - shift;
  const Float8 t = x * kLog2e + kRound;
  const Float8 n = t - kRound;
  const Float8 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  Float8 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const Int8 scale_bits = ((Int8)t - (Int8)(t - t + kRound) + 127) << 23;
  Float8 y = p * (Float8)scale_bits;
  const Float8 zero = {}, inf = zero + INFINITY;
  y = x < -87.0f ? zero : y;  // below the normal range, and -inf
  y = x > 88.0f ? inf : y;    // above it
  std::memcpy(out, &y, sizeof y);
}

// out[j] = exp(x[j] - shift) for j < len.
inline void exp_shifted(const float* x, float shift, float* out, int64_t len) {
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) exp8(x + j, shift, out + j);
  if (j < len) {
    float in_tail[8] = {}, out_tail[8];
    std::memcpy(in_tail, x + j, (len - j) * sizeof(float));
    exp8(in_tail, shift, out_tail);
    std::memcpy(out + j, out_tail, (len - j) * sizeof(float));
  }
}

// float64 is the precision of the tests, not of the hot path: the library exp.
inline void exp_shifted(const double* x, double shift, double* out, int64_t len) {
  for (int64_t j = 0; j < len; ++j) out[j] = std::exp(x[j] - shift);
}

// acc[f] += sum_{j < jn} w_j cols[j0 + j][f], where tile_weights(j0, jn, s, w) turns the
// similarities s_j = a . cols[j0 + j] into the weights w_j: one row's share of a backward
// pass over one column tile (jn <= kMaxTile). The columns come both row-major (cols, for the
// sum, an axpy per column: independent vector chains over f) and transposed (cols_t, for s).
// Callers walk column tiles in the outer loop and a tile of rows in the inner one, so the
// column tile stays in cache.
template <int64_t kMaxTile, typename T, typename TileWeights>
inline void accumulate_weighted_columns(const T* __restrict__ a, const T* __restrict__ cols,
                                        const T* __restrict__ cols_t, int64_t m, int64_t k,
                                        int64_t j0, int64_t jn, const TileWeights& tile_weights,
                                        T* __restrict__ acc) {
  T s[kMaxTile], w[kMaxTile];
  similarity_row(a, cols_t, m, k, j0, jn, s);
  tile_weights(j0, jn, s, w);
  for (int64_t j = 0; j < jn; ++j) {
    const T wj = w[j];
    const T* __restrict__ col = cols + (j0 + j) * k;
    for (int64_t f = 0; f < k; ++f) acc[f] += wj * col[f];
  }
}

}  // namespace fastclust
