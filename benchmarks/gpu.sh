#!/usr/bin/env bash
# The GPU check in one script: the equivalence proofs on every device JAX offers, then the side-by-side benchmark.
#
#     pip install -e ".[dev,cuda]"     # JAX's CUDA 12 build
#     OUT=runs/gpu bash benchmarks/gpu.sh
#
# Writes OUT/devices.txt (JAX's devices and nvidia-smi's GPU), OUT/proofs.txt (the proofs of ops, layers, models and
# gradient modes, whose `device` fixture runs every case on each device), and OUT/throughput/ (benchmarks/throughput.py:
# jaxcnn's train path and jit step, Flax NNX and Equinox on the GPU; PyTorch's CPU build is left out).
set -euo pipefail
out="${OUT:-runs/gpu}"
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # two test workers share one GPU
{ python -c "import jax; print('jax', jax.__version__, jax.devices())"; nvidia-smi --query-gpu=name,memory.total --format=csv || true; } \
    | tee "$out/devices.txt"
python -m pytest -q -n 2 -p no:cacheprovider tests/ops tests/nn tests/proof 2>&1 | tee "$out/proofs.txt"
python benchmarks/throughput.py --out "$out/throughput" --steps 13 --resnet-steps 8 --rounds 3 --no-conv \
    --candidates train-path jit-step nnx equinox 2>&1 | tee "$out/throughput.txt"
