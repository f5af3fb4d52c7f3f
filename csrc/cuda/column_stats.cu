// CUDA kernels of the column-statistics family (asv_similarity, pica_loss,
// cluster_contrastive_loss).
//
// Statistics: the 2k columns of V = [a | b] are cut into tiles of kTile columns; a block owns
// one (left tile, right tile) pair of the Gram and one slice of the n rows (a "split"), sums
// that slice in registers and writes its partial tile to its own slot; a second kernel adds the
// splits in a fixed order (in double). Column norms and sums come from the same staged rows.
// Loss: one block per row of the (k x k or 2k x 2k) similarity matrix, then one block for the
// column-wise sums, the entropy terms and the totals. Backward: one pass over n, each output
// element owned by one thread. No atomics anywhere: results are bitwise reproducible.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>

#include "common/column_checks.h"
#include "common/column_math.h"
#include "common/column_host.h"
#include "cuda/cuda_utils.cuh"

namespace fastclust {
namespace {

constexpr int kTile = 64;                         // columns of a Gram / gradient tile
constexpr int kThreadSide = 16;                   // 16 x 16 threads per tile
static_assert(kThreadSide * kThreadSide == kThreads, "one thread per 4 x 4 outputs of a tile");
constexpr int kPerThread = kTile / kThreadSide;   // 4 x 4 outputs per thread
constexpr int kStep = 16;                         // rows (or reduction entries) staged per step
constexpr int kTileElems = kTile * kTile;
constexpr int kFinishThreads = 1024;

// Two (n, k) row-major views read as the 2k columns of V = [a | b].
template <typename scalar_t>
struct Views {
  const scalar_t* a;
  const scalar_t* b;
  int64_t n, k;
  template <typename acc_t>
  __device__ __forceinline__ acc_t at(int64_t i, int64_t col) const {
    return static_cast<acc_t>(col < k ? a[i * k + col] : b[i * k + col - k]);
  }
};

// acc[r][c] += sum_s lhs[s][4 ty + r] * rhs[s][4 tx + c]: the outer-product step of both
// the statistics (s runs over rows of V) and the backward (s runs over V's columns). A thread's
// four rows and four columns are adjacent, so each comes from shared memory in one vector load
// (and a warp's lhs reads are broadcasts): 16 FMAs per two loads keep the FMA units, not
// shared memory, the limit.
template <typename acc_t>
__device__ __forceinline__ void tile_product(const acc_t (&lhs)[kStep][kTile],
                                             const acc_t (&rhs)[kStep][kTile],
                                             acc_t (&acc)[kPerThread][kPerThread]) {
  const int tx = threadIdx.x % kThreadSide, ty = threadIdx.x / kThreadSide;
#pragma unroll
  for (int s = 0; s < kStep; ++s) {
    acc_t l[kPerThread], r[kPerThread];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) l[i] = lhs[s][ty * kPerThread + i];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) r[i] = rhs[s][tx * kPerThread + i];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i)
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) acc[i][j] += l[i] * r[j];
  }
}

// Tiles of a list of V's columns: `parts` parts (a, b) from part `base` on, tiles_per_part each.
struct TileList {
  int64_t k, tiles_per_part;
  int base, parts;
  __host__ __device__ int64_t count() const { return parts * tiles_per_part; }
  // V column of the tile's first column, and how many of its kTile columns exist.
  __host__ __device__ int64_t first_column(int64_t t) const {
    return (base + t / tiles_per_part) * k + (t % tiles_per_part) * kTile;
  }
  __host__ __device__ int64_t width(int64_t t) const {
    const int64_t w = k - (t % tiles_per_part) * kTile;
    return w < kTile ? w : kTile;
  }
  // Tile and offset in it of the list's j-th column.
  __host__ __device__ int64_t tile_of(int64_t j) const {
    return (j / k) * tiles_per_part + (j % k) / kTile;
  }
  __host__ __device__ int64_t offset_of(int64_t j) const { return (j % k) % kTile; }
};

