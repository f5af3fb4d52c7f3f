// The module fastclust._C and its op library torch.ops.fastclust (schemas in csrc/schemas.h).
// Kernels register per device in csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu; fake kernels and
// autograd are registered from Python (fastclust/ops/), except the column-statistics family's
// autograd, in csrc/autograd/column_ops.cpp.
#include <Python.h>
#include <torch/library.h>

#include "schemas.h"

// `import fastclust._C` loads this library, and with it the registrations below.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(fastclust, m) { fastclust::define_schemas(m); }
