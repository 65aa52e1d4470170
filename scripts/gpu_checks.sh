#!/usr/bin/env bash
# The checks no CPU machine can make, in one go on a CUDA machine (what the README's GPU figures
# come from). Writes every log to the folder given as $1 (default gpu_checks/):
#   env.txt        nvidia-smi, torch and CUDA versions
#   pytest.txt     the default test suite with CUDA visible (device: auto picks cuda)
#   bench.txt      scripts/benchmark_attacks.py on DeepLab-ResNet-34 at NYUv2 size (288x384) and
#                  on the tiny default model, attack step against one forward + backward
#   torchrun.txt   a one-GPU torchrun run of the default job on the NCCL backend
# Each part has its own time limit, so one hang cannot eat the others' time.
set -u
out="${1:-gpu_checks}"
mkdir -p "$out"
export WANDB_MODE=offline WANDB_SILENT=true PYTHONUNBUFFERED=1
{
  nvidia-smi -L
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0))"
  nproc
} >"$out/env.txt" 2>&1
timeout "${PYTEST_LIMIT:-200}" python3 -m pytest -q -n "${PYTEST_WORKERS:-8}" -p no:randomly \
  >"$out/pytest.txt" 2>&1
echo "pytest exit $?" >>"$out/pytest.txt"
timeout "${BENCH_LIMIT:-120}" python3 scripts/benchmark_attacks.py --models deeplab tiny \
  --device cuda --batch 16 --objectives single total dgba signsum --rules pgd apgd \
  --steps 4 20 --repeats 2 >"$out/bench.txt" 2>&1
echo "benchmark exit $?" >>"$out/bench.txt"
tmp=$(mktemp -d)
timeout "${TORCHRUN_LIMIT:-100}" torchrun --standalone --nproc_per_node=1 run.py attack=dgba \
  paths.output_dir="$tmp" progress=false >"$out/torchrun.txt" 2>&1
echo "torchrun exit $?" >>"$out/torchrun.txt"
grep -h "backend\|nccl\|NCCL" "$tmp"/runs/*/run.log >>"$out/torchrun.txt" 2>/dev/null
cp "$tmp"/runs/*/results.json "$out/torchrun_results.json" 2>/dev/null
exit 0
