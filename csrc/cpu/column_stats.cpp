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
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "common/column_checks.h"
#include "common/column_math.h"
#include "common/column_backward.h"
#include "cpu/cpu_utils.h"

namespace fastclust {
namespace {

constexpr int64_t kMinChunkRows = 128;    // rows per chunk at the least
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMaxSlotBytes = int64_t(64) << 20;  // all chunks' partial Grams together
constexpr int64_t kBackwardRows = 64;     // rows per backward task
// Register tile of the micro-kernel: Mr rows x tile_cols<A>() columns (at most kNrMax). Mr is
// kMrWide where AVX-512 gives 32 vector registers (eight rows of accumulators fit), kMrNarrow
// with 16 (AVX2, SSE2).
constexpr int64_t kMrNarrow = 4, kMrWide = 8, kNrMax = 16;

// The column kernels are compiled for AVX-512 too (FC_CPU_MULTIVERSION's clones plus
// x86-64-v4), where the wider tile doubles the multiply-adds per cycle of the Gram and backward
// passes; with_tile_rows() picks Mr to match the clone the loader chose.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FC_COLUMN_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
inline bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("x86-64-v4");
  return has;
}
#else
#define FC_COLUMN_MULTIVERSION FC_CPU_MULTIVERSION
inline bool cpu_has_avx512() { return false; }
#endif

// The wide tile where AVX-512 has the registers for it, unless FASTCLUST_CPU_NARROW_TILES=1
// asks for the narrow one (read once, at the first call).
bool wide_tiles() {
  static const bool wide = [] {
    const char* narrow = std::getenv("FASTCLUST_CPU_NARROW_TILES");
    return cpu_has_avx512() && !(narrow != nullptr && std::string(narrow) == "1");
  }();
  return wide;
}

int64_t cpu_column_tile_rows() { return wide_tiles() ? kMrWide : kMrNarrow; }

// f(std::integral_constant<int64_t, Mr>{}) with this process's register-tile rows.
template <typename F>
void with_tile_rows(const F& f) {
  if (wide_tiles())
    f(std::integral_constant<int64_t, kMrWide>{});
  else
    f(std::integral_constant<int64_t, kMrNarrow>{});
}

inline int64_t ceil_div_host(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div_host(a, b) * b; }

// Tasks of fewer multiply-adds than this run on the calling thread: forking threads costs
// more than they save, and far more on a busy machine. Results do not depend on it.
constexpr int64_t kMinTaskWork = int64_t(1) << 18;
inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, ceil_div_host(kMinTaskWork, std::max<int64_t>(1, work_per_item)));
}

// Two (n, k) row-major views read as the 2k columns of V = [a | b].
template <typename T>
struct Views {
  const T* a;
  const T* b;
  int64_t n, k;
  // Rows [i0, i1) of V into `rows` (row stride ld >= 2k + kCopyChunk), in the accumulation
  // dtype. Copied in whole chunks of kCopyChunk entries, the last one running past the row's end
  // (into b's part, written next, or the padding) wherever it stays inside the view: a copy of
  // k entries would compile to a library memcpy call per row, which costs more than the Gram
  // itself at k = 10.
  static constexpr int64_t kCopyChunk = 16;
  template <typename A>
  __attribute__((always_inline)) void load_rows(int64_t i0, int64_t i1, A* rows, int64_t ld) const {
    for (int64_t i = i0; i < i1; ++i) {
      for (int64_t part = 0; part < 2; ++part) {
        const T* src = (part == 0 ? a : b) + i * k;
        A* dst = rows + (i - i0) * ld + part * k;
        int64_t c = 0;
        for (; c < k && (i * k + c) + kCopyChunk <= n * k; c += kCopyChunk)
#pragma GCC unroll 16
          for (int64_t j = 0; j < kCopyChunk; ++j) dst[c + j] = static_cast<A>(src[c + j]);
        for (; c < k; ++c) dst[c] = static_cast<A>(src[c]);
      }
    }
  }
};

