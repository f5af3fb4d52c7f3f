#pragma once
// Math of the column-statistics losses (PICA Eq. 5-12, the CC/DCSC cluster-level loss), shared
// by the CPU and CUDA kernels. The inputs are two (n, k) matrices a and b, seen as the 2k
// columns of V = [a | b]; the losses depend on them only through column statistics
// (a Gram matrix of columns, squared column norms, column sums), which is what makes a single
// pass over n enough, forward and backward.
#include "common/scalar_math.h"

namespace fastclust {

enum ColumnLossKind : int64_t {
  kPica = 0,                // "pica". rows: columns of a, against columns of b; positive: the
                            // same index
  kClusterContrastive = 1   // "cluster_contrastive". rows and columns: all 2k columns of V;
                            // positive: the twin j +/- k, the column itself left out of the
                            // denominator
};

// Floor of a view's total mass in z = sums / total: an all-zero view gives z = 0, not NaN.
constexpr double kMassFloor = 1e-12;

// d loss / d ||x||^2 given reduced = sum of dloss/dsim * sim over the similarities that x's
// inverse norm u scales (d sim / d u = sim / u, d u / d sq = -u^3 / 2); zero where floored.
template <typename T>
FC_HD T sq_norm_grad(T sq_norm, T inv_norm, T reduced) {
  return norm_below_floor(sq_norm) ? T(0) : T(-0.5) * inv_norm * inv_norm * reduced;
}

// Rows of the similarity matrix (PICA: k, cluster contrastive: 2k).
FC_HD int64_t similarity_rows(int64_t kind, int64_t k) { return kind == kPica ? k : 2 * k; }

// Column of row a's positive.
FC_HD int64_t positive_column(int64_t kind, int64_t a, int64_t k) {
  return kind == kPica ? a : (a < k ? a + k : a - k);
}

FC_HD bool in_denominator(int64_t kind, int64_t a, int64_t b) {
  return kind == kPica || a != b;
}

// Where the squared norm of similarity column b sits in sq_norms (PICA: b's columns follow a's).
FC_HD int64_t column_norm_index(int64_t kind, int64_t b, int64_t k) {
  return kind == kPica ? k + b : b;
}

// d (cross-entropy averaged over `rows` rows) / d sim_ab = (softmax_ab - [b positive]) / rows,
// with softmax_ab = 0 for a column outside the denominator.
template <typename T>
FC_HD T cross_entropy_grad(T softmax, bool positive, T inv_rows) {
  return (softmax - (positive ? T(1) : T(0))) * inv_rows;
}

// Entropy of z with 0 log 0 = 0: the term -z log z of an entry z = 0 is the constant 0 and
// passes no gradient (its one-sided slope is infinite). A negative z (negative column sum)
// gives NaN rather than a silently meaningless entropy.
template <typename T>
FC_HD T z_log_z(T z) { return z == T(0) ? T(0) : z * fc_log(z); }

// d H / d z with H = -sum z log z.
template <typename T>
FC_HD T entropy_grad_z(T z) { return z == T(0) ? T(0) : -(fc_log(z) + T(1)); }

// z = sums / max(mass, floor); the floor passes no gradient to the mass.
template <typename T>
FC_HD T floored_mass(T mass) { return mass < T(kMassFloor) ? T(kMassFloor) : mass; }

// d H / d sums_b from g_b = dH/dz_b and g.z = sum_a g_a z_a.
template <typename T>
FC_HD T entropy_grad_sum(T g_b, T g_dot_z, T mass) {
  const T through_mass = mass < T(kMassFloor) ? T(0) : g_dot_z;
  return (g_b - through_mass) / floored_mass(mass);
}

// Entry (row, col) of the 2k x 2k matrix W with grad_V = V W + ... (common/column_host.h),
// read from the Gram's gradient g. Cross Gram a^T b (g is k x k): grad_a = b g^T and
// grad_b = a g, so W = [[0, g], [g^T, 0]]; the zero blocks are skipped by the callers and
// never read here. Full Gram V^T V (g is 2k x 2k): W = g + g^T.
template <typename T>
FC_HD T backward_weight(const T* g, int64_t k, bool full_gram, int64_t row, int64_t col) {
  if (full_gram) return g[row * 2 * k + col] + g[col * 2 * k + row];
  return row < k ? g[row * k + (col - k)] : g[col * k + (row - k)];
}

}  // namespace fastclust
