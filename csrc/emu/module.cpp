// The module fastclust._C_emu, a test artifact built with FASTCLUST_CUDA_EMU=1: the op library
// torch.ops.fastclust_emu, with the schemas of torch.ops.fastclust and the kernels of
// csrc/cuda, emulated on the CPU (cuda_emu.h), registered on its CPU key.
#include <Python.h>
#include <torch/library.h>

#include "schemas.h"

// Exported although the module is built with hidden visibility (its symbols, which share
// names with fastclust._C's, stay its own).
PyMODINIT_FUNC PyInit__C_emu(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C_emu", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(fastclust_emu, m) { fastclust::define_schemas(m); }
