"""Every kernel of csrc/cuda, forward and backward, over shapes that hit every tile edge, every
option and dtype: run on CPU threads by the emulated-CUDA build (torch.ops.fastclust_emu, built
with FASTCLUST_CUDA_EMU=1) and, where a GPU is present, on it (torch.ops.fastclust on CUDA
tensors). One matrix serves both.

Each case is compared with the CPU kernel on the same values: half-precision inputs are given
to it upcast to float32, which holds them exactly, so the two differ only in the order of their
float32 sums and in the final rounding of 16-bit outputs. Forward cases in float64 are also held
to the eager reference.
"""
import dataclasses
import itertools

import pytest
import torch

from fastclust import reference

try:
    import fastclust._C_emu  # noqa: F401  (registers torch.ops.fastclust_emu.*)
    EMU_REASON = None
except ImportError:
    EMU_REASON = ("fastclust._C_emu is not built: build it with "
                  "FASTCLUST_CUDA_EMU=1 pip install --no-build-isolation -e .")

pytestmark = pytest.mark.cuda_emu
CPU = torch.ops.fastclust
HALF = (torch.float16, torch.bfloat16)
DTYPES = (torch.float64, torch.float32, *HALF)
# Error allowed, relative to the largest magnitude of the expected output (or 1), by the output's
# dtype: float32 sums in another order, and up to two roundings of a 16-bit output.
RTOL = {torch.float64: 1e-11, torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
# The multiprocessor counts the emulation reports: the statistics and log-sum-exp kernels split
# their work by it, so each count runs other code paths.
SMS = (1, 132)


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    ops: object
    device: str
    sms: int = None

    def __str__(self):
        return self.name if self.sms is None else f"{self.name}-sms{self.sms}"


EMULATED = [Backend("emu", getattr(torch.ops, "fastclust_emu", None), "cpu", sms) for sms in SMS]
BACKENDS = [(b, pytest.mark.skipif(EMU_REASON is not None, reason=EMU_REASON or "")) for b in EMULATED]
BACKENDS.append((Backend("cuda", CPU, "cuda"),
                 pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")))


def matrix(cases, dtypes):
    """(backend, case, dtype) for every backend, case and dtype the case takes; the emulation's
    other multiprocessor counts only where the case's kernels read it."""
    out = []
    for (b, mark), case, dtype in itertools.product(BACKENDS, cases, dtypes):
        if dtype not in case.dtypes or (b.sms not in (None, SMS[-1]) and not case.uses_sms):
            continue
        out.append(pytest.param(b, case, dtype, marks=mark, id=f"{b}-{case.id}-{str(dtype)[6:]}"))
    return out


@pytest.fixture(autouse=True)
def multiprocessors(request, monkeypatch):
    """The emulated multiprocessor count of the test's backend."""
    b = getattr(request.node, "callspec", None) and request.node.callspec.params.get("backend")
    if b is not None and b.sms is not None:
        monkeypatch.setenv("FASTCLUST_EMU_SMS", str(b.sms))


@dataclasses.dataclass
class Case:
    """One call of one op: ``build(dtype)`` returns its arguments as CPU tensors and numbers."""
    op: str
    label: str
    build: object
    dtypes: tuple = DTYPES
    uses_sms: bool = False  # its kernels split their work by the multiprocessor count
    reference: object = None  # the op's eager twin, for forward cases

    @property
    def id(self):
        return f"{self.op}-{self.label}"


def randn(*shape, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def rounded(t, dtype):
    """``t`` as ``dtype`` (the values every backend then sees)."""
    return t.to(dtype)


def far_thresholds(values):
    """(u, l) at least a margin away from every value, so that no pair's selection can flip
    between two correct summation orders."""
    v = values.flatten().double()
    lo, hi = v.min().item() - 0.1, v.max().item() + 0.1
    candidates = torch.linspace(lo, hi, 203, dtype=torch.float64)[1:-1]
    dist = (v[None, :] - candidates[:, None]).abs().min(1).values
    upper, lower = candidates[len(candidates) // 2:], candidates[:len(candidates) // 2]
    u = upper[dist[len(candidates) // 2:].argmax()].item()
    l = lower[dist[:len(candidates) // 2].argmax()].item()
    return u, l


# ---- the cases ----

def restraint_cases():
    for (n, k), p in [((1, 1), 2.0), ((7, 31), 2.0), ((8, 32), 2.0), ((9, 33), 1.0), ((9, 33), 3.5),
                      ((70, 100), 2.0)]:
        def forward(dtype, n=n, k=k, p=p):
            return [rounded(randn(n, k, seed=n + k, scale=3), dtype), p]

        def backward(dtype, n=n, k=k, p=p):
            out = reference.restraint(rounded(randn(n, k, seed=n + k, scale=3), dtype).double(), p)
            return [rounded(randn(n, k, seed=n * k), dtype), rounded(out, dtype), p]

        yield Case("restraint", f"{n}x{k}-p{p}", forward, reference=reference.restraint)
        yield Case("restraint_backward", f"{n}x{k}-p{p}", backward)


def normalize_rows_cases():
    for n, d in [(1, 1), (7, 31), (8, 32), (9, 33), (70, 128)]:
        def inputs(dtype, n=n, d=d):
            x = randn(n, d, seed=n + d)
            x[n // 2] = 0  # a zero row: the norm floor
            return rounded(x, dtype)

        yield Case("normalize_rows", f"{n}x{d}", lambda dtype, f=inputs: [f(dtype)],
                   reference=reference.normalize_rows)
        yield Case("normalize_rows_backward", f"{n}x{d}",
                   lambda dtype, f=inputs, n=n, d=d: [rounded(randn(n, d, seed=3), dtype), f(dtype)])


def pairwise_cases():
    # Symmetric: tiles of 64 x 64 (forward) and 32 rows (backward), features staged 16 (SIMT)
    # and 32 (tensor cores, and the backward's columns) at a time.
    symmetric = [(n, None, k) for n, k in [(1, 1), (31, 15), (32, 16), (33, 17), (63, 31), (64, 32),
                                           (65, 33), (130, 70)]]
    blocks = [(37, 81, 9), (81, 37, 9), (64, 129, 16), (1, 65, 3)]
    for (n, m, k), kind, selector in itertools.product(symmetric + blocks, (reference.DAC, reference.DSEC),
                                                      (False, True)):
        ks = max(1, k // 2)

        def args(dtype, n=n, m=m, k=k, kind=kind, selector=selector, ks=ks):
            def side(rows, width, seed):
                return rounded(reference.restraint(randn(rows, width, seed=seed, scale=4), 2.0), dtype)

            rows = side(n, k, n + k)
            cols = None if m is None else side(m, k, m + 2 * k)
            sel_rows = side(n, ks, 5) if selector else None
            sel_cols = side(m, ks, 6) if selector and m is not None else None
            on_rows = rows if sel_rows is None else sel_rows
            on_cols = (cols if sel_rows is None else sel_cols)
            on_cols = on_rows if on_cols is None else on_cols
            sim = on_rows.double() @ on_cols.double().T
            if kind == reference.DSEC:
                sim = sim / on_rows.double().norm(dim=1)[:, None] / on_cols.double().norm(dim=1)[None, :]
            u, l = far_thresholds(sim)
            return [rows, cols, sel_rows, sel_cols, u, l, kind, 1e-7]

        label = f"{n}x{m or n}x{k}-{kind}" + ("-select" if selector else "")
        yield Case("pairwise_loss", label, args, reference=reference.pairwise_loss)
        yield Case("pairwise_loss_backward", label,
                   lambda dtype, f=args: [torch.tensor(0.75, dtype=torch.float64), *f(dtype)])


def row_logsumexp_cases():
    # Query tiles of 64 rows, key tiles of 64 columns, and key splits by multiprocessor count.
    shapes = [(1, 1, 1), (63, 65, 15), (64, 64, 16), (65, 63, 17), (200, 300, 33), (37, 700, 128)]
    for (rows, cols, d), offset in itertools.product(shapes, (-1, 0, 5)):
        if offset >= cols:
            continue

        def args(dtype, rows=rows, cols=cols, d=d, offset=offset):
            q = rounded(reference.normalize_rows(randn(rows, d, seed=rows + d)), dtype)
            k = rounded(reference.normalize_rows(randn(cols, d, seed=cols + 2 * d)), dtype)
            return [q, k, 0.3, offset]

        def backward(dtype, f=args, rows=rows):
            q, k, tau, offset = f(dtype)
            acc = torch.float32 if dtype in HALF else dtype
            lse = CPU.row_logsumexp(q.double(), k.double(), tau, offset).to(acc)
            return [randn(rows, seed=7).to(acc), q, k, lse, tau, offset]

        label = f"{rows}x{cols}x{d}-self{offset}"
        yield Case("row_logsumexp", label, args, uses_sms=True, reference=reference.row_logsumexp)
        yield Case("row_logsumexp_backward", label, backward, uses_sms=True)


COLUMN_KINDS = (reference.PICA, reference.CLUSTER_CONTRASTIVE)


def column_cases():
    # Gram tiles of 64 columns, rows staged 16 at a time, split over n by multiprocessor count.
    shapes = [(1, 1), (15, 63), (16, 64), (17, 65), (200, 130), (1000, 10)]
    for (n, k), full_gram in itertools.product(shapes, (False, True)):
        def views(dtype, n=n, k=k):
            return [rounded(randn(n, k, seed=n + k, scale=3).softmax(1), dtype),
                    rounded(randn(n, k, seed=n + 2 * k, scale=3).softmax(1), dtype)]

        def backward(dtype, f=views, k=k, full_gram=full_gram, present=(True, True, True)):
            side = 2 * k if full_gram else k
            grads = [randn(side, side, seed=1), randn(2 * k, seed=2), randn(2 * k, seed=3)]
            grads = [g.float() if dtype in HALF else g.to(dtype) for g in grads]
            return [g if keep else None for g, keep in zip(grads, present)] + [*f(dtype), full_gram]

        label = f"{n}x{k}-" + ("full" if full_gram else "cross")
        yield Case("column_stats", label, lambda dtype, f=views, fg=full_gram: [*f(dtype), fg],
                   uses_sms=True, reference=reference.column_stats)
        yield Case("column_stats_backward", label, backward)
        for present in [(True, False, False), (False, True, True)]:
            yield Case("column_stats_backward", label + "-grads" + "".join("gqs"[i] for i in range(3) if present[i]),
                       lambda dtype, f=backward, present=present: f(dtype, present=present))
    for (n, k), kind in itertools.product([(1, 2), (17, 65), (300, 70)], COLUMN_KINDS):
        def fused(dtype, n=n, k=k, kind=kind):
            a = rounded(randn(n, k, seed=n, scale=3).softmax(1), dtype)
            b = rounded(randn(n, k, seed=k, scale=3).softmax(1), dtype)
            return [a, b, kind, 0.5 if kind == reference.CLUSTER_CONTRASTIVE else 1.0, 1.5]

        yield Case("column_loss", f"{n}x{k}-{kind}", fused, uses_sms=True, reference=column_loss_reference)
    for k, kind in itertools.product([2, 10, 70, 130], COLUMN_KINDS):
        def from_stats(dtype, k=k, kind=kind):
            a, b = (randn(257, k, seed=s, scale=3).softmax(1) for s in (k, k + 1))
            full_gram = kind == reference.CLUSTER_CONTRASTIVE
            return [*(t.to(dtype) for t in reference.column_stats(a, b, full_gram)), kind,
                    0.5 if full_gram else 1.0, 1.5]

        yield Case("column_loss_from_stats", f"k{k}-{kind}", from_stats,
                   dtypes=(torch.float64, torch.float32))


def column_loss_reference(a, b, kind, tau, weight):
    """The first three outputs of column_loss (loss, cross-entropy, entropy term)."""
    if kind == reference.PICA:
        return reference.pica_loss(a, b, lam=weight, return_parts=True)
    return reference.cluster_contrastive_loss(a, b, tau=tau, entropy_weight=weight, return_parts=True)


CASES = [*restraint_cases(), *normalize_rows_cases(), *pairwise_cases(), *row_logsumexp_cases(),
         *column_cases()]


# ---- running and comparing ----

def on(args, device):
    return [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]


def upcast(args):
    return [a.float() if isinstance(a, torch.Tensor) and a.dtype in HALF else a for a in args]


def as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def run(backend, case, args):
    return as_tuple(getattr(backend.ops, case.op)(*on(args, backend.device)))


def assert_close_to(got, want, out_dtype, what):
    """Integers exactly; floating outputs within RTOL of the largest expected magnitude, and
    non-finite where expected (the same infinity, or NaN)."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    got, want = got.detach().cpu(), want.detach().cpu()
    if not want.is_floating_point():
        assert torch.equal(got, want), f"{what}: {got} != {want}"
        return
    got, want = got.double(), want.double()
    finite = torch.isfinite(want)
    assert torch.equal(torch.isfinite(got), finite), f"{what}: non-finite entries differ"
    assert torch.equal(got[~finite].nan_to_num(), want[~finite].nan_to_num()), f"{what}: non-finite entries differ"
    if not finite.any():
        return
    err = (got[finite] - want[finite]).abs().max().item()
    # Outputs whose terms (of order 1) cancel to about zero hold only their rounding.
    bound = RTOL[out_dtype] * max(want[finite].abs().max().item(), 1.0)
    assert err <= bound, f"{what}: error {err:.3e} > {bound:.3e}"


@pytest.mark.parametrize("backend,case,dtype", matrix(CASES, DTYPES))
def test_matches_cpu_kernel(backend, case, dtype):
    args = case.build(dtype)
    got = run(backend, case, args)
    want = as_tuple(getattr(CPU, case.op)(*upcast(args)))
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        # Half-precision inputs give float32 reductions and outputs of their own dtype.
        allowed = (torch.float32, dtype) if dtype in HALF and w.is_floating_point() else (w.dtype,)
        assert g.dtype in allowed, f"output {i}: dtype {g.dtype}"
        # A 16-bit output is compared with the float32 one rounded to it (which may overflow).
        assert_close_to(g, w.to(g.dtype) if g.dtype in HALF else w, g.dtype, f"{case.id} {dtype} output {i}")


@pytest.mark.parametrize("backend,case,dtype", matrix([c for c in CASES if c.reference], [torch.float64]))
def test_matches_reference_float64(backend, case, dtype):
    args = case.build(dtype)
    got = run(backend, case, args)
    want = as_tuple(case.reference(*args))
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close_to(g, w, torch.float64, f"{case.id} output {i}")


def largest_case_per_op():
    def size(case):
        return sum(a.numel() for a in case.build(torch.float32) if isinstance(a, torch.Tensor))

    largest = {}
    for c in CASES:
        if c.op not in largest or size(c) > size(largest[c.op]):
            largest[c.op] = c
    return list(largest.values())


# One case per op, the largest: every 2-D input made column-major.
NON_CONTIGUOUS = largest_case_per_op()


@pytest.mark.parametrize("backend,case,dtype", matrix(NON_CONTIGUOUS, (torch.float32, torch.bfloat16)))
def test_non_contiguous_inputs(backend, case, dtype):
    args = case.build(dtype)
    strided = [a.t().contiguous().t() if isinstance(a, torch.Tensor) and a.dim() == 2 and min(a.shape) > 1
               else a for a in args]
    assert any(isinstance(a, torch.Tensor) and not a.is_contiguous() for a in strided)
    for g, w in zip(run(backend, case, strided), run(backend, case, args)):
        assert torch.equal(g, w)


# The largest case of each op: bitwise the same from run to run, whatever the OS threads.
@pytest.mark.parametrize("backend,case,dtype", matrix(NON_CONTIGUOUS, (torch.float32, torch.float16)))
def test_bitwise_deterministic(backend, case, dtype):
    args = case.build(dtype)
    first = run(backend, case, args)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        second = run(backend, case, args)
    finally:
        torch.set_num_threads(threads)
    third = run(backend, case, args)
    for a, b, c in zip(first, second, third):
        assert torch.equal(a, b) and torch.equal(a, c)


# ---- the emulation itself ----

needs_emu = pytest.mark.skipif(EMU_REASON is not None, reason=EMU_REASON or "")


@needs_emu
def test_emulated_shuffles_and_block_sum():
    out = torch.ops.fastclust_emu.emulation_selftest("shuffles")
    lane = torch.arange(64) % 32
    segment_end = (lane // 16 + 1) * 16
    want = torch.stack([lane ^ 5, torch.where(lane >= 3, lane - 3, lane),
                        torch.where(lane + 3 < segment_end, lane + 3, lane), torch.full_like(lane, 7)], 1)
    assert torch.equal(out, torch.stack([want, want]).int())
    assert torch.equal(torch.ops.fastclust_emu.emulation_selftest("block_sum"),
                       torch.full((3,), 255 * 256 // 2))


@needs_emu
@pytest.mark.parametrize("kernel,match", [
    ("early_return", r"early_return_kernel: block \(0, 0, 0\), no thread can go on: 200 wait at "
                     r"__syncthreads \(selftest.cpp:\d+\); 56 have returned"),
    ("barrier_in_one_warp", r"32 wait at __syncthreads \(selftest.cpp:\d+\); 32 have returned"),
    ("divergent_barrier", r"32 wait at __syncthreads \(selftest.cpp:\d+\); 32 wait at __syncthreads"),
    ("shuffle_with_exited_lane", r"31 wait at __shfl_xor_sync \(selftest.cpp:\d+\) with mask 0xffffffff; "
                                 r"1 have returned"),
    ("shuffle_outside_mask", r"lane 0 of warp 0 reads lane 16 in __shfl_xor_sync .* not in the mask 0x0000ffff"),
    ("wmma_misaligned", r"thread \(0, 0, 0\): wmma::load_matrix_sync: pointer not 256-bit aligned"),
    ("bad_launch", r"invalid block \(2048, 1, 1\)"),
])
def test_emulation_reports_misuse(kernel, match):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.fastclust_emu.emulation_selftest(kernel)
    # The fibers of the failed block start afresh: the next launch runs normally.
    assert torch.ops.fastclust_emu.emulation_selftest("block_sum")[0].item() == 255 * 256 // 2


@needs_emu
def test_emulated_multiprocessor_count_is_checked(monkeypatch):
    monkeypatch.setenv("FASTCLUST_EMU_SMS", "zero")
    a = torch.rand(5, 3)
    with pytest.raises(RuntimeError, match="FASTCLUST_EMU_SMS must be a number of multiprocessors"):
        torch.ops.fastclust_emu.column_stats(a, a, False)


def test_every_op_has_a_case():
    schemas = {s.name.split("::")[1] for s in torch._C._jit_get_all_schemas() if s.name.startswith("fastclust::")}
    assert schemas == {c.op for c in CASES}, "every op of csrc/schemas.h needs cases here"
