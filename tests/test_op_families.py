"""The checks every op shares, drawn from each family's declaration (fastclust.ops.FAMILIES):
values and gradients against the eager twin in float64, low-precision accuracy, determinism,
strided inputs, gradcheck, torch.compile, opcheck of the registered ops, and CUDA against the
CPU. What is particular to one op (hand-computed cases, edge cases, bad input) stays in its
family's own test file; the kernels' own matrix is tests/test_cuda_emulated.py."""
import pytest
import torch
from torch.library import opcheck

from fastclust.ops import FAMILIES
from helpers import (assert_accurate, devices, floating_outputs, front_end_params, low_precision_dtypes,
                     needs_cuda, weighted_sum)

FRONT_ENDS = [fe for family in FAMILIES for fe in family.front_ends]


def params(pick):
    return front_end_params(FRONT_ENDS, pick)


def outputs_and_grads(fn, sample, dtype=torch.float64, device="cpu", inputs=None, seed=1):
    """The front end's outputs, and the gradients w.r.t. its tensors of a fixed random
    combination of its floating outputs (counts are outputs too, compared exactly)."""
    inputs = sample.inputs(dtype, device) if inputs is None else inputs
    out = fn(*inputs, **sample.kwargs(dtype, device))
    outs = out if isinstance(out, tuple) else (out,)
    total = weighted_sum([o for o in outs if o.is_floating_point()], seed)
    # PICA's entropy term does not depend on p2: an unused input's gradient is zero.
    grads = torch.autograd.grad(total, inputs, allow_unused=True, materialize_grads=True)
    return [o.detach() for o in outs] + list(grads)


def assert_all_close(got, want, rtol, atol, what=""):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        if not w.is_floating_point():
            assert torch.equal(g.cpu(), w.cpu()), f"{what} output {i}: {g} != {w}"
        else:
            torch.testing.assert_close(g.cpu(), w.cpu(), rtol=rtol, atol=atol, msg=lambda m: f"{what} {i}: {m}")


@pytest.mark.parametrize("fe,sample", params(lambda fe: fe.samples()))
def test_matches_reference_float64(fe, sample):
    assert_all_close(outputs_and_grads(fe.fn, sample), outputs_and_grads(fe.reference, sample),
                     rtol=1e-9, atol=1e-12)


@devices
@pytest.mark.parametrize("fe,sample", params(lambda fe: fe.accuracy()))
def test_low_precision_accuracy(device, fe, sample):
    want = outputs_and_grads(fe.reference, sample, device=device)
    for dtype in low_precision_dtypes(device):
        got = outputs_and_grads(fe.fn, sample, dtype, device)
        eager = outputs_and_grads(fe.reference, sample, dtype, device)
        for i, (g, e, w) in enumerate(zip(got, eager, want)):
            if w.is_floating_point():
                assert_accurate(g, e, w, name=f"{fe.name} {dtype} output {i}")


@devices
@pytest.mark.parametrize("fe,sample", params(lambda fe: fe.accuracy()))
def test_deterministic(device, fe, sample):
    runs = []
    threads = torch.get_num_threads()
    try:
        for count in (max(threads, 2), 1):  # under OMP_NUM_THREADS=1 too
            torch.set_num_threads(count)
            runs.append(outputs_and_grads(fe.fn, sample, torch.float32, device))
    finally:
        torch.set_num_threads(threads)
    runs.append(outputs_and_grads(fe.fn, sample, torch.float32, device))
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(run, runs[0]))


@pytest.mark.parametrize("fe,sample", params(lambda fe: fe.accuracy()))
def test_strided_inputs(fe, sample):
    contiguous = sample.inputs()
    column_major = [t.detach().T.contiguous().T.requires_grad_() for t in contiguous]
    # Every other column of a wider matrix: strides that are neither row- nor column-major.
    sliced = [torch.stack([t.detach(), t.detach()], 2).flatten(1)[:, ::2].requires_grad_() for t in contiguous]
    assert not any(t.is_contiguous() for t in column_major + sliced if min(t.shape) > 1)
    want = outputs_and_grads(fe.fn, sample, inputs=contiguous)
    for strided in (column_major, sliced):
        assert_all_close(outputs_and_grads(fe.fn, sample, inputs=strided), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fe,sample", params(lambda fe: fe.gradcheck()))
def test_gradcheck(fe, sample):
    assert torch.autograd.gradcheck(floating_outputs(fe.fn, sample), sample.inputs())


@pytest.mark.parametrize("fe,sample", params(lambda fe: fe.accuracy()))
def test_torch_compile_fullgraph(fe, sample):
    torch._dynamo.reset()  # one lambda serves every front end: start from no cached graph
    kwargs = sample.kwargs(torch.float32)
    compiled = torch.compile(lambda *t: fe.fn(*t, **kwargs), fullgraph=True, backend="aot_eager")
    assert_all_close(outputs_and_grads(lambda *t, **_: compiled(*t), sample, torch.float32),
                     outputs_and_grads(fe.fn, sample, torch.float32), rtol=1e-5, atol=1e-6)


def small_op_cases():
    """Each op's cases of at most a few thousand elements: opcheck runs each several times."""
    out = []
    for family in FAMILIES:
        for case in family.op_cases():
            size = sum(a.numel() for a in case.build(torch.float32) if isinstance(a, torch.Tensor))
            if size <= 4096:
                out.append(pytest.param(case, id=case.id))
    return out


@devices
@pytest.mark.parametrize("case", small_op_cases())
def test_opcheck(device, case):
    args = [a.to(device).requires_grad_(a.is_floating_point() and not case.op.endswith("_backward"))
            if isinstance(a, torch.Tensor) else a for a in case.build(torch.float32)]
    opcheck(getattr(torch.ops.fastclust, case.op).default, tuple(args))


@needs_cuda
# Besides the accuracy samples and a seventh of the others, odd widths over many tiles.
@pytest.mark.parametrize("fe,sample", params(
    lambda fe: fe.accuracy() + tuple(fe.samples()[::7]) + (fe.sample("5000x7", 5000, 7),)))
def test_cuda_matches_cpu_float64(fe, sample):
    assert_all_close(outputs_and_grads(fe.fn, sample, device="cuda"), outputs_and_grads(fe.fn, sample),
                     rtol=1e-9, atol=1e-12)


def test_every_op_and_front_end_is_declared():
    import fastclust
    schemas = {s.name.split("::")[1] for s in torch._C._jit_get_all_schemas() if s.name.startswith("fastclust::")}
    assert schemas == {op for family in FAMILIES for op in family.ops}, "every op of csrc/schemas.h needs cases"
    assert {fe.name for fe in FRONT_ENDS} == set(fastclust.ops.__all__)
