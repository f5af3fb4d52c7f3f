// CPU kernels of the column-statistics family (asv_similarity, pica_loss,
// cluster_contrastive_loss). The statistics pass splits n into chunks whose boundaries depend
// only on the shapes; each chunk sums into its own slot (its Gram by a BLAS GEMM) and the slots
// are added in chunk order, so the result does not depend on the number of threads. The
// backward is the same split: each task's rows of both gradients are two or four GEMMs against
// the weights W of common/column_host.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/mm_cpu_dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/column_checks.h"
#include "common/column_math.h"
#include "common/column_host.h"
#include "cpu/blas.h"
#include "cpu/cpu_utils.h"

namespace fastclust {
namespace {

// Rows per statistics chunk and per backward task. At n = 768, k = 70 (one thread) the Gram took
// 73 us in 128-row GEMMs, 66 us in 256-row ones and 60 us in one; 128 rows leave small
// batches a few tasks for the threads to share.
constexpr int64_t kChunkRows = 128;
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMaxSlotBytes = int64_t(64) << 20;  // all chunks' partial Grams together

inline int64_t ceil_div_host(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Tasks of fewer multiply-adds than this run on the calling thread: forking threads costs
// more than they save, and far more on a busy machine. Results do not depend on it.
constexpr int64_t kMinTaskWork = int64_t(1) << 18;
inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, ceil_div_host(kMinTaskWork, std::max<int64_t>(1, work_per_item)));
}

// slot = [gram (side x side) | sq_norms (2k) | sums (2k)] of rows [i0, i1) of a and b. The
// cross Gram is a^T b; the full one V^T V for V = [a | b], of which the lower-left block b^T a
// is left out (the caller mirrors the upper triangle into the lower one).
template <typename T>
FC_CPU_MULTIVERSION void stats_chunk(const T* a, const T* b, int64_t k, bool full,
                                     int64_t i0, int64_t i1, T* __restrict__ slot) {
  const int64_t rows = i1 - i0, side = gram_side(k, full);
  T* __restrict__ sq = slot + side * side;
  T* __restrict__ sum = sq + 2 * k;
  for (int64_t part = 0; part < 2; ++part) {
    const T* x = part == 0 ? a : b;
    for (int64_t i = i0; i < i1; ++i) {
      const T* __restrict__ row = x + i * k;
      for (int64_t c = 0; c < k; ++c) {
        sq[part * k + c] += row[c] * row[c];
        sum[part * k + c] += row[c];
      }
    }
  }
  // Gram block (p, q) = part p^T part q, written at rows p k, columns q k of the slot.
  const auto block = [&](const T* x, const T* y, int64_t row0, int64_t col0) {
    auto out = matrix(slot + row0 * side + col0, k, k, side, 1);
    at::cpu::mm_out(out, dense_transposed(x + i0 * k, rows, k), dense(y + i0 * k, rows, k));
  };
  if (full) {
    block(a, a, 0, 0);
    block(a, b, 0, k);
    block(b, b, k, k);
  } else {
    block(a, b, 0, 0);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> column_stats_cpu(const at::Tensor& a,
                                                                const at::Tensor& b,
                                                                bool full_gram) {
  check_column_views(a, b);
  const auto ac = a.contiguous(), bc = b.contiguous();
  const int64_t n = a.size(0), k = a.size(1), side = gram_side(k, full_gram);
  const auto opts = a.options().dtype(at::toOpMathType(a.scalar_type()));
  auto gram = at::empty({side, side}, opts);
  auto sq_norms = at::empty({2 * k}, opts);
  auto sums = at::empty({2 * k}, opts);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "column_stats_cpu", [&] {
    using T = scalar_t;
    static_assert(std::is_same_v<T, at::opmath_type<T>>, "float and double accumulate in their own type");
    const T* pa = ac.const_data_ptr<T>();
    const T* pb = bc.const_data_ptr<T>();
    const int64_t slot_size = side * side + 4 * k;
    const int64_t max_chunks = std::clamp<int64_t>(
        kMaxSlotBytes / (slot_size * static_cast<int64_t>(sizeof(T))), 1, kMaxChunks);
    const int64_t chunk_rows = std::max(kChunkRows, ceil_div_host(n, max_chunks));
    const int64_t chunks = ceil_div_host(n, chunk_rows);
    std::vector<T> slots(chunks * slot_size, T(0));
    at::parallel_for(0, chunks, grain_for(chunk_rows * side * side), [&](int64_t begin, int64_t end) {
      SequentialBlas sequential;
      for (int64_t c = begin; c < end; ++c)
        stats_chunk(pa, pb, k, full_gram, c * chunk_rows, std::min(n, (c + 1) * chunk_rows),
                    slots.data() + c * slot_size);
    });
    // Chunks added in order, in double; V^T V's lower triangle mirrors the upper one.
    std::vector<double> totals(slot_size, 0.0);
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t idx = 0; idx < slot_size; ++idx) totals[idx] += slots[c * slot_size + idx];
    auto total = [&](int64_t idx) { return static_cast<T>(totals[idx]); };
    T* g = gram.mutable_data_ptr<T>();
    for (int64_t p = 0; p < side; ++p)
      for (int64_t q = 0; q < side; ++q)
        g[p * side + q] = (full_gram && q < p) ? g[q * side + p] : total(p * side + q);
    T* sq = sq_norms.mutable_data_ptr<T>();
    T* sm = sums.mutable_data_ptr<T>();
    for (int64_t c = 0; c < 2 * k; ++c) {
      sq[c] = total(side * side + c);
      sm[c] = total(side * side + 2 * k + c);
    }
  });
  return {gram, sq_norms, sums};
}

// Rows [i0, i1) of grad_out (part o of V's gradient): 2 x grad_sq + grad_sum elementwise, then
// plus V_p W[p k + :, o k + :] for each part p that W pairs with o (W null: none).
template <typename T>
FC_CPU_MULTIVERSION void backward_rows(const T* a, const T* b, int64_t k, bool full, const T* W,
                                       const T* grad_sq, const T* grad_sum, int64_t o,
                                       int64_t i0, int64_t i1, T* __restrict__ grad_out) {
  const T* __restrict__ x = o == 0 ? a : b;
  const T* __restrict__ sq = grad_sq + o * k;
  const T* __restrict__ sm = grad_sum + o * k;
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t c = 0; c < k; ++c) grad_out[i * k + c] = T(2) * x[i * k + c] * sq[c] + sm[c];
  if (W == nullptr) return;
  auto out = dense(grad_out + i0 * k, i1 - i0, k);
  for (int64_t part = 0; part < 2; ++part) {
    if (!full && part == o) continue;  // the cross Gram pairs a with b only
    at::cpu::addmm_(out, dense((part == 0 ? a : b) + i0 * k, i1 - i0, k),
                    matrix(W + part * k * 2 * k + o * k, k, k, 2 * k, 1));
  }
}

