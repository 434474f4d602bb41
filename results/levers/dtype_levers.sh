#!/usr/bin/env bash
# issue 21, precision lever: the packed-batch lever run in bf16 and again in fp32, on the
# AVX512-BF16 machine, one process beside the study's two.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 TIKTOKEN_CACHE_DIR=/work/shared/tiktoken_cache NANODEPTH_MIRROR=/work/shared/data
for dt in bfloat16 float32; do
  python finetune.py --config recipes/cpu_tiny_paper_budget.json --task cogs_vf --from_scratch --n_layer 2 \
    --seed 0 --max_iters 600 --eval_interval 100 --batching packed --dtype $dt \
    --out_dir results/levers/dtype_${dt}_packed_d2_s0_avx512bf16 --quiet
done