// Which Gram tiles exist: every (left, right) pair for a^T b; for V^T V only left <= right,
// numbered row after row.
struct GramTiles {
  TileList left, right;
  bool full;
  __host__ __device__ int64_t count() const {
    const int64_t t = left.count();
    return full ? t * (t + 1) / 2 : t * right.count();
  }
  __host__ __device__ int64_t index(int64_t lt, int64_t rt) const {
    return full ? lt * left.count() - lt * (lt - 1) / 2 + (rt - lt) : lt * right.count() + rt;
  }
  __device__ void decode(int64_t idx, int64_t& lt, int64_t& rt) const {
    if (!full) {
      lt = idx / right.count();
      rt = idx % right.count();
      return;
    }
    lt = 0;
    while (idx >= left.count() - lt) idx -= left.count() - lt++;
    rt = lt + idx;
  }
};

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) column_stats_kernel(
    Views<scalar_t> x, GramTiles tiles, int64_t rows_per_split, acc_t* __restrict__ partial_gram,
    acc_t* __restrict__ partial_sq, acc_t* __restrict__ partial_sum) {
  __shared__ __align__(16) acc_t lhs[kStep][kTile];
  __shared__ __align__(16) acc_t rhs[kStep][kTile];
  int64_t lt, rt;
  tiles.decode(blockIdx.x, lt, rt);
  const int64_t lcol = tiles.left.first_column(lt), lwidth = tiles.left.width(lt);
  const int64_t rcol = tiles.right.first_column(rt), rwidth = tiles.right.width(rt);
  // One block per split computes each column's norm and sum: for a^T b the first tile of the
  // other side, for V^T V the diagonal tile.
  const bool left_stats = tiles.full ? lt == rt : rt == 0;
  const bool right_stats = !tiles.full && lt == 0;
  const int64_t split = blockIdx.y;
  const int64_t i_begin = split * rows_per_split;
  const int64_t i_end = min(x.n, i_begin + rows_per_split);
  const int tid = threadIdx.x;
  // Threads [0, kTile) keep the left tile's column statistics, [kTile, 2 kTile) the right's.
  const int stat_col = tid % kTile;
  const bool stat_left = left_stats && tid < kTile && stat_col < lwidth;
  const bool stat_right = right_stats && tid >= kTile && tid < 2 * kTile && stat_col < rwidth;

  acc_t acc[kPerThread][kPerThread] = {};
  acc_t sq = 0, sum = 0;
  for (int64_t i0 = i_begin; i0 < i_end; i0 += kStep) {
    for (int e = tid; e < kStep * kTile; e += kThreads) {
      const int r = e / kTile, c = e % kTile;
      const int64_t i = i0 + r;
      lhs[r][c] = (i < i_end && c < lwidth) ? x.template at<acc_t>(i, lcol + c) : acc_t(0);
      rhs[r][c] = (i < i_end && c < rwidth) ? x.template at<acc_t>(i, rcol + c) : acc_t(0);
    }
    __syncthreads();
    tile_product(lhs, rhs, acc);
    if (stat_left || stat_right) {
      const acc_t(&staged)[kStep][kTile] = stat_left ? lhs : rhs;
#pragma unroll
      for (int r = 0; r < kStep; ++r) {
        const acc_t v = staged[r][stat_col];
        sq += v * v;
        sum += v;
      }
    }
    __syncthreads();  // the next step overwrites the staged rows
  }
  const int tx = tid % kThreadSide, ty = tid / kThreadSide;
  acc_t* out = partial_gram + (split * gridDim.x + blockIdx.x) * kTileElems;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i)
#pragma unroll
    for (int j = 0; j < kPerThread; ++j)
      out[(ty * kPerThread + i) * kTile + tx * kPerThread + j] = acc[i][j];
  if (stat_left || stat_right) {
    const int64_t col = (stat_left ? lcol : rcol) + stat_col;
    partial_sq[split * 2 * x.k + col] = sq;
    partial_sum[split * 2 * x.k + col] = sum;
  }
}

