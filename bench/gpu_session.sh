#!/usr/bin/env bash
# One call on a lent GPU machine: build with the CUDA kernels (and the emulated-CUDA test module,
# so that tests/test_cuda_emulated.py runs its matrix on the GPU and in the emulation side by
# side), run the CUDA tests, then the benchmarks, writing logs and JSON under $OUT (defaults to
# ./gpu-out). Usage:
#   bash bench/gpu_session.sh [TESTS] [BENCH_FILES...]
# TESTS is a pytest selection (default: all of tests/); BENCH_FILES default to bench/bench_*.py;
# BENCH_SELECT, if set, is passed to the benchmarks' pytest as -k.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} FASTCLUST_FORCE_CUDA=1
export FASTCLUST_CUDA_EMU=1
export MAX_JOBS=${MAX_JOBS:-16}
tests=${1:-tests}
shift || true
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(bench/bench_*.py)

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/device.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/device.txt"

start=$(date +%s)
python3 -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
python3 -c "import fastclust; print(fastclust.build_info())" | tee -a "$OUT/device.txt"

python3 -m pytest "$tests" -q -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -25
for b in "${benches[@]}"; do
  name=$(basename "$b" .py)
  python3 -m pytest "$b" -q -p no:cacheprovider --benchmark-json="$OUT/$name.json" \
    ${BENCH_SELECT:+-k "$BENCH_SELECT"} > "$OUT/$name.log" 2>&1
  echo "$name: exit $?"; tail -3 "$OUT/$name.log"
  python3 bench/report.py "$OUT/$name.json" | tee "$OUT/$name.md"
done