std::tuple<at::Tensor, at::Tensor> column_stats_backward_cpu(
    const std::optional<at::Tensor>& grad_gram, const std::optional<at::Tensor>& grad_sq_norms,
    const std::optional<at::Tensor>& grad_sums, const at::Tensor& a, const at::Tensor& b,
    bool full_gram) {
  const auto in = prepare_stats_backward(grad_gram, grad_sq_norms, grad_sums, a, b, full_gram);
  const int64_t n = in.n, k = in.k, w = 2 * k;
  auto grad_a = at::empty({n, k}, a.options());
  auto grad_b = at::empty({n, k}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "column_stats_backward_cpu", [&] {
    using T = scalar_t;
    std::vector<T> weights;
    if (in.grad_gram.defined()) {
      weights.assign(w * w, T(0));
      const T* g = in.grad_gram.const_data_ptr<T>();
      for (int64_t row = 0; row < w; ++row)
        for (int64_t col = 0; col < w; ++col)
          if (full_gram || (row < k) != (col < k))
            weights[row * w + col] = backward_weight(g, k, full_gram, row, col);
    }
    // An absent vector gradient is zero.
    const auto vector_or_zeros = [&](const at::Tensor& v) {
      std::vector<T> out(w, T(0));
      if (v.defined()) std::copy_n(v.const_data_ptr<T>(), w, out.data());
      return out;
    };
    const auto sq = vector_or_zeros(in.grad_sq_norms), sm = vector_or_zeros(in.grad_sums);
    const T* pa = in.a.const_data_ptr<T>();
    const T* pb = in.b.const_data_ptr<T>();
    const T* W = weights.empty() ? nullptr : weights.data();
    T* out[2] = {grad_a.mutable_data_ptr<T>(), grad_b.mutable_data_ptr<T>()};
    const int64_t tasks = ceil_div_host(n, kChunkRows);
    at::parallel_for(0, 2 * tasks, grain_for(kChunkRows * w * k), [&](int64_t begin, int64_t end) {
      SequentialBlas sequential;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t o = t / tasks, i0 = (t % tasks) * kChunkRows;
        backward_rows(pa, pb, k, full_gram, W, sq.data(), sm.data(), o, i0,
                      std::min(n, i0 + kChunkRows), out[o]);
      }
    });
  });
  return {grad_a, grad_b};
}