// gram, then sq_norms, then sums: each element the sum of its splits in split order.
template <typename acc_t>
__global__ void reduce_splits_kernel(const acc_t* __restrict__ partial_gram,
                                     const acc_t* __restrict__ partial_sq,
                                     const acc_t* __restrict__ partial_sum, GramTiles tiles,
                                     int64_t splits, int64_t side, acc_t* __restrict__ gram,
                                     acc_t* __restrict__ sq_norms, acc_t* __restrict__ sums) {
  const int64_t columns = 2 * tiles.left.k, gram_elems = side * side;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= gram_elems + 2 * columns) return;
  double total = 0;
  if (idx < gram_elems) {
    int64_t p = idx / side, q = idx % side;
    if (tiles.full && q < p) {  // V^T V's lower triangle mirrors the upper one exactly
      const int64_t t = p;
      p = q;
      q = t;
    }
    const int64_t lt = tiles.left.tile_of(p), rt = tiles.right.tile_of(q);
    const int64_t slot = tiles.index(lt, rt), count = tiles.count();
    const int64_t in_tile = tiles.left.offset_of(p) * kTile + tiles.right.offset_of(q);
    for (int64_t s = 0; s < splits; ++s)
      total += static_cast<double>(partial_gram[(s * count + slot) * kTileElems + in_tile]);
    gram[idx] = static_cast<acc_t>(total);
    return;
  }
  const int64_t j = idx - gram_elems;
  const acc_t* partial = j < columns ? partial_sq : partial_sum;
  const int64_t col = j % columns;
  for (int64_t s = 0; s < splits; ++s) total += static_cast<double>(partial[s * columns + col]);
  (j < columns ? sq_norms : sums)[col] = static_cast<acc_t>(total);
}

// grad_o = sum over parts p of V_p W[p, o] + 2 V_o * grad_sq_o + grad_sums_o, for output part
// o = blockIdx.y / tiles_per_part, over a tile of kTile rows x kTile columns.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) column_stats_backward_kernel(
    Views<scalar_t> x, TileList cols, bool full, const acc_t* __restrict__ grad_gram,
    const acc_t* __restrict__ grad_sq, const acc_t* __restrict__ grad_sum,
    scalar_t* __restrict__ grad_a, scalar_t* __restrict__ grad_b) {
  __shared__ __align__(16) acc_t lhs[kStep][kTile];  // V_p[row0 + r, d0 + s] at [s][r]
  __shared__ __align__(16) acc_t rhs[kStep][kTile];  // W[p k + d0 + s, o k + col0 + c] at [s][c]
  const int64_t k = x.k;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t tile = blockIdx.y, o = tile / cols.tiles_per_part;
  const int64_t col0 = (tile % cols.tiles_per_part) * kTile, width = cols.width(tile);
  const int tid = threadIdx.x;
  const bool transposed = !full && o == 0;
  acc_t acc[kPerThread][kPerThread] = {};
  for (int p = 0; grad_gram != nullptr && p < 2; ++p) {
    if (!full && p == o) continue;  // the cross Gram a^T b pairs a with b only
    for (int64_t d0 = 0; d0 < k; d0 += kStep) {
      for (int e = tid; e < kStep * kTile; e += kThreads) {
        const int r = e / kStep, s = e % kStep;
        const int64_t i = row0 + r, d = d0 + s;
        lhs[s][r] = (i < x.n && d < k) ? x.template at<acc_t>(i, p * k + d) : acc_t(0);
      }
      for (int e = tid; e < kStep * kTile; e += kThreads) {
        // Neighbouring threads read neighbouring entries of the Gram's gradient: for grad_a of
        // a^T b, W's block is that gradient transposed.
        const int s = transposed ? e % kStep : e / kTile, c = transposed ? e / kStep : e % kTile;
        const int64_t d = d0 + s;
        rhs[s][c] = (d < k && c < width) ? backward_weight(grad_gram, k, full, p * k + d, o * k + col0 + c)
                                         : acc_t(0);
      }
      __syncthreads();
      tile_product(lhs, rhs, acc);
      __syncthreads();
    }
  }
  const int tx = tid % kThreadSide, ty = tid / kThreadSide;
  scalar_t* out = o == 0 ? grad_a : grad_b;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t row = row0 + ty * kPerThread + i;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t c = tx * kPerThread + j;
      if (row >= x.n || c >= width) continue;
      const int64_t col = o * k + col0 + c;
      acc_t g = acc[i][j];
      if (grad_sq != nullptr) g += acc_t(2) * x.template at<acc_t>(row, col) * grad_sq[col];
      if (grad_sum != nullptr) g += grad_sum[col];
      out[row * k + col0 + c] = static_cast<scalar_t>(g);
    }
  }
}

template <typename T>
__device__ __forceinline__ T block_max(T v, T* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = scratch[0];
  for (int i = 1; i < blockDim.x / kWarp; ++i) total = fc_max(total, scratch[i]);
  return total;
}

struct LossParams {
  int64_t k, kind, rows;
};

