"""fastclust: fused C++/CUDA PyTorch ops and trainers for deep clustering."""
from ._extension import build_info
from .ops import *  # noqa: F401,F403
from .ops import __all__ as _ops_all

__version__ = "0.1.0"
__all__ = ["build_info", *_ops_all]
