#!/usr/bin/env bash
# The word-level vocabulary as a lever at the paper's fine-tuning budget
# (recipes/cpu_tiny_paper_budget_word.json, issue 21): depths 1 and 2 x seeds 0-2, COGS-vf from
# random weights, 10,000 steps x 128, one token per word. Two lanes, one core each (depths 1 and 2
# of a seed side by side). Resumable: finished cells are skipped, a killed cell resumes from its
# last checkpoint. A cell whose row is in the committed results.csv is skipped even when its run
# folder is gone (the study spans sessions): commit results.csv as cells finish. Compare with
# results/paper_budget_cpu_tiny (the same recipe in the task's BPE tokens): python report.py --name
# paper_budget_word_cpu_tiny, and the rows of the same depth and seed there.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=recipes/cpu_tiny_paper_budget_word.json
N=paper_budget_word_cpu_tiny
source tools/lanes.sh  # done_before, lane, and S (this study's sweep.py command)
lane "0 1 2" 1 &
lane "0 1 2" 2 &
wait
$S
python curve.py --name $N
