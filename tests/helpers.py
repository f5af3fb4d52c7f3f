"""Shared test helpers: devices, dtypes and the accuracy rule every op is held to."""
import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
devices = pytest.mark.parametrize("device", DEVICES)


def low_precision_dtypes(device):
    """Dtypes below float64 an op must support on a device."""
    return [torch.float32] + ([torch.float16, torch.bfloat16] if device == "cuda" else [])


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
