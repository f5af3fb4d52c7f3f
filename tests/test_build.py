import subprocess
import sys

import torch

import fastclust


def test_build_info_describes_the_build():
    info = fastclust.build_info()
    assert info["torch_built"] == torch.__version__ == info["torch_runtime"]
    assert isinstance(info["cuda_kernels"], bool)
    if info["cuda_kernels"]:
        assert info["cuda_built"] and info["cuda_archs"]
    for op in ("restraint", "restraint_backward", "pairwise_loss", "pairwise_loss_backward"):
        assert hasattr(torch.ops.fastclust, op)


def test_torch_mismatch_is_a_clear_import_error():
    code = ("import torch; torch.__version__ = '0.0.1'\n"
            "try:\n    import fastclust\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "built against torch" in out and "0.0.1" in out
    assert "pip install --no-build-isolation" in out
