"""Markdown tables from a pytest-benchmark JSON file: `python bench/report.py RUN.json`."""
import json
import sys
from collections import defaultdict


def main(path):
    run = json.load(open(path))
    times, steps, memory, bandwidth = defaultdict(dict), defaultdict(dict), [], []
    device = None
    for b in run["benchmarks"]:
        info = b["extra_info"]
        device = device or f"{info['device']}, torch {info['torch']}, fastclust {info['fastclust']}"
        if "peak_mb" in info:
            memory.append(info)
            continue
        if info["op"].endswith("training step"):  # bench_trainers.py: impl is the weights' layout
            steps[(info["op"], info["batch"])][info["impl"]] = b["stats"]["median"] * 1e3
            continue
        if info.get("bytes", 0) >= 10**8:  # the memory-bound cases, not every small one
            bandwidth.append((info, b["stats"]["median"]))
        if info["impl"] == "copy":
            continue
        key = (info["op"], *(f"{name}={info[name]}" for name in sorted(info) if name in ("n", "k", "d")),
               "fwd+bwd" if info["backward"] else "fwd")
        times[key][info["impl"]] = b["stats"]["median"] * 1e3
    print(f"Device: {device}. Median of the rounds, milliseconds.\n")
    # "peer": the installed package a fastclust.compat class replaces (bench_compat.py).
    impls = [i for i in ("fastclust", "eager", "compile", "peer") if any(i in row for row in times.values())]
    others = impls[1:]
    if times:
        print("| op | size | pass | " + " | ".join(impls) + " | "
              + " | ".join(f"{i} / fastclust" for i in others) + " |")
        print("|---|---|---|" + "---|" * (len(impls) + len(others)))
    for key, row in times.items():
        cells = [f"{row[i]:.2f}" if i in row else "-" for i in impls]
        ratios = [f"{row[i] / row['fastclust']:.1f}x" if i in row and "fastclust" in row else "-"
                  for i in others]
        print(f"| {key[0]} | {' '.join(key[1:-1])} | {key[-1]} | " + " | ".join(cells + ratios) + " |")
    if bandwidth:
        print("\n| op | impl | size | pass | bytes moved (least) | median ms | GB/s |\n|---|---|---|---|---|---|---|")
        for info, median in bandwidth:
            size = " ".join(f"{name}={info[name]}" for name in ("n", "k", "d") if name in info)
            print(f"| {info['op']} | {info['impl']} | {size} | {'fwd+bwd' if info['backward'] else 'fwd'} "
                  f"| {info['bytes'] / 1e6:.0f} MB | {median * 1e3:.3f} | {info['bytes'] / median / 1e9:.0f} |")
    if steps:
        print("| training step | batch | contiguous | channels_last | contiguous / channels_last |\n|---|---|---|---|---|")
        for (op, batch), row in steps.items():
            print(f"| {op} | {batch} | {row['contiguous']:.1f} | {row['channels_last']:.1f} "
                  f"| {row['contiguous'] / row['channels_last']:.2f}x |")
    if memory:
        print("\n| op | impl | size | peak extra memory, fwd+bwd (MB) |\n|---|---|---|---|")
        for info in memory:
            size = " ".join(f"{name}={info[name]}" for name in ("n", "k", "d") if name in info)
            print(f"| {info['op']} | {info['impl']} | {size} | {info['peak_mb']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1])
