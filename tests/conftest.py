"""Reports how many tests ran the CUDA kernels (marker cuda_emu), emulated or on a GPU, so that
CI's output shows whether they ran at all."""
import collections

_CUDA_KERNEL_OUTCOMES = collections.Counter()


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if "cuda_emu" in report.keywords:
            _CUDA_KERNEL_OUTCOMES[report.outcome] += 1


def pytest_terminal_summary(terminalreporter):
    if _CUDA_KERNEL_OUTCOMES:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(_CUDA_KERNEL_OUTCOMES.items()))
        terminalreporter.write_line(f"CUDA kernel tests (cuda_emu): {counts}")
