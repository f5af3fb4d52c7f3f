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
