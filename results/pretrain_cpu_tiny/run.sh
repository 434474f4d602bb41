#!/usr/bin/env bash
# Finding 2 at CPU scale (recipes/cpu_tiny_pretrain.json, issue 22 item 3): the tiny class at depths
# 1-7 x seeds 0-2, pretrained on the Gutenberg children's corpus, 2,000 steps x 8 x 256, fp32. Two
# lanes, one core each, seed by seed: lane A depths 1-4, lane B depths 5-7 (about equal time; deeper
# is slower). Resumable: finished cells are skipped, a killed cell resumes from its last checkpoint
# (every 400 steps). A cell whose row is in the committed results.csv is skipped even when its run
# folder is gone (the study spans sessions, each on a fresh machine): commit results.csv as cells finish.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=recipes/cpu_tiny_pretrain.json
N=pretrain_cpu_tiny
source tools/lanes.sh  # done_before, lane, and S (this study's sweep.py command)
lane "0 1 2" 1 2 3 4 &
lane "0 1 2" 5 6 7 &
wait
$S
# While cells run, `python report.py --name $N` tables the finished ones and trains nothing.
