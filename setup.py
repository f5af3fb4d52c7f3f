"""Builds fastclust._C: CPU kernels always, CUDA kernels when torch is a CUDA build and nvcc is found.

Environment:
  FASTCLUST_FORCE_CUDA=1  fail instead of silently building CPU-only
  FASTCLUST_NO_CUDA=1     build CPU-only even where CUDA is available (fast local iteration)
  FASTCLUST_CUDA_EMU=1    also build fastclust._C_emu, the CUDA kernels compiled with the C++
                          compiler against csrc/emu/cuda_emu.h and run on CPU threads (tests)
  CUDA_HOME               toolkit root; found from `nvcc --dryrun` when unset
  TORCH_CUDA_ARCH_LIST, MAX_JOBS  as in torch.utils.cpp_extension
"""
import glob
import os
import re
import shutil
import subprocess
import tempfile

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _toolkit_root_from_nvcc():
    # A wrapper `nvcc` outside the toolkit makes torch guess CUDA_HOME as the wrapper's
    # grandparent, and the cudart link then fails; nvcc itself knows its real root (TOP).
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cu")
        open(src, "w").close()
        try:
            out = subprocess.run([nvcc, "--dryrun", "-c", src], capture_output=True, text=True,
                                 timeout=60, cwd=tmp)
        except (OSError, subprocess.SubprocessError):
            return None
    match = re.search(r"^#\$ TOP=(.*)$", out.stdout + out.stderr, re.MULTILINE)
    return os.path.realpath(match.group(1).strip()) if match else None


if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH"):
    root = _toolkit_root_from_nvcc()
    if root:
        os.environ["CUDA_HOME"] = root

import torch  # noqa: E402  (CUDA_HOME must be settled before cpp_extension reads it)
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

force_cuda = os.environ.get("FASTCLUST_FORCE_CUDA") == "1"
no_cuda = os.environ.get("FASTCLUST_NO_CUDA") == "1"


def _cuda_unavailable_reason():
    if no_cuda:
        return "FASTCLUST_NO_CUDA=1 is set"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if CUDA_HOME is None or not os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
        return "nvcc was not found (set CUDA_HOME to the CUDA toolkit root)"
    if not os.path.exists(os.path.join(CUDA_HOME, "include", "cuda_runtime.h")):
        return f"CUDA_HOME={CUDA_HOME} has no include/cuda_runtime.h; set CUDA_HOME to the toolkit root"
    return None


reason = _cuda_unavailable_reason()
with_cuda = reason is None
if force_cuda and not with_cuda:
    raise RuntimeError(f"FASTCLUST_FORCE_CUDA=1 but the CUDA kernels cannot be built: {reason}")
if not with_cuda:
    print(f"fastclust: building CPU kernels only ({reason})")

sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/autograd/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
cxx_flags = ["-O3", "-fopenmp"]
nvcc_flags = ["-O3", "-lineinfo"]
if with_cuda:
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    if not arch_list:
        # Same default torch would pick, written down so build_info can report it.
        arch_list = ";".join(sorted({a.split("_")[1][:-1] + "." + a.split("_")[1][-1]
                                     for a in torch.cuda.get_arch_list() if a.startswith("sm_")}))
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
    archs = arch_list
    extension = CUDAExtension(
        "fastclust._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
        extra_link_args=["-fopenmp"], py_limited_api=True)
else:
    archs = ""
    extension = CppExtension(
        "fastclust._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"], py_limited_api=True)

extensions = [extension]
with_cuda_emu = os.environ.get("FASTCLUST_CUDA_EMU") == "1"
if with_cuda_emu:
    # BuildExtension hands every .cu to nvcc, so each kernel file is compiled through a
    # one-line .cpp that includes it.
    emu_dir = os.path.join("build", "cuda_emu")
    os.makedirs(emu_dir, exist_ok=True)
    emu_sources = sorted(glob.glob("csrc/emu/*.cpp"))
    for cu in sorted(glob.glob("csrc/cuda/*.cu")):
        wrapper = os.path.join(emu_dir, os.path.basename(cu)[:-3] + ".cpp")
        text = f'#include "cuda/{os.path.basename(cu)}"\n'
        if not os.path.exists(wrapper) or open(wrapper).read() != text:
            with open(wrapper, "w") as f:
                f.write(text)
        emu_sources.append(wrapper)
    extensions.append(CppExtension(
        "fastclust._C_emu", emu_sources, include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": ["-O2", "-fopenmp", "-fvisibility=hidden", "-Wno-unknown-pragmas",
                                 "-DFASTCLUST_CUDA_EMU"]},
        extra_link_args=["-fopenmp"], py_limited_api=True))

with open(os.path.join(ROOT, "fastclust", "_build_info.py"), "w") as f:
    f.write("# Written by setup.py at build time.\n")
    f.write(f"TORCH_VERSION = {torch.__version__!r}\n")
    f.write(f"CUDA_VERSION = {(torch.version.cuda if with_cuda else None)!r}\n")
    f.write(f"CUDA_ARCHS = {archs!r}\n")
    f.write(f"WITH_CUDA = {with_cuda!r}\n")
    f.write(f"WITH_CUDA_EMU = {with_cuda_emu!r}\n")

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExtension},
      options={"bdist_wheel": {"py_limited_api": "cp310"}})