// A register-tile row: 64 bytes of A as one GCC vector. Each clone maps it onto its own
// registers (one AVX-512 register, two AVX2 or four SSE2 ones).
template <typename A>
struct Lanes {
  typedef A type __attribute__((vector_size(64)));
  static constexpr int64_t count = 64 / sizeof(A);
};

// Columns of the register tile (16 float, 8 double).
template <typename A>
constexpr int64_t tile_cols() { return Lanes<A>::count; }

template <typename A>
using TileRow = typename Lanes<A>::type;

// By reference rather than returned: a 64-byte vector has no register ABI outside the
// AVX-512 clone.
template <typename A>
inline void load_tile_row(const A* p, TileRow<A>& v) {
  std::memcpy(&v, p, sizeof v);
}

// out[j] = row[j] for j < count <= tile_cols<A>(): one vector store for a whole tile row, and
// a partial one in power-of-two pieces (constant-size copies compile to moves, where a copy
// loop of `count` entries would become a library memcpy call per row).
template <typename A, typename T>
inline void store_tile_row(const TileRow<A>& row, int64_t count, T* out) {
  static_assert(std::is_same_v<A, T>, "the CPU kernels accumulate float and double in their own type");
  if (count == tile_cols<A>()) {
    std::memcpy(out, &row, sizeof row);
    return;
  }
  A lanes[kNrMax];
  std::memcpy(lanes, &row, sizeof row);
  int64_t j = 0;
  const auto piece = [&](auto width) {
    if (count - j >= width) {
      std::memcpy(out + j, lanes + j, width * sizeof(T));
      j += width;
    }
  };
  static_assert(kNrMax <= 16, "pieces of 8, 4, 2 and 1 cover a partial row");
  piece(std::integral_constant<int64_t, 8>{});
  piece(std::integral_constant<int64_t, 4>{});
  piece(std::integral_constant<int64_t, 2>{});
  piece(std::integral_constant<int64_t, 1>{});
}

// sum[r][j] += sum_{s < steps} x[s xs + r xr] * y[s ys + j] for r < Mr, j < tile_cols<A>():
// the kernel of both the statistics (s runs over rows of V) and the backward (s runs over V's
// columns), in ascending s. The callers pad x and y so that every read is in bounds; outputs
// past the matrices' edges are computed and dropped.
template <int64_t Mr, typename A>
__attribute__((always_inline)) inline void micro_tile(const A* __restrict__ x, int64_t xs,
                                                      int64_t xr, const A* __restrict__ y,
                                                      int64_t ys, int64_t steps,
                                                      TileRow<A> (&sum)[kMrWide]) {
  for (int64_t s = 0; s < steps; ++s) {
    TileRow<A> y_row;
    load_tile_row(y + s * ys, y_row);
    const A* xrow = x + s * xs;
#pragma GCC unroll 8
    for (int64_t r = 0; r < Mr; ++r) sum[r] += xrow[r * xr] * y_row;
  }
}

// The Gram's rows are V's columns [0, side); its columns start at V column `right` (k for the
// cross Gram a^T b, 0 for V^T V, of which only the upper triangle is kept).
struct GramShape {
  int64_t side, right;
  bool full;
};

// Row stride of a staged block of V rows: room for a tile reading past V's last column.
inline int64_t staged_stride(int64_t k) { return 2 * k + kNrMax + kMrWide; }
static_assert(kNrMax + kMrWide >= Views<float>::kCopyChunk, "a row copy's last chunk must fit");

// Rows [i0, i1) of V, row stride staged_stride(k), followed by zero rows up to padded_rows; the
// columns past 2k are zero too (tiles read them into outputs that are dropped). Only the
// padding is cleared: zero-filling the whole block first cost as much as copying it.
template <typename T, typename A>
std::unique_ptr<A[]> stage_rows(const Views<T>& x, int64_t i0, int64_t i1, int64_t padded_rows) {
  const int64_t ld = staged_stride(x.k), w = 2 * x.k, rows = i1 - i0;
  std::unique_ptr<A[]> staged(new A[padded_rows * ld]);
  x.load_rows(i0, i1, staged.get(), ld);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < kNrMax + kMrWide; ++c) staged[i * ld + w + c] = A(0);
  std::fill(staged.get() + rows * ld, staged.get() + padded_rows * ld, A(0));
  return staged;
}

