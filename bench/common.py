"""Shared benchmark machinery: device description, the three implementations, peak memory.

Every number the benchmarks print is stored with the device and versions it came from
(pytest-benchmark's extra_info), and `python bench/report.py RESULTS.json` turns a run into
the markdown tables of bench/RESULTS.md.
"""
import json
import os
import platform
import subprocess
import sys

import torch

import fastclust

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def device_name():
    if DEVICE == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def describe():
    return {"device": device_name(), "torch": torch.__version__, "fastclust": fastclust.__version__,
            "cuda_kernels": fastclust.build_info()["cuda_kernels"]}


_compiled = {}


def compiled(fn):
    """torch.compile of a reference function, compiled once per function (dynamic=False, so a
    new shape recompiles once, at warm-up, outside the timed rounds)."""
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, dynamic=False)
    return _compiled[fn]


def inputs_of(front_end, n, width, device=DEVICE):
    """The front end's realistic inputs at n rows of ``width`` columns, from its family's
    declaration (fastclust.ops.family), as float32 leaves that require grad."""
    return [t.float().to(device).requires_grad_() for t in front_end.inputs(n, width)]


def synchronize():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def run_case(fn, inputs, backward):
    """One timed call: forward, and backward through every input that requires grad."""
    out = fn(*inputs)
    if backward:
        torch.autograd.grad(out, [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad])
    synchronize()


def time_case(benchmark, fn, inputs, backward, rounds, **info):
    benchmark.extra_info.update(describe(), backward=backward, **info)
    benchmark.pedantic(run_case, args=(fn, inputs, backward), rounds=rounds, iterations=1,
                       warmup_rounds=1)


def record_peak_memory(benchmark, module, impl, case, **info):
    """Stores the peak memory of one fwd+bwd as a benchmark entry (its time is not a result)."""
    peak = peak_memory(module, impl, case)
    benchmark.extra_info.update(describe(), impl=impl, peak_mb=peak / 2**20, **info)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    return peak


_CHILD = r"""
import json, sys, importlib
import torch


def status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


spec = json.loads(sys.argv[1])
mod = importlib.import_module(spec["module"])
fn, inputs = mod.memory_case(spec["impl"], spec["case"], spec["device"])
if spec["device"] == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
else:
    # Reset the kernel's peak-RSS mark (VmHWM) to the current RSS: ru_maxrss would still hold
    # the peak of importing torch, which can exceed everything the case allocates.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_kb("VmRSS") * 1024
out = fn(*inputs)
torch.autograd.grad(out, [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad])
if spec["device"] == "cuda":
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() - base
else:
    peak = status_kb("VmHWM") * 1024 - base
print(json.dumps({"peak_bytes": peak}))
"""


def peak_memory(module, impl, case, device=DEVICE):
    """Peak extra memory of one fwd+bwd in a fresh process: CUDA allocator peak on a GPU,
    peak resident set (VmHWM, reset before the call) over the resident set before it on the CPU. `module.memory_case(impl, case, device)`
    builds the call; inputs are made before the baseline is taken."""
    spec = json.dumps({"module": module, "impl": impl, "case": case, "device": device})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _CHILD, spec], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement failed for {impl} {case}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]