template <typename T>
__device__ __forceinline__ T similarity_at(const T* gram, const T* sq, LossParams p, int64_t r,
                                           int64_t c, T inv_norm_r, T inv_tau) {
  return gram[r * p.rows + c] * inv_norm_r * inverse_clamped_norm(sq[column_norm_index(p.kind, c, p.k)]) *
         inv_tau;
}

// Row r of the similarity matrix: its cross-entropy, d ce / d gram, and sum_c dce/dsim * sim.
template <typename T>
__global__ void __launch_bounds__(kThreads) loss_rows_kernel(
    const T* __restrict__ gram, const T* __restrict__ sq, LossParams p, T inv_tau,
    T* __restrict__ grad_gram, T* __restrict__ row_loss, T* __restrict__ row_reduced) {
  __shared__ T scratch[kThreads / kWarp];
  const int64_t r = blockIdx.x, pos = positive_column(p.kind, r, p.k);
  const T inv_norm_r = inverse_clamped_norm(sq[r]), inv_rows = T(1) / static_cast<T>(p.rows);
  T mx = -INFINITY;
  for (int64_t c = threadIdx.x; c < p.rows; c += blockDim.x)
    if (in_denominator(p.kind, r, c)) mx = fc_max(mx, similarity_at(gram, sq, p, r, c, inv_norm_r, inv_tau));
  mx = block_max(mx, scratch);
  T sum_exp = 0;
  for (int64_t c = threadIdx.x; c < p.rows; c += blockDim.x)
    if (in_denominator(p.kind, r, c)) sum_exp += fc_exp(similarity_at(gram, sq, p, r, c, inv_norm_r, inv_tau) - mx);
  const T lse = mx + fc_log(block_sum(sum_exp, scratch));
  T reduced = 0;
  for (int64_t c = threadIdx.x; c < p.rows; c += blockDim.x) {
    const T sim = similarity_at(gram, sq, p, r, c, inv_norm_r, inv_tau);
    const T softmax = in_denominator(p.kind, r, c) ? fc_exp(sim - lse) : T(0);
    const T d = cross_entropy_grad(softmax, c == pos, inv_rows);
    grad_gram[r * p.rows + c] = d * inv_norm_r * inverse_clamped_norm(sq[column_norm_index(p.kind, c, p.k)]) * inv_tau;
    reduced += d * sim;
  }
  reduced = block_sum(reduced, scratch);
  if (threadIdx.x == 0) {
    row_loss[r] = lse - similarity_at(gram, sq, p, r, pos, inv_norm_r, inv_tau);
    row_reduced[r] = reduced;
  }
}

// One block: column-wise reductions, d ce / d sq_norms, the entropy terms and the totals.
template <typename T>
__global__ void __launch_bounds__(kFinishThreads) loss_finish_kernel(
    const T* __restrict__ gram, const T* __restrict__ sq, const T* __restrict__ sums,
    LossParams p, double weight, const T* __restrict__ grad_gram, const T* __restrict__ row_loss,
    const T* __restrict__ row_reduced, T* __restrict__ grad_sq, T* __restrict__ grad_sums,
    T* __restrict__ loss, T* __restrict__ cross_entropy, T* __restrict__ entropy_term) {
  __shared__ double scratch[kFinishThreads / kWarp];
  const int64_t k = p.k;
  for (int64_t c = threadIdx.x; c < 2 * k; c += blockDim.x) {
    // Column-wise sum of dce/dsim * sim, as dG * G, row after row.
    const int64_t sim_col = p.kind == kPica ? c - k : c;
    T col_reduced = 0;
    if (sim_col >= 0)
      for (int64_t r = 0; r < p.rows; ++r) col_reduced += grad_gram[r * p.rows + sim_col] * gram[r * p.rows + sim_col];
    const T reduced = p.kind == kPica ? (c < k ? row_reduced[c] : col_reduced) : row_reduced[c] + col_reduced;
    grad_sq[c] = sq_norm_grad(sq[c], inverse_clamped_norm(sq[c]), reduced);
  }
  double ce = 0;
  for (int64_t r = threadIdx.x; r < p.rows; r += blockDim.x) ce += static_cast<double>(row_loss[r]);
  ce = block_sum(ce, scratch) / static_cast<double>(p.rows);
  double entropy = 0;
  const int views = p.kind == kPica ? 1 : 2;
  for (int view = 0; view < 2; ++view) {
    const T* sv = sums + view * k;
    T* dv = grad_sums + view * k;
    if (view >= views) {
      for (int64_t c = threadIdx.x; c < k; c += blockDim.x) dv[c] = T(0);
      continue;
    }
    double part = 0;
    for (int64_t c = threadIdx.x; c < k; c += blockDim.x) part += static_cast<double>(sv[c]);
    const T mass = static_cast<T>(block_sum(part, scratch));
    const T scale = T(1) / floored_mass(mass);
    double neg_entropy = 0, g_dot_z = 0;
    for (int64_t c = threadIdx.x; c < k; c += blockDim.x) {
      const T z = sv[c] * scale;
      neg_entropy += static_cast<double>(z_log_z(z));
      g_dot_z += static_cast<double>(entropy_grad_z(z) * z);
    }
    neg_entropy = block_sum(neg_entropy, scratch);
    const T gz = static_cast<T>(block_sum(g_dot_z, scratch));
    for (int64_t c = threadIdx.x; c < k; c += blockDim.x)
      dv[c] = -entropy_grad_sum(entropy_grad_z(sv[c] * scale), gz, mass);
    entropy += log(static_cast<double>(k)) + neg_entropy;
  }
  if (threadIdx.x == 0) {
    *cross_entropy = static_cast<T>(ce);
    *entropy_term = static_cast<T>(entropy);
    *loss = static_cast<T>(ce + weight * entropy);
  }
}

