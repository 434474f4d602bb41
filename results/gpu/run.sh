#!/usr/bin/env bash
# The GPU checks in one call of the device tool (an H100 lent for ~15 minutes), from the repo root:
#   speed by depth for the 41M class (eager and torch.compile, bf16, context 1024), the CUDA
#   tests, and tools/step_profile.py (variants and the top kernels of one step).
# The data mirror and tiktoken files are carried in .gpu/ (copied from ../shared, git-ignored).
set -uo pipefail
export PYTHONUNBUFFERED=1 TIKTOKEN_CACHE_DIR=$PWD/.gpu/tiktoken_cache NANODEPTH_MIRROR=$PWD/.gpu/data
O=${OUT:-/tmp/gpu_out}; mkdir -p "$O"
export NANODEPTH_CODE_VERSION=$(cat .gpu/commit 2>/dev/null)  # the copy there has no .git
echo "commit $NANODEPTH_CODE_VERSION" | tee "$O/env.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv | tee -a "$O/env.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$O/env.txt"

echo "== speed by depth, eager and compiled"
timeout 240 python3 bench.py --model_class 41M --depths 1,2,4,7 --dtypes bfloat16 --batch_size 32 \
  --block_size 1024 --steps 20 --compile --out "$O/depths_41M.json" 2>&1 | grep -v Warning | tee "$O/depths.txt"

echo "== CUDA tests"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -25 | tee "$O/tests.txt"

echo "== where a step's time goes (depth 2)"
timeout 100 python3 tools/step_profile.py 2>&1 | grep -v -i warn | tee "$O/profile.txt"
