#pragma once
// Schemas of every fastclust op, defined by torch.ops.fastclust (csrc/ops.cpp) and by the
// emulated-CUDA test module's torch.ops.fastclust_emu (csrc/emu/module.cpp) alike.
#include <torch/library.h>

namespace fastclust {

inline void define_schemas(torch::Library& m) {
  // ---- restraint layer (DAC Eq. 9, DSEC C_p) ----
  m.def("restraint(Tensor feats, float p) -> Tensor");
  m.def("restraint_backward(Tensor grad_out, Tensor out, float p) -> Tensor");

  // ---- pairwise losses (DAC, DSEC) ----
  // Sum of the per-pair loss over rows x cols (cols=None: rows x rows), and the numbers of
  // positive and negative pairs. kind: "dac" (log loss) or "dsec" (squared loss). Pairs are
  // selected on select_rows x select_cols when given (select_cols=None: select_rows x
  // select_rows), else on rows x cols; the selectors get no gradient.
  m.def(
      "pairwise_loss(Tensor rows, Tensor? cols, Tensor? select_rows, Tensor? select_cols, float u, "
      "float l, str kind, float eps) -> (Tensor, Tensor, Tensor)");
  // d(grad_sum * loss_sum)/d(rows). With cols=None both sides of every pair are rows.
  m.def(
      "pairwise_loss_backward(Tensor grad_sum, Tensor rows, Tensor? cols, Tensor? select_rows, "
      "Tensor? select_cols, float u, float l, str kind, float eps) -> Tensor");

  // ---- column statistics family (PICA, cluster contrastive) ----
  // One pass over n of two (n, k) views a, b, seen as the 2k columns of V = [a | b]:
  // gram = a^T b (k x k), or V^T V (2k x 2k) when full_gram; sq_norms and sums (2k each) are
  // the squared norms and sums of V's columns. Sums over n are plain sums, so per-process
  // statistics can be all-reduced before the loss (global batch).
  m.def(
      "column_stats(Tensor a, Tensor b, bool full_gram) "
      "-> (Tensor gram, Tensor sq_norms, Tensor sums)");
  // Gradients w.r.t. a and b of <grad_gram, gram> + <grad_sq_norms, sq_norms> +
  // <grad_sums, sums>; an absent gradient counts as zero. One pass over n.
  m.def(
      "column_stats_backward(Tensor? grad_gram, Tensor? grad_sq_norms, Tensor? grad_sums, "
      "Tensor a, Tensor b, bool full_gram) -> (Tensor grad_a, Tensor grad_b)");
  // The loss from the statistics: cross_entropy + weight * entropy_term, each part, and the
  // gradients d cross_entropy / d (gram, sq_norms) and d entropy_term / d sums.
  // kind "pica" (gram = a^T b) or "cluster_contrastive" (gram = V^T V); see common/column_math.h.
  m.def(
      "column_loss_from_stats(Tensor gram, Tensor sq_norms, Tensor sums, str kind, float tau, "
      "float weight) -> (Tensor loss, Tensor cross_entropy, Tensor entropy_term, "
      "Tensor grad_gram, Tensor grad_sq_norms, Tensor grad_sums)");
  // The local loss in one call: column_stats then column_loss_from_stats, same outputs as the
  // latter; its backward is one column_stats_backward. The distributed path keeps the two ops
  // apart to all-reduce the statistics between them.
  m.def(
      "column_loss(Tensor a, Tensor b, str kind, float tau, float weight) "
      "-> (Tensor loss, Tensor cross_entropy, Tensor entropy_term, Tensor grad_gram, "
      "Tensor grad_sq_norms, Tensor grad_sums)");

  // ---- contrastive log-sum-exp family (NT-Xent, semantic contrastive) ----
  // Row-wise x / max(||x||_2, 1e-12), as torch.nn.functional.normalize.
  m.def("normalize_rows(Tensor x) -> Tensor");
  m.def("normalize_rows_backward(Tensor grad_out, Tensor x) -> Tensor");
  // lse[r] = log sum_c exp(queries[r] . keys[c] / tau) over a rectangular block, leaving out
  // the column c = r + self_offset (self_offset < 0: none). float32 for half inputs.
  m.def("row_logsumexp(Tensor queries, Tensor keys, float tau, int self_offset) -> Tensor");
  // d(sum_r grad_lse[r] lse[r]) / d(queries, keys), recomputing the similarities.
  m.def(
      "row_logsumexp_backward(Tensor grad_lse, Tensor queries, Tensor keys, Tensor lse, "
      "float tau, int self_offset) -> (Tensor, Tensor)");
}

}  // namespace fastclust
