#!/usr/bin/env bash
# Issue 22, item 1: which prefix of GPT-2's BPE the tiny class should pretrain with. The main job's
# model (tiny, depth 4, train.py's defaults otherwise) pretrained 600 steps x 8 x 256 tokens on the
# Gutenberg children's corpus (no token seen twice) at four vocabulary sizes, seed 0, one thread;
# validation bits per byte and seconds per step from each run's log.jsonl (README.md tables them).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
for V in 4097 8193 16385 50257; do
  out=results/class_vocab_tiny/runs/v$V
  [ -f $out/summary.json ] && continue
  python train.py --dataset gutenberg_children --n_layer 4 --vocab_size $V --max_iters 600 --eval_interval 100 \
    --seed 0 --out_dir $out --quiet $([ -f $out/ckpt.pt ] && echo --resume)
done
