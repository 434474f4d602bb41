#!/usr/bin/env bash
# The recorded CPU-scale replication: two processes of one thread each over the seeds, then one
# call over the whole grid that finds every cell done and writes the tables and figures.
cd "$(dirname "$0")/../.."
export NANODEPTH_MIRROR=${NANODEPTH_MIRROR:-../shared/data} TIKTOKEN_CACHE_DIR=${TIKTOKEN_CACHE_DIR:-../shared/tiktoken_cache}
COMMON=(--name tiny_cpu --model_class tiny --tasks cogs,cogs_vf --pretrain_iters 150 --finetune_iters 400
        --snapshot_interval 50 --eval_limit 300 --pretrain_args "--eval_iters 4"
        --finetune_args "--batch_size 16 --learning_rate 2e-3 --eval_examples 50 --warmup_iters 50"
        --quiet)
(OMP_NUM_THREADS=1 python sweep.py "${COMMON[@]}" --depths 1,2,4,6 --seeds 0 && \
 OMP_NUM_THREADS=1 python sweep.py "${COMMON[@]}" --depths 1,2 --seeds 2) > results/tiny_cpu/log_p1.txt 2>&1 &
(OMP_NUM_THREADS=1 python sweep.py "${COMMON[@]}" --depths 1,2,4,6 --seeds 1 && \
 OMP_NUM_THREADS=1 python sweep.py "${COMMON[@]}" --depths 4,6 --seeds 2) > results/tiny_cpu/log_p2.txt 2>&1 &
wait
python sweep.py "${COMMON[@]}" --depths 1,2,4,6 --seeds 0,1,2 --rank_analysis > results/tiny_cpu/log_final.txt 2>&1
echo done >> results/tiny_cpu/log_final.txt
