#!/usr/bin/env bash
# The depth study at the paper's fine-tuning budget (recipes/cpu_tiny_paper_budget.json, issue 21):
# depths 1, 2, 4, 6 x seeds 0-4, COGS-vf from random weights, 10,000 steps x 128. Two lanes, one
# core each; lane A trains depths 1 and 4, lane B depths 2 and 6, seed by seed, so depths 1 and 2
# of a seed finish together. Resumable: finished cells are skipped, a killed cell resumes from its
# last checkpoint (every 1,250 steps). Then the tables, and the curve from the cells' snapshots.
# A cell whose row is already in the committed results.csv is skipped even when its run folder is
# gone (the study spans sessions, each on a fresh machine); commit results.csv as cells finish.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=recipes/cpu_tiny_paper_budget.json
N=paper_budget_cpu_tiny
source tools/lanes.sh  # done_before, lane, and S (this study's sweep.py command)
lane "0 1 2 3 4" 1 4 &
lane "0 1 2 3 4" 2 6 &
wait
$S
python curve.py --name $N
# While cells are still running, `python report.py --name $N` tables the finished ones and trains nothing, and
# `python curve.py --name $N` scores the snapshots of the finished ones.
