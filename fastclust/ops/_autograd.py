"""Registration helpers shared by every op family: argument coercion and checks, and the rules
every op follows beyond first-order reverse mode.

Higher-order gradients: an op's backward, when autograd records it (``create_graph=True``), is
the gradient of the op's eager twin in :mod:`fastclust.reference`, a graph of its own that can
be differentiated again (at eager PyTorch's cost: the n x n matrices the fused kernels avoid).
Where a backward runs through a fused backward op instead (the column-statistics family, the
global-batch paths), a gradient of that gradient raises an error naming the op. Forward-mode AD
(``torch.func.jvp``, ``torch.autograd.forward_ad``) raises at the call: no op has a forward
derivative.

Half precision: under autocast (CPU or CUDA) every op computes in float32, as PyTorch's own
losses do; float16/bfloat16 tensors given to a front end on the CPU are computed in float32 too
(the CUDA kernels take them as they are and accumulate in float32).
"""
import numbers

import torch
import torch.autograd.forward_ad as forward_ad

OPS = torch.ops.fastclust


def acc_dtype(dtype):
    """Dtype of reductions the kernels return: float32 for half types, else the input's."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def scalar(value, name):
    """A Python float from a number or a one-element tensor (thresholds from schedules). The ops
    give no gradient to their scalars, so a tensor that requires one is refused, not ignored."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"fastclust: {name} must be a number, got a tensor of shape {tuple(value.shape)}")
        if value.requires_grad:
            raise ValueError(f"fastclust: {name} is a tensor that requires grad, but the op gives {name} no "
                             f"gradient; pass {name}.detach() or a number")
        return float(value.item())
    # A string or a bool would convert to a float, but is not what the argument means.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"fastclust: {name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def flag(value, name):
    """``value`` of a True/False option; anything else (the string "no" is truthy) is refused."""
    if not isinstance(value, bool):
        raise TypeError(f"fastclust: {name} must be True or False, got {value!r}")
    return value


def check_tensors(*named):
    """Each ``(name, value)`` is a tensor (the ops' schemas would say so naming the op instead)."""
    for name, value in named:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"fastclust: {name} must be a tensor, got {type(value).__name__}")


def check_views(*named, same_columns=True):
    """Matrices of one batch: 2-D, non-empty, with the rows (and, with ``same_columns``, the
    columns) of the first, on its device and (outside autocast) of its dtype. Raised as RuntimeError, like the
    kernels' own argument checks, naming the argument at fault."""
    check_tensors(*named)
    for name, t in named:
        if t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise RuntimeError(f"fastclust: {name} must be a float16, bfloat16, float32 or float64 tensor, "
                               f"got {t.dtype}")
        if t.dim() != 2:
            raise RuntimeError(f"fastclust: {name} must be a 2-D (n, d) tensor, got shape {tuple(t.shape)}")
        if t.shape[0] < 1 or t.shape[1] < 1:
            raise RuntimeError(f"fastclust: {name} must have at least one row and one feature, "
                               f"got shape {tuple(t.shape)}")
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise RuntimeError(f"fastclust: {name} is on {t.device} but {first_name} is on {first.device}")
        # Under autocast the ops compute in float32 whatever their inputs' floating dtypes.
        if t.dtype != first.dtype and not torch.is_autocast_enabled(first.device.type):
            raise RuntimeError(f"fastclust: {name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}")
        compared = t.shape if same_columns else t.shape[:1]
        if compared != first.shape[:len(compared)]:
            raise RuntimeError(f"fastclust: {name} has shape {tuple(t.shape)} but {first_name} has "
                               f"shape {tuple(first.shape)}" + ("" if same_columns else ": one row per row"))


def float32_under_autocast(op):
    """Under autocast the op's floating inputs are cast to float32."""
    for device in ("cpu", "cuda"):
        torch.library.register_autocast(f"fastclust::{op}", device, torch.float32)


_HALF = (torch.float16, torch.bfloat16)


def cpu_half_as_float(*tensors):
    """The tensors (one, or a tuple) as float32 when all of them are CPU tensors of one half
    dtype (float16 or bfloat16), the dtype the CPU kernels compute in; else as they are, so that
    the kernels' checks report a mix. ``None`` passes through. Gradients flow back through the
    cast in each tensor's own dtype."""
    given = [t for t in tensors if t is not None]
    first = given[0]
    if (isinstance(first, torch.Tensor) and first.dtype in _HALF
            and all(isinstance(t, torch.Tensor) and t.dtype == first.dtype and t.is_cpu for t in given)):
        tensors = tuple(None if t is None else t.float() for t in tensors)
    return tensors[0] if len(tensors) == 1 else tensors


def eager_gradients(twin, inputs, grads, needs_input_grad):
    """The gradients w.r.t. ``inputs`` of ``twin(*inputs)`` (the op's eager twin) against the
    output gradients ``grads``, recorded by autograd: an op's backward under
    ``create_graph=True``. Integer outputs and absent gradients contribute nothing.

    Each input slot is differentiated through an alias of its own (``view_as``): the partial
    derivative of that slot alone, even when one input is computed from another (keys from
    queries) or passed twice, as autograd expects of a backward."""
    wanted = [i for i, x in enumerate(inputs) if needs_input_grad[i] and isinstance(x, torch.Tensor)]
    with torch.enable_grad():
        slots = [x.view_as(x) if i in wanted else x for i, x in enumerate(inputs)]
        outputs = twin(*slots)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    pairs = [(o, g) for o, g in zip(outputs, grads)
             if g is not None and o.is_floating_point() and o.requires_grad]
    found = torch.autograd.grad([o for o, _ in pairs], [slots[i] for i in wanted],
                                [g for _, g in pairs], create_graph=True, allow_unused=True,
                                materialize_grads=True) if pairs and wanted else ()
    result = [None] * len(inputs)
    for i, g in zip(wanted, found):
        result[i] = g
    return tuple(result)


def fused_backward(op, *args):
    """``op(*args)`` for a fused backward op; outside a recorded backward (create_graph=False)
    below the autograd key, so that the op's refusing formula (:func:`refuse_double_backward`),
    a Python one, costs nothing on every step."""
    if torch.is_grad_enabled():
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def refuse_double_backward(backward_op, used_by):
    """Registers for the fused backward op ``backward_op`` an autograd formula that raises: its
    result is a gradient of ``used_by``, and its own gradient is not implemented."""
    def setup_context(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise RuntimeError(
            f"fastclust: {used_by}: a gradient of its gradient (double backward, e.g. through "
            f"create_graph=True) is not supported here ({backward_op} has no derivative); "
            "see the README's API section for which ops support it")

    torch.library.register_autograd(f"fastclust::{backward_op}", backward, setup_context=setup_context)


def refuse_forward_ad(name, *tensors):
    """Raises when an input carries a forward-mode tangent (torch.func.jvp or
    torch.autograd.forward_ad): the fused ops have no forward derivative, and without this
    check their tangents would silently be dropped."""
    if getattr(forward_ad, "_current_level", 0) < 0:
        return
    if any(isinstance(t, torch.Tensor) and forward_ad.unpack_dual(t).tangent is not None
           for t in tensors):
        raise RuntimeError(f"fastclust: {name} does not support forward-mode AD (torch.func.jvp, "
                           "torch.autograd.forward_ad); use reverse mode (backward, torch.func.vjp)")
