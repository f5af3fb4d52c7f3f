#pragma once
// Argument validation shared by the CPU and CUDA entry points: every op checks its
// inputs here first, so both devices reject the same inputs with the same message.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <optional>

#include <cmath>
#include <cstdio>
#include <string>

namespace fastclust {

// Error messages are assembled as one std::string before TORCH_CHECK sees them. Streaming a
// number into c10::str's ostringstream from inside this library crashed (SIGSEGV in the
// num_put facet) on a machine whose build linked its own copy of the stream code; the
// conversions below never touch locale facets, and a lone string passes through c10::str as is.
inline std::string to_text(const char* s) { return s; }
inline std::string to_text(const std::string& s) { return s; }
inline std::string to_text(c10::string_view s) { return std::string(s); }
inline std::string to_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}
inline std::string to_text(int64_t v) { return std::to_string(v); }
inline std::string to_text(int v) { return std::to_string(v); }
inline std::string to_text(c10::IntArrayRef sizes) {
  std::string out = "[";
  for (size_t i = 0; i < sizes.size(); ++i) out += (i ? ", " : "") + std::to_string(sizes[i]);
  return out + "]";
}
inline std::string to_text(c10::ScalarType t) { return c10::toString(t); }
inline std::string to_text(const c10::Device& d) {
  return c10::DeviceTypeName(d.type(), /*lower_case=*/true) +
         (d.has_index() ? ":" + std::to_string(d.index()) : "");
}

template <typename... Args>
std::string message(const Args&... args) {
  return (std::string("fastclust: ") + ... + to_text(args));
}

}  // namespace fastclust

// TORCH_CHECK with a "fastclust: "-prefixed message built by fastclust::message.
#define FC_CHECK(cond, ...) TORCH_CHECK((cond), ::fastclust::message(__VA_ARGS__))

namespace fastclust {

// The emulated-CUDA test build runs the CUDA kernels, half precision included, on CPU tensors.
#ifdef FASTCLUST_CUDA_EMU
constexpr bool kHalfOnCpu = true;
#else
constexpr bool kHalfOnCpu = false;
#endif

// The kind of a loss, from its name in the schemas: `names` lists (name, kind) pairs, the same
// names as the Python constants (fastclust.reference, tested to agree).
template <size_t N>
int64_t kind_named(c10::string_view name, const std::pair<const char*, int64_t> (&names)[N]) {
  std::string known;
  for (const auto& [candidate, kind] : names) {
    if (name == candidate) return kind;
    known += std::string(known.empty() ? "" : ", ") + "'" + candidate + "'";
  }
  FC_CHECK(false, "kind must be one of ", known, ", got '", name, "'");
  return -1;
}

inline void check_float_dtype(const at::Tensor& t, const char* name) {
  const auto dt = t.scalar_type();
  const bool full = dt == at::kFloat || dt == at::kDouble;
  const bool half = dt == at::kHalf || dt == at::kBFloat16;
  FC_CHECK(full || (half && (t.is_cuda() || kHalfOnCpu)), name,
              " must be float32 or float64 (float16/bfloat16 on CUDA only), got ", dt, " on ",
              t.device());
}

// An (n, k) matrix with n >= 1 and k >= 1.
inline void check_matrix_shape(const at::Tensor& t, const char* name) {
  FC_CHECK(t.dim() == 2, name, " must be a 2-D (n, k) tensor, got shape ",
              t.sizes());
  FC_CHECK(t.size(0) >= 1, name, " must have at least one row, got shape ",
              t.sizes());
  FC_CHECK(t.size(1) >= 1, name,
              " must have at least one column (k >= 1), got shape ", t.sizes());
}

// An (n, k) matrix with n >= 1 and k >= 1 of a supported floating dtype.
inline void check_matrix(const at::Tensor& t, const char* name) {
  check_matrix_shape(t, name);
  check_float_dtype(t, name);
}

inline void check_same_device_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                                    const char* b_name) {
  FC_CHECK(a.device() == b.device(), b_name, " is on ", b.device(), " but ",
              a_name, " is on ", a.device());
  FC_CHECK(a.scalar_type() == b.scalar_type(), b_name, " has dtype ",
              b.scalar_type(), " but ", a_name, " has dtype ", a.scalar_type());
}

// Two views of the same batch: same shape, device and dtype.
// A mix of dtypes is named as such before either dtype is judged.
inline void check_same_matrix(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                              const char* b_name) {
  check_matrix_shape(a, a_name);
  check_matrix_shape(b, b_name);
  check_same_device_dtype(a, a_name, b, b_name);
  check_float_dtype(a, a_name);
  FC_CHECK(a.sizes() == b.sizes(), b_name, " has shape ", b.sizes(), " but ",
              a_name, " has shape ", a.sizes());
}

inline void check_finite(double v, const char* name) {
  FC_CHECK(std::isfinite(v), name, " must be finite, got ", v);
}

inline void check_positive(double v, const char* name) {
  FC_CHECK(std::isfinite(v) && v > 0, name, " must be a finite number > 0, got ",
              v);
}

// A 0-dim upstream gradient on the device of the op's input.
inline void check_scalar_grad(const at::Tensor& g, const at::Tensor& like, const char* name) {
  FC_CHECK(g.dim() == 0, name, " must be a 0-dim tensor, got shape ", g.sizes());
  FC_CHECK(g.device() == like.device(), name, " is on ", g.device(),
              " but the features are on ", like.device());
}

}  // namespace fastclust
