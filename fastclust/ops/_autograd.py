"""Registration helpers shared by every op family."""
import torch

OPS = torch.ops.fastclust


def acc_dtype(dtype):
    """Dtype of reductions the kernels return: float32 for half types, else the input's."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def scalar(value, name):
    """A Python float from a number or a one-element tensor (thresholds from schedules)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"fastclust: {name} must be a number, got a tensor of shape {tuple(value.shape)}")
        return float(value.item())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"fastclust: {name} must be a number, got {type(value).__name__}") from None


def check_views(*named, same_columns=True):
    """Matrices of one batch: 2-D, non-empty, with the rows (and, with ``same_columns``, the
    columns) of the first, on its device and of its dtype. Raised as RuntimeError, like the
    kernels' own argument checks, naming the argument at fault."""
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"fastclust: {name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise RuntimeError(f"fastclust: {name} must be a 2-D (n, d) tensor, got shape {tuple(t.shape)}")
        if t.shape[0] < 1 or t.shape[1] < 1:
            raise RuntimeError(f"fastclust: {name} must have at least one row and one feature, "
                               f"got shape {tuple(t.shape)}")
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise RuntimeError(f"fastclust: {name} is on {t.device} but {first_name} is on {first.device}")
        if t.dtype != first.dtype:
            raise RuntimeError(f"fastclust: {name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}")
        compared = t.shape if same_columns else t.shape[:1]
        if compared != first.shape[:len(compared)]:
            raise RuntimeError(f"fastclust: {name} has shape {tuple(t.shape)} but {first_name} has "
                               f"shape {tuple(first.shape)}" + ("" if same_columns else ": one row per row"))
