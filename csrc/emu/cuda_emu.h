#pragma once
// The CUDA execution model on CPU threads, for the emulated-CUDA test build (FASTCLUST_CUDA_EMU,
// module fastclust._C_emu): csrc/cuda compiles as plain C++ against this header and its
// kernels run on CPU tensors, so that every CI run executes them.
//
// A launch runs the grid's blocks one at a time per OS thread (several OS threads at once); a
// block's threads are fibers on one OS thread that switch only at barriers and warp
// collectives. `__shared__` is thread_local static storage, which makes it shared by the
// block running on that OS thread. Barriers and warp collectives check what CUDA leaves
// undefined (a barrier some threads never reach, threads at different barriers, a shuffle mask
// naming an exited lane or a lane not at the same shuffle, misaligned WMMA pointers) and fail
// the launch with an error naming the kernel, the block and the call, instead of hanging.
// What it cannot show: speed, the tensor cores' own rounding and summation order (WMMA here
// multiplies exactly and sums in float32 in feature order), races between blocks running at
// once, and the device's shared-memory and register limits.
#include <c10/core/Device.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// CUDA's min and max are overloaded for every arithmetic type; one template that needs both
// sides of one type is stricter, and no kernel mixes them.
template <typename T>
inline T min(T a, T b) { return b < a ? b : a; }
template <typename T>
inline T max(T a, T b) { return a < b ? b : a; }

namespace fc_emu {

// Where a fiber is in the grid: what threadIdx and friends read.
struct ThreadCoords {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
extern thread_local const ThreadCoords* current_coords;

// The barrier of the calling thread's block (__syncthreads).
void syncthreads(const char* file, int line);

enum class Collective { kShflSync, kShflUp, kShflDown, kShflXor, kSyncWarp, kWmma };

// A warp collective: blocks the calling lane until every lane of `mask` has reached the same
// call, then gives each lane `size` bytes from its source lane (see runtime.cpp).
void warp_collective(Collective kind, const char* what, const char* file, int line,
                     unsigned mask, const void* value, void* result, size_t size, int arg,
                     int width);

inline void syncwarp(const char* file, int line, unsigned mask = 0xffffffffu) {
  warp_collective(Collective::kSyncWarp, "__syncwarp", file, line, mask, nullptr, nullptr, 0, 0, 32);
}

// Fails the running launch with `message` (a misused WMMA fragment, say).
[[noreturn]] void fail(const char* file, int line, const char* message);

template <typename T>
T shuffle(Collective kind, const char* what, const char* file, int line, unsigned mask, T var,
          int arg, int width = 32) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 16,
                "a shuffle moves a register of up to 16 bytes");
  T out;
  warp_collective(kind, what, file, line, mask, &var, &out, sizeof(T), arg, width);
  return out;
}

// Runs a grid: `thread_body(ctx)` once per CUDA thread, on that thread's fiber.
void run_grid(const char* kernel, dim3 grid, dim3 block, void (*thread_body)(const void*),
              const void* ctx);

struct Stream {};

// kernel<<<grid, block, 0, stream>>>(args...) as Launch(...)(args...): the arguments are
// copied once, as CUDA copies them into the launch, and every thread calls the kernel on them.
template <typename Kernel>
struct Launch {
  const char* name;
  dim3 grid, block;
  Kernel kernel;

  template <typename... Args>
  void operator()(Args&&... args) const {
    using Params = std::tuple<std::decay_t<Args>...>;
    const std::pair<const Kernel*, Params> ctx(&kernel, Params(std::forward<Args>(args)...));
    run_grid(name, grid, block, [](const void* p) {
      const auto& c = *static_cast<const std::pair<const Kernel*, Params>*>(p);
      std::apply(*c.first, c.second);
    }, &ctx);
  }
};

template <typename Kernel>
Launch<Kernel> launch(const char* name, dim3 grid, dim3 block, Stream, Kernel kernel) {
  return {name, grid, block, kernel};
}

int multiprocessor_count();

}  // namespace fc_emu

#define threadIdx (::fc_emu::current_coords->thread_idx)
#define blockIdx (::fc_emu::current_coords->block_idx)
#define blockDim (::fc_emu::current_coords->block_dim)
#define gridDim (::fc_emu::current_coords->grid_dim)
#define __syncthreads() ::fc_emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::fc_emu::syncwarp(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) \
  ::fc_emu::shuffle(::fc_emu::Collective::kShflSync, "__shfl_sync", __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) \
  ::fc_emu::shuffle(::fc_emu::Collective::kShflUp, "__shfl_up_sync", __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...)                                                                   \
  ::fc_emu::shuffle(::fc_emu::Collective::kShflDown, "__shfl_down_sync", __FILE__, __LINE__, \
                    __VA_ARGS__)
#define __shfl_xor_sync(...) \
  ::fc_emu::shuffle(::fc_emu::Collective::kShflXor, "__shfl_xor_sync", __FILE__, __LINE__, __VA_ARGS__)

