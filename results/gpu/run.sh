#!/usr/bin/env bash
# The GPU checks in one call of the device tool (an H100 lent for ~15 minutes), from the repo root:
#   speed by depth for the 41M class (eager and torch.compile, bf16, context 1024), the CUDA
#   tests, and a short train.py run whose own log reports tokens/s.
# The data mirror and tiktoken files are carried in .gpu/ (copied from ../shared, git-ignored).
set -uo pipefail
export PYTHONUNBUFFERED=1 TIKTOKEN_CACHE_DIR=$PWD/.gpu/tiktoken_cache NANODEPTH_MIRROR=$PWD/.gpu/data
O=${OUT:-/tmp/gpu_out}; mkdir -p "$O"
echo "commit $(cat .gpu/commit 2>/dev/null)" | tee "$O/env.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv | tee -a "$O/env.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$O/env.txt"

echo "== speed by depth, eager and compiled"
timeout 280 python3 bench.py --model_class 41M --depths 1,2,4,7 --dtypes bfloat16 --batch_size 32 \
  --block_size 1024 --steps 20 --compile --out "$O/depths_41M.json" 2>&1 | grep -v Warning | tee "$O/depths.txt"

echo "== CUDA tests"
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -25 | tee "$O/tests.txt"

echo "== train.py, 41M depth 4, 60 steps"
timeout 80 python3 train.py --model_class 41M --n_layer 4 --batch_size 32 --block_size 1024 --max_iters 60 \
  --eval_interval 30 --eval_iters 5 --warmup_iters 10 --out_dir /tmp/run41 --quiet 2>&1 | tail -4 | tee "$O/train.txt"
python3 -c "import json; s=json.load(open('/tmp/run41/summary.json')); print('train.py tokens/s (last window):', round(s['tokens_per_s_last']), 'dtype', s['dtype'], 'val_loss', round(s['val_loss'], 3))" | tee -a "$O/train.txt"
