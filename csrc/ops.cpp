// Schemas of every fastclust op. Kernels register per device in csrc/cpu/<op>.cpp and
// csrc/cuda/<op>.cu; fake kernels and autograd are registered from Python (fastclust/ops/).
#include <Python.h>
#include <torch/library.h>

// `import fastclust._C` loads this library, and with it the registrations below.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(fastclust, m) {
  // ---- restraint layer (DAC Eq. 9, DSEC C_p) ----
  m.def("restraint(Tensor feats, float p) -> Tensor");
  m.def("restraint_backward(Tensor grad_out, Tensor out, float p) -> Tensor");

  // ---- pairwise losses (DAC, DSEC) ----
  // Sum of the per-pair loss over rows x cols (cols=None: rows x rows), and the numbers of
  // positive and negative pairs. kind: 0 = DAC log loss, 1 = DSEC squared loss.
  m.def(
      "pairwise_loss(Tensor rows, Tensor? cols, float u, float l, int kind, float eps) "
      "-> (Tensor, Tensor, Tensor)");
  // d(grad_sum * loss_sum)/d(rows). With cols=None both sides of every pair are rows.
  m.def(
      "pairwise_loss_backward(Tensor grad_sum, Tensor rows, Tensor? cols, float u, float l, "
      "int kind, float eps) -> Tensor");

  // ---- column statistics family (PICA, cluster contrastive) ----

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
