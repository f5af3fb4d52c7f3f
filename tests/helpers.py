"""Shared test helpers: devices, dtypes and the accuracy rule every op is held to."""
import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
devices = pytest.mark.parametrize("device", DEVICES)
needs_cuda = pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA device")


def low_precision_dtypes(device):
    """Dtypes below float64 the front ends take on every device (on the CPU, half precision is
    computed in float32)."""
    return [torch.float32, torch.float16, torch.bfloat16]


def assert_accurate(actual, reference_same_dtype, reference_float64, *, floor=1e-6, name="value"):
    """flash-attention's rule: the kernel's error against a float64 reference is at most twice
    eager PyTorch's own error in the same dtype (plus a small absolute floor)."""
    # On the CPU in float64: the float64 reference may come from the other device.
    want = reference_float64.detach().double().cpu()
    kernel_err = (actual.detach().double().cpu() - want).abs().max().item()
    eager_err = (reference_same_dtype.detach().double().cpu() - want).abs().max().item()
    scale = want.abs().max().item()
    bound = 2 * eager_err + floor * max(1.0, scale)
    assert kernel_err <= bound, (
        f"{name}: kernel error {kernel_err:.3e} > 2 x eager error {eager_err:.3e} + floor")


def leave_process_group():
    """End a worker's process group: a barrier first, so that no rank closes its connections
    while another is still finishing its last collective (once, in a run on a fully loaded
    2-core machine, the second rank of a gloo test aborted with SIGABRT at that point)."""
    import torch.distributed as dist
    dist.barrier()
    dist.destroy_process_group()


def record_outcome(fn, out_dir):
    """Runs ``fn()`` and writes to out_dir/outcome.txt whether it returned or raised."""
    import os
    try:
        fn()
        outcome = "returned"
    except Exception as exc:  # the backend's error type varies; that it raises is the point
        outcome = f"raised {type(exc).__name__}: {exc}"
    with open(os.path.join(out_dir, "outcome.txt"), "w") as f:
        f.write(outcome)


def assert_survivors_raise(worker, world, tmp_path):
    """Starts ``worker(rank, rendezvous_file, out_dir)`` on ``world`` spawned processes, one of
    which dies mid-way; no rank may hang, and the survivor's recorded outcome is an error."""
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=worker, args=(rank, str(tmp_path / "rendezvous"), str(tmp_path)))
             for rank in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert not p.is_alive(), "a rank hung"
    assert (tmp_path / "outcome.txt").read_text().startswith("raised")


def front_end_params(front_ends, pick):
    """pytest params of (front end, sample) for the samples ``pick(front_end)`` returns
    (fastclust.ops.family)."""
    return [pytest.param(fe, s, id=f"{fe.name}-{s.label}") for fe in front_ends for s in pick(fe)]


def floating_outputs(fn, sample, dtype=torch.float64, device="cpu"):
    """``fn`` as a function of the sample's tensors alone, returning its floating outputs (a
    front end's counts are integers)."""
    kwargs = sample.kwargs(dtype, device)

    def call(*tensors):
        out = fn(*tensors, **kwargs)
        return tuple(o for o in (out if isinstance(out, tuple) else (out,)) if o.is_floating_point())
    return call


def weighted_sum(outputs, seed):
    """A fixed random combination of the outputs: its gradient checks every entry's share."""
    g = torch.Generator().manual_seed(seed)
    return sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o)).sum() for o in outputs)
