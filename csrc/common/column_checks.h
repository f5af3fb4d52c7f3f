#pragma once
// Argument validation of the column-statistics ops, shared by their CPU and CUDA entry points.
// The ops serve asv_similarity / pica_loss (views p1, p2) and cluster_contrastive_loss (views
// c_a, c_b), so messages name a view by both.
#include "common/checks.h"
#include "common/column_math.h"

namespace fastclust {

constexpr const char* kFirstView = "the first view (p1 / c_a)";
constexpr const char* kSecondView = "the second view (p2 / c_b)";

inline void check_column_views(const at::Tensor& a, const at::Tensor& b) {
  check_same_matrix(a, kFirstView, b, kSecondView);
}

// Side of the Gram matrix: a^T b (k x k), or the Gram of all 2k columns of [a | b].
inline int64_t gram_side(int64_t k, bool full_gram) { return full_gram ? 2 * k : k; }

inline void check_stat(const at::Tensor& t, const char* name, at::IntArrayRef shape,
                       const at::Tensor& like, const char* like_name) {
  FC_CHECK(t.sizes() == shape, name, " must have shape ", shape, ", got ", t.sizes());
  FC_CHECK(t.device() == like.device(), name, " is on ", t.device(), " but ", like_name, " is on ",
           like.device());
  FC_CHECK(at::isFloatingType(t.scalar_type()), name, " must be a floating tensor, got ",
           t.scalar_type());
}

inline void check_column_stats_backward_args(const std::optional<at::Tensor>& grad_gram,
                                             const std::optional<at::Tensor>& grad_sq_norms,
                                             const std::optional<at::Tensor>& grad_sums,
                                             const at::Tensor& a, const at::Tensor& b,
                                             bool full_gram) {
  check_column_views(a, b);
  const int64_t k = a.size(1), side = gram_side(k, full_gram);
  if (grad_gram.has_value()) check_stat(*grad_gram, "grad_gram", {side, side}, a, kFirstView);
  if (grad_sq_norms.has_value()) check_stat(*grad_sq_norms, "grad_sq_norms", {2 * k}, a, kFirstView);
  if (grad_sums.has_value()) check_stat(*grad_sums, "grad_sums", {2 * k}, a, kFirstView);
}

constexpr std::pair<const char*, int64_t> kColumnLossKindNames[] = {
    {"pica", kPica}, {"cluster_contrastive", kClusterContrastive}};

inline int64_t column_loss_kind(c10::string_view name) { return kind_named(name, kColumnLossKindNames); }

// Checks the arguments of a loss of `kind` (a ColumnLossKind); returns k, the number of clusters.
inline int64_t check_column_loss_args(const at::Tensor& gram, const at::Tensor& sq_norms,
                                      const at::Tensor& sums, int64_t kind, double tau,
                                      double weight) {
  FC_CHECK(sums.dim() == 1 && sums.size(0) % 2 == 0,
           "sums must hold the 2k column sums of both views, got shape ", sums.sizes());
  const int64_t k = sums.size(0) / 2;
  FC_CHECK(k >= 2, "the loss needs k >= 2 clusters (a softmax over one cluster is constant), got k = ",
           k);
  const auto dt = sums.scalar_type();
  FC_CHECK(dt == at::kFloat || dt == at::kDouble,
           "sums must be float32 or float64 (the statistics' dtype), got ", dt);
  const int64_t side = similarity_rows(kind, k);
  for (const auto& [t, name, shape] :
       {std::tuple<const at::Tensor&, const char*, std::vector<int64_t>>{gram, "gram", {side, side}},
        {sq_norms, "sq_norms", {2 * k}}}) {
    check_stat(t, name, shape, sums, "sums");
    FC_CHECK(t.scalar_type() == dt, name, " has dtype ", t.scalar_type(), " but sums has dtype ", dt);
  }
  check_positive(tau, "tau");
  FC_CHECK(std::isfinite(weight) && weight >= 0,
           "the entropy weight (lam / entropy_weight) must be a finite number >= 0, got ", weight);
  return k;
}

}  // namespace fastclust