// The launch the kernels write as FC_LAUNCH(grid, block, stream, kernel)(args...).
#define FC_LAUNCH(grid, block, stream, ...)                                             \
  ::fc_emu::launch(#__VA_ARGS__, (grid), (block), (stream),                             \
                   [](auto... fc_emu_args) { __VA_ARGS__(fc_emu_args...); })

// ---- 16-bit floating types: c10's, which hold the same bits ----
using __half = c10::Half;
using __nv_bfloat16 = c10::BFloat16;
inline float __half2float(__half x) { return static_cast<float>(x); }
inline float __bfloat162float(__nv_bfloat16 x) { return static_cast<float>(x); }
inline __half __float2half(float x) { return __half(x); }
inline __nv_bfloat16 __float2bfloat16(float x) { return __nv_bfloat16(x); }

// ---- WMMA: every lane's fragment holds the whole tile (the real layout is opaque to the
// kernels), and each call is a warp collective that all 32 lanes must reach together ----
namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int kRows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int kCols = std::is_same<Use, matrix_a>::value ? K : N;
  static constexpr int num_elements = kRows * kCols;
  T x[num_elements];  // element (r, c) at x[r * kCols + c]
  T at(int r, int c) const { return x[r * kCols + c]; }
};

// WMMA's rules for pointers and leading dimensions: 256-bit aligned, a multiple of 16 bytes.
template <typename T>
inline void check_matrix_pointer(const T* p, unsigned ldm, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0) ::fc_emu::fail(__FILE__, __LINE__, what);
  if ((ldm * sizeof(T)) % 16 != 0) ::fc_emu::fail(__FILE__, __LINE__, what);
}

inline void converge(const char* what) {
  ::fc_emu::warp_collective(::fc_emu::Collective::kWmma, what, __FILE__, __LINE__, 0xffffffffu,
                            nullptr, nullptr, 0, 0, 32);
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename Value>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const Value& v) {
  converge("wmma::fill_fragment");
  for (auto& e : f.x) e = static_cast<T>(v);
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
  static_assert(!std::is_void<Layout>::value, "a matrix_a / matrix_b fragment names its layout");
  converge("wmma::load_matrix_sync");
  check_matrix_pointer(p, ldm, "wmma::load_matrix_sync: pointer not 256-bit aligned or ldm not a multiple of 16 bytes");
  using F = fragment<Use, M, N, K, T, Layout>;
  for (int r = 0; r < F::kRows; ++r)
    for (int c = 0; c < F::kCols; ++c)
      f.x[r * F::kCols + c] = std::is_same<Layout, row_major>::value ? p[r * ldm + c] : p[c * ldm + r];
}

template <int M, int N, int K, typename T>
inline void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                              layout_t layout) {
  converge("wmma::store_matrix_sync");
  check_matrix_pointer(p, ldm, "wmma::store_matrix_sync: pointer not 256-bit aligned or ldm not a multiple of 16 bytes");
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.at(r, c);
}

// d = a b + c: products of 16-bit values are exact in float32, summed in feature order.
template <int M, int N, int K, typename Tab, typename LayoutA, typename LayoutB, typename Tc>
inline void mma_sync(fragment<accumulator, M, N, K, Tc>& d, const fragment<matrix_a, M, N, K, Tab, LayoutA>& a,
                     const fragment<matrix_b, M, N, K, Tab, LayoutB>& b,
                     const fragment<accumulator, M, N, K, Tc>& c) {
  converge("wmma::mma_sync");
  fragment<accumulator, M, N, K, Tc> out;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      Tc sum = c.at(i, j);
      for (int kk = 0; kk < K; ++kk)
        sum += static_cast<Tc>(a.at(i, kk)) * static_cast<Tc>(b.at(kk, j));
      out.x[i * N + j] = sum;
    }
  d = out;
}

}  // namespace wmma
}  // namespace nvcuda

// ---- host side: streams, the device guard, errors, device attributes ----
enum cudaError_t { cudaSuccess = 0 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
inline const char* cudaGetErrorString(cudaError_t) { return "no error"; }
// A failed emulated launch throws at once; nothing is left to report afterwards.
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
// The multiprocessor count, the one attribute the kernels ask for, is FASTCLUST_EMU_SMS
// (default 132, an H100 / H200): it decides how the statistics and log-sum-exp kernels split
// their work, so the tests run it at two values.
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int /*device*/) {
  *value = ::fc_emu::multiprocessor_count();
  return cudaSuccess;
}

namespace c10 {
namespace cuda {
struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
};
inline ::fc_emu::Stream getCurrentCUDAStream() { return {}; }
}  // namespace cuda
}  // namespace c10

#define C10_CUDA_CHECK(expr)                                                        \
  do {                                                                              \
    const cudaError_t fc_emu_err = (expr);                                          \
    TORCH_CHECK(fc_emu_err == cudaSuccess, "CUDA error: ", cudaGetErrorString(fc_emu_err)); \
  } while (0)
#define C10_CUDA_KERNEL_LAUNCH_CHECK() C10_CUDA_CHECK(cudaGetLastError())

// The emulated kernels register on the CPU key of their own namespace.
#define FC_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(fastclust_emu, CPU, m)
