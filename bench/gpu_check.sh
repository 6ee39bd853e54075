#!/usr/bin/env bash
# Entry point of the GPU checks on a borrowed CUDA machine (device tool), from the repo root:
#   run(command='bash bench/gpu_check.sh', carry=['.whl'], timeout_s=600)
# The machine's Python lacks open_clip and ftfy: `.whl/` carries them (docs/benchmarks.md says
# how to download them). Results land in $OUT (inference.json with the CUDA rows and the CPU
# fp32/int8 rows and their fp16/int8 parity, memory.json, suite.json, logs).
set -u
if compgen -G '.whl/*.whl' > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo 'ERROR: installing .whl/*.whl failed' >&2; exit 3; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if command -v nvidia-smi > /dev/null; then nvidia-smi -L; else echo 'nvidia-smi not found'; fi
exec "${PYTHON:-python3}" -m bench.gpu_suite --out "${OUT:-outputs/gpu_suite}" "$@"
