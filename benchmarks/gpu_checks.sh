#!/usr/bin/env bash
# The checks only a GPU can run, in one command, for a machine lent for a few minutes.
#
#   bash benchmarks/gpu_checks.sh            # writes its logs under $OUT (default /tmp/gpu_checks)
#
# It uses the python3 that holds a CUDA build of torch (optlib takes torch >= 2.2), from
# the repository root, without installing anything:
#   1. the fused path's CUDA tests (tests/test_optim_fused.py, skipped on CI's CPU): the
#      Triton kernels Inductor writes, against the CPU loop;
#   2. issue 11's benchmark on CUDA at 10M and 50M parameters, every method and path;
#   3. the same at 1B parameters for NesterovAdamW against torch's fused AdamW (goal 1),
#      alone, since seven copies of a 1B-parameter model with their state take about
#      120 GB; goal 1's head-to-head there over 12 trials, not 40, since each trial
#      copies three such models from the host.
# Each step's output goes to its own log, so one that fails leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
status=0

if ! "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "gpu_checks: $PYTHON's torch sees no CUDA device here; these checks need one" >&2
    exit 1
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name())" | tee "$OUT/device.txt"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_optim_fused.py -k cuda 2>&1 | tee "$OUT/cuda_tests.txt" || status=1
"$PYTHON" benchmarks/step_time.py --device cuda --models 10M 50M 2>&1 | tee "$OUT/step_time_cuda.txt" || status=1
"$PYTHON" benchmarks/step_time.py --device cuda --models 1B --methods NesterovAdamW --trials 2 --repeats 5 \
    --goal-trials 12 2>&1 \
    | tee "$OUT/step_time_cuda_1B.txt" || status=1
exit $status
