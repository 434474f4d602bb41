#!/usr/bin/env bash
# Second phase: the three smaller vocabularies continued (the constant T5X step does not depend on
# max_iters, so a resumed run is the longer run) to the steps that take the time GPT-2's whole
# vocabulary took for its 600, at the step times bench.py measured for each, back to back
# (tiny depth 4, batch 8 x 256, bf16, one thread: 0.25 / 0.32 / 0.45 / 0.84 s per step).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
for VN in 4097:2000 8193:1570 16385:1120; do
  V=${VN%%:*}; N=${VN##*:}
  python train.py --out_dir results/class_vocab_tiny/runs/v$V --resume --max_iters $N --quiet
done
