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
}
