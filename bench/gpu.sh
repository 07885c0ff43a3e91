#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU (fusegrad target="cuda"):
#   1. finds a Python with fusegrad, NVRTC and (optionally) PyTorch / JAX;
#      installs what is missing only if the network is reachable;
#   2. runs the CUDA tests, including the ones marked `gpu` (they skip without a GPU);
#   3. runs bench/gpu.py: W1, W2, W6 against PyTorch (eager, torch.compile) and JAX.
# Results: bench/RESULTS_GPU.md (the table) and bench/gpu-run.log (everything).
#
#   bash bench/gpu.sh                 # PYTHON=/path/to/python to choose the interpreter
#   bash bench/gpu.sh --dry-run       # no GPU: checks the script on the emulated device
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG="$ROOT/bench/gpu-run.log"
OUTPUT="$ROOT/bench/RESULTS_GPU.md"
DRY_RUN=0
for argument in "$@"; do
    case "$argument" in
        --dry-run) DRY_RUN=1 ;;
        *) echo "usage: bash bench/gpu.sh [--dry-run]" >&2; exit 2 ;;
    esac
done

: > "$LOG"
say() { echo "== $*" | tee -a "$LOG"; }

# -- 1. Python, fusegrad, NVRTC ------------------------------------------------------------
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    for candidate in "$ROOT/.venv/bin/python" /tmp/venvme/bin/python python3 python; do
        if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
    done
fi
if [ -z "$PYTHON" ]; then echo "gpu.sh: no python found; set PYTHON=" >&2; exit 2; fi
say "python: $PYTHON ($("$PYTHON" --version 2>&1))"

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$LOG"
else
    say "nvidia-smi not found"
fi

has() { "$PYTHON" -c "$1" >/dev/null 2>&1; }
install() {  # pip install, only when it can reach an index
    say "installing: $*"
    "$PYTHON" -m pip install -q "$@" >>"$LOG" 2>&1 || say "pip install $* failed (offline?)"
}

has "import fusegrad" || install -e "$ROOT[test,cuda]"
if ! has "from fusegrad.runtime.cuda import nvrtc; nvrtc.version()"; then
    install nvidia-cuda-nvrtc
fi
if ! has "from fusegrad.runtime.cuda import nvrtc; nvrtc.version()"; then
    # a CUDA toolkit's own NVRTC, if one is installed
    for library in /usr/local/cuda/lib64/libnvrtc.so* /usr/lib/x86_64-linux-gnu/libnvrtc.so*; do
        case "$library" in *builtins*) continue ;; esac
        if [ -e "$library" ]; then export FUSEGRAD_NVRTC="$library"; break; fi
    done
fi
"$PYTHON" -c "from fusegrad.runtime.cuda import nvrtc; print('NVRTC', nvrtc.version(), nvrtc.library_path())" 2>&1 | tee -a "$LOG"
has "import pytest" || install pytest hypothesis

if [ "$DRY_RUN" = 0 ]; then
    "$PYTHON" -c "
from fusegrad.runtime.cuda import driver
gpu = driver.get()
print('GPU', gpu.name(), gpu.arch, 'driver', gpu.version(), 'peak %.0f GB/s' % (gpu.peak_bandwidth() / 1e9))
" 2>&1 | tee -a "$LOG"
    has "import torch" || say "PyTorch not installed: skipped (pip install torch to compare)"
    has "import jax" || say "JAX not installed: skipped (pip install 'jax[cuda12]' to compare)"
fi

# -- 2. the CUDA tests -----------------------------------------------------------------------
cd "$ROOT"
TESTS=$(ls tests/test_cuda_*.py 2>/dev/null | tr '\n' ' ')
say "tests: $TESTS"
"$PYTHON" -m pytest -q $TESTS >>"$LOG" 2>&1
TEST_STATUS=$?
tail -n 3 "$LOG"
if [ "$DRY_RUN" = 0 ]; then
    # the GPU-marked tests across the suite, with their skip reasons
    "$PYTHON" -m pytest -q -rs -m gpu tests/ >>"$LOG" 2>&1 || TEST_STATUS=1
    tail -n 10 "$LOG"
fi

# -- 3. the benchmarks -----------------------------------------------------------------------
say "bench/gpu.py"
if [ "$DRY_RUN" = 1 ]; then
    OUTPUT="$(mktemp -t fusegrad-gpu-dry-XXXX.md)"
    "$PYTHON" bench/gpu.py --dry-run --output "$OUTPUT" 2>&1 | tee -a "$LOG"
else
    "$PYTHON" bench/gpu.py --output "$OUTPUT" 2>&1 | tee -a "$LOG"
fi
BENCH_STATUS=${PIPESTATUS[0]}

say "tests exit $TEST_STATUS, bench exit $BENCH_STATUS; table: $OUTPUT; log: $LOG"
[ "$TEST_STATUS" = 0 ] && [ "$BENCH_STATUS" = 0 ]