int multiprocessor_count(const at::Tensor& t) {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, t.get_device()));
  return count;
}

GramTiles gram_tiles(int64_t k, bool full_gram) {
  const int64_t per_part = ceil_div(k, kTile);
  if (full_gram) return {{k, per_part, 0, 2}, {k, per_part, 0, 2}, true};
  return {{k, per_part, 0, 1}, {k, per_part, 1, 1}, false};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> column_stats_cuda(const at::Tensor& a,
                                                                 const at::Tensor& b,
                                                                 bool full_gram) {
  check_column_views(a, b);
  const c10::cuda::CUDAGuard guard(a.device());
  const auto ac = a.contiguous(), bc = b.contiguous();
  const int64_t n = a.size(0), k = a.size(1), side = gram_side(k, full_gram);
  const auto opts = a.options().dtype(at::toOpMathType(a.scalar_type()));
  const GramTiles tiles = gram_tiles(k, full_gram);
  const int64_t tile_blocks = tiles.count();
  FC_CHECK(tile_blocks <= 2147483647, "too many clusters (k = ", k, ") for one launch");
  // Enough splits of n for about four blocks per multiprocessor, each of at least kTile rows.
  const int64_t wanted = ceil_div(4 * multiprocessor_count(a), tile_blocks);
  const int64_t max_splits = std::min<int64_t>(ceil_div(n, kTile), 65535);
  const int64_t rows_per_split =
      ceil_div(ceil_div(n, std::clamp<int64_t>(wanted, 1, max_splits)), kStep) * kStep;
  const int64_t splits = ceil_div(n, rows_per_split);
  auto partial_gram = at::empty({splits, tile_blocks, kTileElems}, opts);
  auto partial_sq = at::empty({splits, 2 * k}, opts);
  auto partial_sum = at::empty({splits, 2 * k}, opts);
  auto gram = at::empty({side, side}, opts);
  auto sq_norms = at::empty({2 * k}, opts);
  auto sums = at::empty({2 * k}, opts);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "column_stats_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Views<scalar_t> x{ac.const_data_ptr<scalar_t>(), bc.const_data_ptr<scalar_t>(), n, k};
    const dim3 grid(static_cast<unsigned>(tile_blocks), static_cast<unsigned>(splits));
    FC_LAUNCH(grid, kThreads, stream, column_stats_kernel<scalar_t, acc_t>)(
            x, tiles, rows_per_split, partial_gram.mutable_data_ptr<acc_t>(),
            partial_sq.mutable_data_ptr<acc_t>(), partial_sum.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t outputs = side * side + 4 * k;
    FC_LAUNCH(ceil_div(outputs, kThreads), kThreads, stream, reduce_splits_kernel<acc_t>)(
        partial_gram.const_data_ptr<acc_t>(), partial_sq.const_data_ptr<acc_t>(),
        partial_sum.const_data_ptr<acc_t>(), tiles, splits, side, gram.mutable_data_ptr<acc_t>(),
        sq_norms.mutable_data_ptr<acc_t>(), sums.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {gram, sq_norms, sums};
}

std::tuple<at::Tensor, at::Tensor> column_stats_backward_cuda(
    const std::optional<at::Tensor>& grad_gram, const std::optional<at::Tensor>& grad_sq_norms,
    const std::optional<at::Tensor>& grad_sums, const at::Tensor& a, const at::Tensor& b,
    bool full_gram) {
  const auto in = prepare_stats_backward(grad_gram, grad_sq_norms, grad_sums, a, b, full_gram);
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t n = in.n, k = in.k;
  auto grad_a = at::empty({n, k}, a.options());
  auto grad_b = at::empty({n, k}, a.options());
  const TileList cols{k, ceil_div(k, kTile), 0, 2};
  const int64_t row_tiles = ceil_div(n, kTile);
  FC_CHECK(row_tiles <= 2147483647 && cols.count() <= 65535,
           "the views are too large (n = ", n, ", k = ", k, ") for one launch");
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "column_stats_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Views<scalar_t> x{in.a.const_data_ptr<scalar_t>(), in.b.const_data_ptr<scalar_t>(), n, k};
    const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(cols.count()));
    FC_LAUNCH(grid, kThreads, stream, column_stats_backward_kernel<scalar_t, acc_t>)(
            x, cols, full_gram, data_or_null<acc_t>(in.grad_gram), data_or_null<acc_t>(in.grad_sq_norms),
            data_or_null<acc_t>(in.grad_sums), grad_a.mutable_data_ptr<scalar_t>(),
            grad_b.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_a, grad_b};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
column_loss_from_stats_cuda(const at::Tensor& gram, const at::Tensor& sq_norms,
                            const at::Tensor& sums, c10::string_view kind_name, double tau,
                            double weight) {
  const int64_t kind = column_loss_kind(kind_name);
  const int64_t k = check_column_loss_args(gram, sq_norms, sums, kind, tau, weight);
  const c10::cuda::CUDAGuard guard(gram.device());
  const LossParams p{k, kind, similarity_rows(kind, k)};
  const auto G = gram.contiguous(), SQ = sq_norms.contiguous(), S = sums.contiguous();
  const auto opts = gram.options();
  auto grad_gram = at::empty({p.rows, p.rows}, opts);
  auto grad_sq = at::empty({2 * k}, opts);
  auto grad_sums = at::empty({2 * k}, opts);
  auto row_scratch = at::empty({2, p.rows}, opts);  // per-row loss and reduction
  auto loss = at::empty({}, opts), cross_entropy = at::empty({}, opts), entropy = at::empty({}, opts);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(gram.scalar_type(), "column_loss_from_stats_cuda", [&] {
    using T = scalar_t;
    T* rows = row_scratch.mutable_data_ptr<T>();
    FC_LAUNCH(p.rows, kThreads, stream, loss_rows_kernel<T>)(
        G.const_data_ptr<T>(), SQ.const_data_ptr<T>(), p, static_cast<T>(1.0 / tau),
        grad_gram.mutable_data_ptr<T>(), rows, rows + p.rows);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    FC_LAUNCH(1, kFinishThreads, stream, loss_finish_kernel<T>)(
        G.const_data_ptr<T>(), SQ.const_data_ptr<T>(), S.const_data_ptr<T>(), p,
        weight, grad_gram.const_data_ptr<T>(), rows, rows + p.rows,
        grad_sq.mutable_data_ptr<T>(), grad_sums.mutable_data_ptr<T>(), loss.mutable_data_ptr<T>(),
        cross_entropy.mutable_data_ptr<T>(), entropy.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, cross_entropy, entropy, grad_gram, grad_sq, grad_sums};
}

}  // namespace

FC_CUDA_KERNELS(m) {
  m.impl("column_stats", &column_stats_cuda);
  m.impl("column_stats_backward", &column_stats_backward_cuda);
  m.impl("column_loss_from_stats", &column_loss_from_stats_cuda);
  m.impl("column_loss", [](const at::Tensor& a, const at::Tensor& b, c10::string_view kind, double tau,
                           double weight) {
    return fused_column_loss(a, b, kind, tau, weight, column_stats_cuda, column_loss_from_stats_cuda);
  });
}

}  // namespace fastclust
