"""Per-call time of forward+backward at overhead-bound sizes, on one thread: the p10 and median
of 2,000 calls (after 200 warm-up calls), in microseconds, printed as JSON. For A/B runs of two
builds: ``PYTHONPATH=TREE python TREE/bench/overhead.py`` from outside both trees, alternated
(bench/RESULTS.md)."""
import json
import time

import torch

import fastclust

CALLS, WARM_UP = 2000, 200


def cases():
    g = torch.Generator().manual_seed(0)

    def probabilities(n, k):
        return (torch.randn(n, k, generator=g) * 3).softmax(1).requires_grad_()

    def features(n, k):
        return torch.randn(n, k, generator=g).requires_grad_()

    return {
        "pica_loss n=8 k=10": (fastclust.pica_loss, (probabilities(8, 10), probabilities(8, 10))),
        "pica_loss n=768 k=70": (fastclust.pica_loss, (probabilities(768, 70), probabilities(768, 70))),
        "dac_loss n=256 k=10": (lambda f: fastclust.dac_loss(f, 0.9, 0.4), (features(256, 10),)),
        "nt_xent_loss n=256 d=64": (fastclust.nt_xent_loss, (features(256, 64), features(256, 64))),
    }


def main():
    torch.set_num_threads(1)
    results = {}
    for name, (loss, inputs) in cases().items():
        for _ in range(WARM_UP):
            loss(*inputs).backward()
        seconds = []
        for _ in range(CALLS):
            start = time.perf_counter()
            loss(*inputs).backward()
            seconds.append(time.perf_counter() - start)
        seconds.sort()
        results[name] = {"p10_us": seconds[CALLS // 10] * 1e6, "median_us": seconds[CALLS // 2] * 1e6}
    print(json.dumps({"torch": torch.__version__, "fastclust": fastclust.__version__, **results}))


if __name__ == "__main__":
    main()