// slot = [gram (side x side) | sq_norms (2k) | sums (2k)] of rows [i0, i1).
template <int64_t Mr, typename T, typename A>
FC_COLUMN_MULTIVERSION void stats_chunk(const Views<T>& x, GramShape s, int64_t i0, int64_t i1,
                                     A* __restrict__ slot) {
  const int64_t w = 2 * x.k, ld = staged_stride(x.k), rows = i1 - i0;
  A* __restrict__ gram = slot;
  A* __restrict__ sq = slot + s.side * s.side;
  A* __restrict__ sum = sq + w;
  const auto staged = stage_rows<T, A>(x, i0, i1, rows);
  for (int64_t i = 0; i < rows; ++i) {
    const A* v = staged.get() + i * ld;
    for (int64_t c = 0; c < w; ++c) {
      sq[c] += v[c] * v[c];
      sum[c] += v[c];
    }
  }
  constexpr int64_t nr = tile_cols<A>();
  for (int64_t p0 = 0; p0 < s.side; p0 += Mr) {
    // V^T V: tiles wholly below the diagonal are mirrors; skip them.
    for (int64_t q0 = s.full ? p0 / nr * nr : 0; q0 < s.side; q0 += nr) {
      TileRow<A> tile[kMrWide];
#pragma GCC unroll 8
      for (int64_t r = 0; r < Mr; ++r) tile[r] = TileRow<A>{};
      micro_tile<Mr>(staged.get() + p0, ld, 1, staged.get() + s.right + q0, ld, rows, tile);
      for (int64_t r = 0; r < Mr && p0 + r < s.side; ++r)
        store_tile_row<A>(tile[r], std::min(nr, s.side - q0), gram + (p0 + r) * s.side + q0);
    }
  }
}

