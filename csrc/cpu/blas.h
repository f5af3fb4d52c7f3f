#pragma once
// BLAS GEMMs inside CPU kernels: raw-memory matrices and MKL pinned to one thread per task.
#include <ATen/ATen.h>

// MKL may split a GEMM's inner dimension across its threads when the output is small (it did
// for 128 x 128 outputs over 1024 columns on a 2-core Xeon), and the summation order then
// follows the thread count: on the calling thread, and inside at::parallel_for's region too,
// since torch.set_num_threads turns MKL's dynamic threading off. Each task therefore pins MKL
// to one thread for its GEMMs (SequentialBlas), so that a GEMM's result depends only on its
// shape. The symbol is weak so that a torch built on another BLAS still loads the extension;
// MKL_Set_Num_Threads_Local is the C entry point that mkl.h's mkl_set_num_threads_local names
// (the lower-case symbol is the Fortran one, which takes a pointer).
#if defined(__GNUC__) && defined(__linux__)
extern "C" int MKL_Set_Num_Threads_Local(int) __attribute__((weak));
#else
static int (*const MKL_Set_Num_Threads_Local)(int) = nullptr;
#endif

namespace fastclust {

// Restores the thread's previous MKL setting (0: the global one) on exit.
class SequentialBlas {
 public:
  SequentialBlas() : previous_(MKL_Set_Num_Threads_Local ? MKL_Set_Num_Threads_Local(1) : 0) {}
  ~SequentialBlas() {
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(previous_);
  }
  SequentialBlas(const SequentialBlas&) = delete;
  SequentialBlas& operator=(const SequentialBlas&) = delete;

 private:
  int previous_;
};

// A view of raw memory for the GEMMs: no autograd metadata, and at::cpu:: calls the CPU
// kernel directly, so a task in a worker thread (whose grad mode and dispatch state are not
// the caller's) never touches the dispatcher.
template <typename T>
at::Tensor matrix(const T* data, int64_t rows, int64_t cols, int64_t row_stride,
                  int64_t col_stride) {
  return at::from_blob(const_cast<T*>(data), {rows, cols}, {row_stride, col_stride},
                       at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// The (rows x cols) row-major block at data, and the same block seen transposed (cols x rows).
template <typename T>
at::Tensor dense(const T* data, int64_t rows, int64_t cols) {
  return matrix(data, rows, cols, cols, 1);
}
template <typename T>
at::Tensor dense_transposed(const T* data, int64_t rows, int64_t cols) {
  return matrix(data, cols, rows, 1, cols);
}

}  // namespace fastclust
