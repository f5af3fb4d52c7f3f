"""Every kernel of csrc/cuda, forward and backward, over shapes that hit every tile edge, every
option and dtype: run on CPU threads by the emulated-CUDA build (torch.ops.fastclust_emu, built
with FASTCLUST_CUDA_EMU=1) and, where a GPU is present, on it (torch.ops.fastclust on CUDA
tensors). One matrix serves both; the cases are each op family's (fastclust.ops.family).

Each case is compared with the CPU kernel on the same values: half-precision inputs are given
to it upcast to float32, which holds them exactly, so the two differ only in the order of their
float32 sums and in the final rounding of 16-bit outputs. Forward cases in float64 are also held
to the eager reference.
"""
import dataclasses
import itertools

import pytest
import torch

from fastclust.ops import FAMILIES
from fastclust.ops.family import DTYPES, HALF

try:
    import fastclust._C_emu  # noqa: F401  (registers torch.ops.fastclust_emu.*)
    EMU_REASON = None
except ImportError:
    EMU_REASON = ("fastclust._C_emu is not built: build it with "
                  "FASTCLUST_CUDA_EMU=1 pip install --no-build-isolation -e .")

pytestmark = pytest.mark.cuda_emu
CPU = torch.ops.fastclust
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


# Every registered op's cases, from its family's declaration.
CASES = [case for family in FAMILIES for case in family.op_cases()]


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