// grad_o[i, c] = 2 V[i, o k + c] grad_sq + grad_sums + sum over parts p of
// V_p[i, :] W[p k + :, o k + c], for rows [i0, i1). W (null: zero) has row stride ldw and room
// for a tile past its last column; grad_sq and grad_sum hold 2k + kNrMax entries (zero padded).
template <int64_t Mr, typename T, typename A>
FC_COLUMN_MULTIVERSION void backward_rows(const Views<T>& x, bool full, const A* W, int64_t ldw,
                                          const A* grad_sq, const A* grad_sum, int64_t i0,
                                          int64_t i1, T* grad_a, T* grad_b) {
  const int64_t k = x.k, ld = staged_stride(k), rows = i1 - i0;
  const auto staged = stage_rows<T, A>(x, i0, i1, round_up(rows, Mr));
  constexpr int64_t nr = tile_cols<A>();
  for (int64_t o = 0; o < 2; ++o) {
    T* out = o == 0 ? grad_a : grad_b;
    for (int64_t r0 = 0; r0 < rows; r0 += Mr) {
      for (int64_t c0 = 0; c0 < k; c0 += nr) {
        const int64_t col = o * k + c0;
        TileRow<A> sq, sm, sum[kMrWide];
        load_tile_row(grad_sq + col, sq);
        load_tile_row(grad_sum + col, sm);
        const TileRow<A> sq2 = A(2) * sq;
#pragma GCC unroll 8
        for (int64_t r = 0; r < Mr; ++r) {
          load_tile_row(staged.get() + (r0 + r) * ld + col, sum[r]);
          sum[r] = sum[r] * sq2 + sm;
        }
        for (int64_t part = 0; W != nullptr && part < 2; ++part) {
          if (!full && part == o) continue;  // the cross Gram pairs a with b only
          micro_tile<Mr>(staged.get() + r0 * ld + part * k, 1, ld, W + part * k * ldw + col, ldw,
                         k, sum);
        }
        for (int64_t r = 0; r < Mr && r0 + r < rows; ++r)
          store_tile_row<A>(sum[r], std::min(nr, k - c0), out + (i0 + r0 + r) * k + c0);
      }
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
    with_tile_rows([&](auto mr) {
      at::parallel_for(0, chunks, grain_for(chunk_rows * side * side), [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c)
          stats_chunk<decltype(mr)::value>(x, shape, c * chunk_rows, std::min(n, (c + 1) * chunk_rows),
                            slots.data() + c * slot_size);
      });
    });
    // Chunks added in order, in double; V^T V's lower triangle mirrors the upper one.
    std::vector<double> totals(slot_size, 0.0);
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t idx = 0; idx < slot_size; ++idx) totals[idx] += slots[c * slot_size + idx];
    auto total = [&](int64_t idx) { return static_cast<acc_t>(totals[idx]); };
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

std::tuple<at::Tensor, at::Tensor> column_stats_backward_cpu(
    const std::optional<at::Tensor>& grad_gram, const std::optional<at::Tensor>& grad_sq_norms,
    const std::optional<at::Tensor>& grad_sums, const at::Tensor& a, const at::Tensor& b,
    bool full_gram) {
  const auto in = prepare_stats_backward(grad_gram, grad_sq_norms, grad_sums, a, b, full_gram);
  const int64_t n = in.n, k = in.k, w = 2 * k;
  auto grad_a = at::empty({n, k}, a.options());
  auto grad_b = at::empty({n, k}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "column_stats_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Views<scalar_t> x{in.a.const_data_ptr<scalar_t>(), in.b.const_data_ptr<scalar_t>(), n, k};
    // W with room for a register tile reading past its last column (a k x k copy).
    const int64_t ldw = w + kNrMax;
    std::vector<acc_t> padded;
    if (in.grad_gram.defined()) {
      padded.assign(w * ldw, acc_t(0));
      const acc_t* g = in.grad_gram.const_data_ptr<acc_t>();
      for (int64_t row = 0; row < w; ++row)
        for (int64_t col = 0; col < w; ++col)
          if (full_gram || (row < k) != (col < k))
            padded[row * ldw + col] = backward_weight(g, k, full_gram, row, col);
    }
    const acc_t* W = padded.empty() ? nullptr : padded.data();
    // The vector gradients zero padded (an absent one is zero) for whole-tile-row loads.
    auto padded_vector = [&](const at::Tensor& v) {
      std::vector<acc_t> out(w + kNrMax, acc_t(0));
      if (v.defined()) std::memcpy(out.data(), v.const_data_ptr<acc_t>(), w * sizeof(acc_t));
      return out;
    };
    const auto grad_sq = padded_vector(in.grad_sq_norms), grad_sum = padded_vector(in.grad_sums);
    const acc_t* sq = grad_sq.data();
    const acc_t* sm = grad_sum.data();
    scalar_t* ga = grad_a.mutable_data_ptr<scalar_t>();
    scalar_t* gb = grad_b.mutable_data_ptr<scalar_t>();
    const int64_t block_work = kBackwardRows * w * k;
    with_tile_rows([&](auto mr) {
      at::parallel_for(0, ceil_div_host(n, kBackwardRows), grain_for(block_work), [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t)
          backward_rows<decltype(mr)::value>(x, full_gram, W, ldw, sq, sm, t * kBackwardRows,
                              std::min(n, (t + 1) * kBackwardRows), ga, gb);
      });
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
FC_COLUMN_MULTIVERSION void loss_row(const T* __restrict__ g_row, const T* __restrict__ u_cols,
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

// No tensor argument to dispatch on: one kernel for every dispatch key.
TORCH_LIBRARY_IMPL(fastclust, CompositeExplicitAutograd, m) {
  m.impl("cpu_column_tile_rows", &cpu_column_tile_rows);
}

TORCH_LIBRARY_IMPL(fastclust, CPU, m) {
  m.impl("column_stats", &column_stats_cpu);
  m.impl("column_stats_backward", &column_stats_backward_cpu);
  m.impl("column_loss_from_stats", &column_loss_from_stats_cpu);
  m.impl("column_loss", [](const at::Tensor& a, const at::Tensor& b, int64_t kind, double tau,
                           double weight) {
    return fused_column_loss(a, b, kind, tau, weight, column_stats_cpu, column_loss_from_stats_cpu);
  });
}

}  // namespace fastclust
