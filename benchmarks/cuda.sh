#!/usr/bin/env bash
# Every CUDA figure of BENCHMARKS.md in one run (at most 10 minutes on one H100/H200), results and logs in $OUT
# (default benchmarks/results/cuda): the exactness tests of the samplers on CUDA, the fused kernel alone, the
# samplers against the reference, training throughput (fp32, bf16, torch.compile, the peer-size prior, and the
# prior's training step against 6745da7's side by side). Each step has its own time limit (590 s in all), so one
# that hangs cannot take the others' results with it. The device machine has no git history: extract the baseline
# here first and carry it (runs/ is git-ignored):
#     mkdir -p runs/baseline-6745da7 && git archive 6745da7 vqvae_prior | tar -x -C runs/baseline-6745da7
#     bash benchmarks/cuda.sh
set -u
OUT=${OUT:-benchmarks/results/cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=.
PY=${PYTHON:-python3}
# one log for all steps (the device tool brings back at most 8 files: this log and the JSON files)
step() {
    local limit=$1 name=$2; shift 2
    echo "=== $name: $*" | tee -a "$OUT/cuda.log"
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/cuda.log"
    echo "=== $name: exit ${PIPESTATUS[0]}" | tee -a "$OUT/cuda.log"
}

nvidia-smi -L
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
step 130 tests $PY -m pytest -q -p no:cacheprovider tests/test_fused_sampler.py
step 90 kernel $PY -m benchmarks.fused_kernel --device cuda --batches 1 16 64 256 --warps 4 8 \
    --precisions ieee tf32x3 \
    --out "$OUT/fused-kernel-cuda.json"
# two steps, so that the 7x7 rows come back even if the 32x32 ones (never measured yet) run out of time
step 60 sampling-7x7 $PY -m benchmarks.sampling --device cuda --grids 7x7 --batches 1 64 \
    --methods fused fused-eager cached cached-eager --reference-positions 64 --check-grid 16x16 --check-batch 64 \
    --rounds 3 --min-time 0 --out "$OUT/sampling-cuda-7x7.json"
step 110 sampling-32x32 $PY -m benchmarks.sampling --device cuda --grids 32x32 --batches 64 1 \
    --methods fused cached fused-eager cached-eager --reference-positions 64 --check-batch 0 \
    --rounds 2 --min-time 0 --out "$OUT/sampling-cuda-32x32.json"
step 60 training $PY -m benchmarks.training --device cuda --precision fp32 bf16 --warmup 5 --steps 20 \
    --out "$OUT/training-cuda.json"
step 40 training-peer $PY -m benchmarks.training --device cuda --vqvae-shapes --prior-grids 7x7 16x16 \
    --prior-layers 15 --prior-head 512 --prior-codebook 512 --warmup 5 --steps 20 --out "$OUT/training-peer-cuda.json"
step 40 prior-step $PY -m benchmarks.prior_step --device cuda --baseline "${BASELINE:-runs/baseline-6745da7}" \
    --grids 7x7 16x16 --rounds 10 10 --out "$OUT/prior-step-cuda.json"
step 60 training-compile $PY -m benchmarks.training --device cuda --precision fp32 bf16 --compile \
    --vqvae-shapes 1x28x28 --prior-grids 7x7 --warmup 5 --steps 20 --out "$OUT/training-compile-cuda.json"
