#!/usr/bin/env bash
# Pretrain, then fine-tune (recipes/cpu_tiny_pretrain_finetune.json, issue 22 item 4): depths 1, 2,
# 4, 6 x seeds 0-2, each pretrained on the Gutenberg children's corpus as in the pretraining study,
# then fine-tuned on COGS-vf at the paper's 10,000 steps x 128; the perplexity- and loss-matched
# controls. Two lanes, one core each: lane A depths 1 and 4, lane B depths 2 and 6, seed by seed;
# then each seed's controls, two lanes again. Resumable: finished cells are skipped, a killed run
# resumes from its last checkpoint. A cell whose row is in the committed results.csv is skipped
# even when its run folder is gone, but its controls fine-tune its pretraining snapshots: they are
# computed only where its folder is, so run a seed's controls on the machine that ran its cells.
# The pretraining is the pretraining study's (recipes/cpu_tiny_pretrain.json, the same section): on
# the machine that ran that study, link its finished models in first, so that only the fine-tuning runs here:
#   mkdir -p results/pretrain_finetune_cpu_tiny/runs/dD_sS && ln -s $PWD/results/pretrain_cpu_tiny/runs/dD_sS/pretrain results/pretrain_finetune_cpu_tiny/runs/dD_sS/
# About 37 core-hours on a 2-core AMX Xeon in fp32 (see the recipe).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=recipes/cpu_tiny_pretrain_finetune.json
N=pretrain_finetune_cpu_tiny
source tools/lanes.sh  # done_before, lane, and S (this study's sweep.py command)
for seed in 0 1 2; do
  lane $seed 1 4 &
  lane $seed 2 6 &
  wait
  $S --seeds $seed --depths 1,2,4 &  # the controls of depths 2 and 4 (depth 1 is the reference)
  $S --seeds $seed --depths 1,6 &
  wait
done
$S
# While cells run, `python report.py --name $N` tables the finished ones and trains nothing.
