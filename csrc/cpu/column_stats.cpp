// CPU kernels of the column-statistics family (asv_similarity, pica_loss,
// cluster_contrastive_loss). The statistics pass splits n into chunks whose boundaries depend
// only on the shapes; each chunk sums into its own slot and the slots are added in chunk order,
// so the result does not depend on the number of threads.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/column_checks.h"
#include "common/column_math.h"
#include "common/column_weights.h"
#include "cpu/cpu_utils.h"

namespace fastclust {
namespace {

constexpr int64_t kRowGroup = 4;          // rows folded into one sweep over the Gram
constexpr int64_t kMinChunkRows = 256;    // rows per chunk at the least
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMaxSlotBytes = int64_t(64) << 20;  // all chunks' partial Grams together

inline int64_t ceil_div_host(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Two (n, k) row-major views read as the 2k columns of V = [a | b].
template <typename T>
struct Views {
  const T* a;
  const T* b;
  int64_t n, k;
  template <typename A>
  void load_row(int64_t i, A* v) const {
    for (int64_t c = 0; c < k; ++c) v[c] = static_cast<A>(a[i * k + c]);
    for (int64_t c = 0; c < k; ++c) v[k + c] = static_cast<A>(b[i * k + c]);
  }
};

// The Gram's rows are V's columns [0, side); its columns start at V column `right` (k for the
// cross Gram a^T b, 0 for V^T V, of which only the upper triangle is summed).
struct GramShape {
  int64_t side, right;
  bool full;
};

// slot = [gram (side x side) | sq_norms (2k) | sums (2k)] of rows [i0, i1).
template <typename T, typename A>
FC_CPU_MULTIVERSION void stats_chunk(const Views<T>& x, GramShape s, int64_t i0, int64_t i1,
                                     A* __restrict__ slot) {
  const int64_t w = 2 * x.k;
  A* __restrict__ gram = slot;
  A* __restrict__ sq = slot + s.side * s.side;
  A* __restrict__ sum = sq + w;
  std::vector<A> rows(kRowGroup * w);
  for (int64_t g0 = i0; g0 < i1; g0 += kRowGroup) {
    const int64_t rows_here = std::min(kRowGroup, i1 - g0);
    std::fill(rows.begin(), rows.end(), A(0));  // a short last group sums zero rows
    for (int64_t r = 0; r < rows_here; ++r) {
      A* v = rows.data() + r * w;
      x.load_row(g0 + r, v);
      for (int64_t c = 0; c < w; ++c) {
        sq[c] += v[c] * v[c];
        sum[c] += v[c];
      }
    }
    const A* __restrict__ v0 = rows.data();
    const A* __restrict__ v1 = v0 + w;
    const A* __restrict__ v2 = v1 + w;
    const A* __restrict__ v3 = v2 + w;
    for (int64_t p = 0; p < s.side; ++p) {
      const A x0 = v0[p], x1 = v1[p], x2 = v2[p], x3 = v3[p];
      A* __restrict__ out = gram + p * s.side;
      const A* __restrict__ r0 = v0 + s.right;
      const A* __restrict__ r1 = v1 + s.right;
      const A* __restrict__ r2 = v2 + s.right;
      const A* __restrict__ r3 = v3 + s.right;
      for (int64_t q = s.full ? p : 0; q < s.side; ++q)
        out[q] += x0 * r0[q] + x1 * r1[q] + x2 * r2[q] + x3 * r3[q];
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> column_stats_cpu(const at::Tensor& a,
                                                                const at::Tensor& b,
                                                                bool full_gram) {
  check_column_views(a, b);
  const auto ac = a.contiguous(), bc = b.contiguous();
  const int64_t n = a.size(0), k = a.size(1), side = gram_side(k, full_gram);
  const GramShape shape{side, full_gram ? 0 : k, full_gram};
  const auto opts = a.options().dtype(at::toOpMathType(a.scalar_type()));
  auto gram = at::empty({side, side}, opts);
  auto sq_norms = at::empty({2 * k}, opts);
  auto sums = at::empty({2 * k}, opts);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "column_stats_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Views<scalar_t> x{ac.const_data_ptr<scalar_t>(), bc.const_data_ptr<scalar_t>(), n, k};
    const int64_t slot_size = side * side + 4 * k;
    const int64_t max_chunks = std::clamp<int64_t>(
        kMaxSlotBytes / (slot_size * static_cast<int64_t>(sizeof(acc_t))), 1, kMaxChunks);
    const int64_t chunk_rows = std::max(kMinChunkRows, ceil_div_host(n, max_chunks));
    const int64_t chunks = ceil_div_host(n, chunk_rows);
    std::vector<acc_t> slots(chunks * slot_size, acc_t(0));
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        stats_chunk(x, shape, c * chunk_rows, std::min(n, (c + 1) * chunk_rows),
                    slots.data() + c * slot_size);
    });
    // Chunks added in order, in double; V^T V's lower triangle mirrors the upper one.
    auto total = [&](int64_t idx) {
      double t = 0;
      for (int64_t c = 0; c < chunks; ++c) t += slots[c * slot_size + idx];
      return static_cast<acc_t>(t);
    };
    acc_t* g = gram.mutable_data_ptr<acc_t>();
    for (int64_t p = 0; p < side; ++p)
      for (int64_t q = 0; q < side; ++q)
        g[p * side + q] = (full_gram && q < p) ? g[q * side + p] : total(p * side + q);
    acc_t* sq = sq_norms.mutable_data_ptr<acc_t>();
    acc_t* sm = sums.mutable_data_ptr<acc_t>();
    for (int64_t c = 0; c < 2 * k; ++c) {
      sq[c] = total(side * side + c);
      sm[c] = total(side * side + 2 * k + c);
    }
  });
  return {gram, sq_norms, sums};
}

template <typename A>
const A* optional_ptr(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<A>() : nullptr;
}

std::tuple<at::Tensor, at::Tensor> column_stats_backward_cpu(
    const std::optional<at::Tensor>& grad_gram, const std::optional<at::Tensor>& grad_sq_norms,
    const std::optional<at::Tensor>& grad_sums, const at::Tensor& a, const at::Tensor& b,
    bool full_gram) {
  check_column_stats_backward_args(grad_gram, grad_sq_norms, grad_sums, a, b, full_gram);
  const auto ac = a.contiguous(), bc = b.contiguous();
  const int64_t n = a.size(0), k = a.size(1), w = 2 * k;
  const auto acc_dtype = at::toOpMathType(a.scalar_type());
  const auto weights = backward_weights(grad_gram, k, full_gram, acc_dtype);
  const auto gsq = column_vector(grad_sq_norms, acc_dtype);
  const auto gsum = column_vector(grad_sums, acc_dtype);
  auto grad_a = at::empty({n, k}, a.options());
  auto grad_b = at::empty({n, k}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "column_stats_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Views<scalar_t> x{ac.const_data_ptr<scalar_t>(), bc.const_data_ptr<scalar_t>(), n, k};
    const acc_t* W = optional_ptr<acc_t>(weights);
    const acc_t* sq = optional_ptr<acc_t>(gsq);
    const acc_t* sm = optional_ptr<acc_t>(gsum);
    scalar_t* out[2] = {grad_a.mutable_data_ptr<scalar_t>(), grad_b.mutable_data_ptr<scalar_t>()};
    at::parallel_for(0, n, std::max<int64_t>(1, 8192 / (w * k)), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> v(w), acc(k);
      for (int64_t i = begin; i < end; ++i) {
        x.load_row(i, v.data());
        for (int64_t o = 0; o < 2; ++o) {
          std::fill(acc.begin(), acc.end(), acc_t(0));
          for (int64_t part = 0; W != nullptr && part < 2; ++part) {
            if (!full_gram && part == o) continue;  // the cross Gram pairs a with b only
            for (int64_t d = 0; d < k; ++d) {
              const acc_t xd = v[part * k + d];
              const acc_t* __restrict__ wrow = W + (part * k + d) * w + o * k;
              for (int64_t c = 0; c < k; ++c) acc[c] += xd * wrow[c];
            }
          }
          for (int64_t c = 0; c < k; ++c) {
            const int64_t col = o * k + c;
            acc_t g = acc[c];
            if (sq != nullptr) g += acc_t(2) * v[col] * sq[col];
            if (sm != nullptr) g += sm[col];
            out[o][i * k + c] = static_cast<scalar_t>(g);
          }
        }
      }
    });
  });
  return {grad_a, grad_b};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
column_loss_from_stats_cpu(const at::Tensor& gram, const at::Tensor& sq_norms,
                           const at::Tensor& sums, int64_t kind, double tau, double weight) {
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
    for (int64_t c = 0; c < 2 * k; ++c) u[c] = inverse_norm(sq[c]);
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / rows), [&](int64_t begin, int64_t end) {
      std::vector<T> sim(rows);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t pos = positive_column(kind, r, k);
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t c = 0; c < rows; ++c) {
          sim[c] = g[r * rows + c] * u[r] * u[column_norm_index(kind, c, k)] * inv_tau;
          if (in_denominator(kind, r, c)) mx = fc_max(mx, sim[c]);
        }
        T sum_exp = 0;
        for (int64_t c = 0; c < rows; ++c)
          if (in_denominator(kind, r, c)) sum_exp += fc_exp(sim[c] - mx);
        const T lse = mx + fc_log(sum_exp);
        row_loss[r] = lse - sim[pos];
        T reduced = 0;
        for (int64_t c = 0; c < rows; ++c) {
          const T d = cross_entropy_grad(sim[c], lse, c == pos, in_denominator(kind, r, c), inv_rows);
          dg[r * rows + c] = d * u[r] * u[column_norm_index(kind, c, k)] * inv_tau;
          reduced += d * sim[c];
        }
        row_reduced[r] = reduced;
      }
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
}

}  // namespace fastclust