template <typename T>
T max_of(T a, T b) { return a > b ? a : b; }

// One row of the similarity matrix sim[c] = g_row[c] scale u_cols[c]: its cross-entropy
// against column pos (column `excluded` left out of the softmax, -1: none), its entries'
// gradients dg_row = d loss / d gram, and reduced = sum_c (d loss / d sim[c]) sim[c]. Written
// as whole-row loops (lane-split reductions, a vector exp): a k = 70 row is then a few hundred
// cycles, where a scalar loop with a library exp per entry cost ten times that.
template <typename T>
FC_CPU_MULTIVERSION void loss_row(const T* __restrict__ g_row, const T* __restrict__ u_cols,
                                     T scale, int64_t rows, int64_t pos, int64_t excluded,
                                     T inv_rows, T* __restrict__ sim, T* __restrict__ e,
                                     T* __restrict__ dg_row, T& loss, T& reduced) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  for (int64_t c = 0; c < rows; ++c) sim[c] = g_row[c] * scale * u_cols[c];
  for (int64_t c = 0; c < rows; ++c) e[c] = sim[c];
  if (excluded >= 0) e[excluded] = kNegInf;  // exp(-inf) = 0: outside the denominator
  const T mx = reduce_lanes(rows, kNegInf, max_of<T>, [&](int64_t c) { return e[c]; });
  exp_shifted(e, mx, e, rows);
  const T sum_exp = reduce_lanes(rows, T(0), plus<T>, [&](int64_t c) { return e[c]; });
  const T inv_sum = T(1) / sum_exp;
  loss = mx + fc_log(sum_exp) - sim[pos];
  const T softmax_pos = e[pos] * inv_sum;
  for (int64_t c = 0; c < rows; ++c) e[c] = cross_entropy_grad(e[c] * inv_sum, false, inv_rows);
  e[pos] = cross_entropy_grad(softmax_pos, true, inv_rows);
  reduced = dot_lanes(e, sim, rows);
  for (int64_t c = 0; c < rows; ++c) dg_row[c] = e[c] * scale * u_cols[c];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
