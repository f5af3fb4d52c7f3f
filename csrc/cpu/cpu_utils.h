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

#include <cstdint>

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

// Independent lanes keep the dot product vectorisable without reassociating a single sum.
template <typename T>
inline T dot_lanes(const T* __restrict__ x, const T* __restrict__ y, int64_t len) {
  constexpr int kLanes = 8;
  T lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= len; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += x[j + l] * y[j + l];
  T total = 0;
  for (; j < len; ++j) total += x[j] * y[j];
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// acc[f] += sum_{j < jn} weight(j0 + j, s_j) cols[j0 + j][f] with s_j = a . cols[j0 + j]: one
// row's share of a backward pass over one column tile (jn <= kMaxTile). Callers walk column
// tiles in the outer loop and a tile of rows in the inner one, so the column tile stays in cache.
template <int64_t kMaxTile, typename T, typename Weight>
inline void accumulate_weighted_columns(const T* __restrict__ a, const T* __restrict__ cols_t,
                                        int64_t m, int64_t k, int64_t j0, int64_t jn,
                                        const Weight& weight, T* __restrict__ acc) {
  T s[kMaxTile], w[kMaxTile];
  similarity_row(a, cols_t, m, k, j0, jn, s);
  for (int64_t j = 0; j < jn; ++j) w[j] = weight(j0 + j, s[j]);
  for (int64_t c = 0; c < k; ++c) acc[c] += dot_lanes(w, cols_t + c * m + j0, jn);
}

}  // namespace fastclust
