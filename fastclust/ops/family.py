"""Op families, each declared once (in the spirit of PyTorch's OpInfo).

A family (restraint, pairwise, column statistics, contrastive log-sum-exp) is declared at the
end of its module in :mod:`fastclust.ops`, next to its front ends, fake kernels and autograd: a
:class:`Family` names its front ends with their eager twins in :mod:`fastclust.reference`, the
sample calls of each front end (shapes, options, edge cases) and the sample calls of each of its
registered ops (the kernels' tile edges, every dtype). The tests draw everything from
:data:`fastclust.ops.FAMILIES` -- values and gradients against the twin, low-precision
accuracy, determinism, strides, gradcheck, torch.compile and second derivatives from the front
ends' samples; opcheck and the emulated-CUDA kernel tests from the ops' samples -- and the
benchmarks build their inputs with the front ends' ``inputs``. Adding an op to a family is one
edit here plus its kernels.

Samples are built in float64 on the CPU; a test converts them to the dtype and device it runs.
"""
import dataclasses
from typing import Callable

import torch

HALF = (torch.float16, torch.bfloat16)
DTYPES = (torch.float64, torch.float32, *HALF)


def randn(*shape, seed, scale=1.0):
    """Seeded standard-normal float64 CPU values times ``scale``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def converted(value, dtype, device):
    """A floating tensor as ``dtype`` on ``device``; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype=dtype, device=device)
    return value


@dataclasses.dataclass(frozen=True)
class Sample:
    """One call of a front end: ``fn(*tensors, **options)``. The tensors are the inputs the
    front end differentiates; tensors among the options (a selector) get no gradient."""
    label: str
    tensors: tuple
    options: dict = dataclasses.field(default_factory=dict)

    def inputs(self, dtype=torch.float64, device="cpu", requires_grad=True):
        """The tensors as ``dtype`` on ``device``, fresh leaves."""
        return [converted(t, dtype, device).detach().requires_grad_(requires_grad) for t in self.tensors]

    def kwargs(self, dtype=torch.float64, device="cpu"):
        return {name: converted(v, dtype, device) for name, v in self.options.items()}


@dataclasses.dataclass(frozen=True)
class FrontEnd:
    """A public function of a family, its eager twin (same call) and its samples.

    ``inputs(n, width, seed)``: the tensors of a realistic call at n rows of ``width`` columns
    (features, cluster probabilities, embeddings), float64 on the CPU; ``options``: the options
    such a call passes. The samples are built when asked for, not at import, each by a
    function of the front end: :meth:`samples`, the calls checked against the twin in float64
    (every option and edge case); :meth:`accuracy`, larger calls for the low-precision,
    determinism, stride and compile checks; :meth:`gradcheck`, small calls whose derivatives are
    smooth in a neighbourhood (no selection flips under a finite-difference step).
    ``double_backward``: whether a gradient of its gradient is computed (else refused with an
    error naming it)."""
    name: str
    fn: Callable
    reference: Callable
    inputs: Callable
    options: dict
    samples_of: Callable
    accuracy_of: Callable
    gradcheck_of: Callable
    double_backward: bool

    def sample(self, label, n, width, seed=0, **options):
        """A sample of ``inputs(n, width, seed)`` with the front end's options updated."""
        return Sample(label, tuple(self.inputs(n, width, seed)), {**self.options, **options})

    def samples(self):
        return list(self.samples_of(self))

    def accuracy(self):
        return tuple(self.accuracy_of(self))

    def gradcheck(self):
        return tuple(self.gradcheck_of(self))


@dataclasses.dataclass(frozen=True)
class OpCase:
    """One call of a registered op ``torch.ops.fastclust.<op>``: ``build(dtype)`` returns its
    arguments, CPU tensors of that dtype (or of the dtype the op takes there) and numbers.
    ``uses_sms``: its CUDA kernels split work by the multiprocessor count. ``reference``: the
    eager twin of its floating outputs, for forward ops."""
    op: str
    label: str
    build: Callable
    dtypes: tuple = DTYPES
    uses_sms: bool = False
    reference: Callable = None

    @property
    def id(self):
        return f"{self.op}-{self.label}"


@dataclasses.dataclass(frozen=True)
class Family:
    """An op family: its front ends and the sample calls of its registered ops."""
    name: str
    front_ends: tuple
    op_cases: Callable

    @property
    def ops(self):
        return sorted({case.op for case in self.op_cases()})