column_loss_from_stats_cpu(const at::Tensor& gram, const at::Tensor& sq_norms,
                           const at::Tensor& sums, c10::string_view kind_name, double tau,
                            double weight) {
  const int64_t kind = column_loss_kind(kind_name);
  const int64_t k = check_column_loss_args(gram, sq_norms, sums, kind, tau, weight);
  const int64_t rows = similarity_rows(kind, k);
  const auto G = gram.contiguous(), SQ = sq_norms.contiguous(), S = sums.contiguous();
  auto grad_gram = at::empty({rows, rows}, gram.options());
  auto grad_sq = at::empty({2 * k}, gram.options());
  auto grad_sums = at::zeros({2 * k}, gram.options());
  double ce = 0, entropy_term = 0;
  AT_DISPATCH_FLOATING_TYPES(gram.scalar_type(), "column_loss_from_stats_cpu", [&] {
    using T = scalar_t;
    const T* g = G.const_data_ptr<T>();
    const T* sq = SQ.const_data_ptr<T>();
    const T* s = S.const_data_ptr<T>();
    T* dg = grad_gram.mutable_data_ptr<T>();
    T* dsq = grad_sq.mutable_data_ptr<T>();
    T* ds = grad_sums.mutable_data_ptr<T>();
    const T inv_tau = static_cast<T>(1.0 / tau), inv_rows = T(1) / static_cast<T>(rows);
    std::vector<T> u(2 * k), row_loss(rows), row_reduced(rows), col_reduced(rows, T(0));
    for (int64_t c = 0; c < 2 * k; ++c) u[c] = inverse_clamped_norm(sq[c]);
    // Inverse norms of the similarity matrix's columns: PICA's are p2's, which follow p1's.
    const T* u_cols = u.data() + (kind == kPica ? k : 0);
    // A row costs an exp per entry, about 16 multiply-adds each.
    at::parallel_for(0, rows, grain_for(16 * rows), [&](int64_t begin, int64_t end) {
      std::vector<T> sim(rows), e(rows);
      for (int64_t r = begin; r < end; ++r)
        loss_row(g + r * rows, u_cols, u[r] * inv_tau, rows, positive_column(kind, r, k),
                 in_denominator(kind, r, r) ? -1 : r, inv_rows, sim.data(), e.data(),
                 dg + r * rows, row_loss[r], row_reduced[r]);
    });
    // Column-wise sum of dloss/dsim * sim, as dG * G, row after row.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < rows; ++c) col_reduced[c] += dg[r * rows + c] * g[r * rows + c];
    for (int64_t c = 0; c < 2 * k; ++c) {
      const T reduced = kind == kPica ? (c < k ? row_reduced[c] : col_reduced[c - k])
                                      : row_reduced[c] + col_reduced[c];
      dsq[c] = sq_norm_grad(sq[c], u[c], reduced);
    }
    for (int64_t r = 0; r < rows; ++r) ce += row_loss[r];
    ce /= static_cast<double>(rows);
    // log k - H(z) per view: PICA regularises p1's assignments, cluster contrastive both views.
    for (int64_t view = 0; view < (kind == kPica ? 1 : 2); ++view) {
      const T* sv = s + view * k;
      T mass = 0;
      for (int64_t c = 0; c < k; ++c) mass += sv[c];
      const T scale = T(1) / floored_mass(mass);
      T neg_entropy = 0, g_dot_z = 0;
      for (int64_t c = 0; c < k; ++c) {
        const T z = sv[c] * scale;
        neg_entropy += z_log_z(z);
        g_dot_z += entropy_grad_z(z) * z;
      }
      for (int64_t c = 0; c < k; ++c)
        ds[view * k + c] = -entropy_grad_sum(entropy_grad_z(sv[c] * scale), g_dot_z, mass);
      entropy_term += std::log(static_cast<double>(k)) + static_cast<double>(neg_entropy);
    }
  });
  const auto opts = gram.options();
  return {at::scalar_tensor(ce + weight * entropy_term, opts), at::scalar_tensor(ce, opts),
          at::scalar_tensor(entropy_term, opts), grad_gram, grad_sq, grad_sums};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastclust, CPU, m) {
  m.impl("column_stats", &column_stats_cpu);
  m.impl("column_stats_backward", &column_stats_backward_cpu);
  m.impl("column_loss_from_stats", &column_loss_from_stats_cpu);
  m.impl("column_loss", [](const at::Tensor& a, const at::Tensor& b, c10::string_view kind, double tau,
                           double weight) {
    return fused_column_loss(a, b, kind, tau, weight, column_stats_cpu, column_loss_from_stats_cpu);
  });
}

}  // namespace fastclust
