"""Loads the compiled kernels, refusing a torch other than the one they were built against."""
import torch

_REBUILD = ("Rebuild fastclust against the installed torch: "
            "`pip install --no-build-isolation --force-reinstall --no-deps .` from the source tree "
            "(set CUDA_HOME to the CUDA toolkit root for the CUDA kernels).")

try:
    from . import _build_info
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError("fastclust's C++/CUDA extension has not been built. " + _REBUILD) from exc

if torch.__version__ != _build_info.TORCH_VERSION:
    # A mismatched libtorch ABI otherwise surfaces as an undefined-symbol error from _C.
    raise ImportError(
        f"fastclust was built against torch {_build_info.TORCH_VERSION} but torch "
        f"{torch.__version__} is installed. " + _REBUILD)

from . import _C  # noqa: E402,F401  (registers torch.ops.fastclust.*)


def build_info():
    """What the installed extension was built against, and what this process can use."""
    return {
        "torch_built": _build_info.TORCH_VERSION,
        "torch_runtime": torch.__version__,
        "cuda_built": _build_info.CUDA_VERSION,
        "cuda_archs": _build_info.CUDA_ARCHS,
        "cuda_kernels": _build_info.WITH_CUDA,
        "cuda_available": torch.cuda.is_available(),
    }
