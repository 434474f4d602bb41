#!/usr/bin/env bash
# The paper-budget recipe as first fixed, with length-bucketed batches
# (recipes/cpu_tiny_paper_budget_bucketed.json, byte for byte the recipe its runs record as
# recipes/cpu_tiny_paper_budget.json at commit d3fa0e2). Only seed 0 at depths 1 and 2 was
# trained (from a worktree at d3fa0e2, two lanes, one core each) before packed batches replaced
# bucketed ones in the study (results/paper_budget_cpu_tiny); tabled with --collect and curve.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
S="python sweep.py --config recipes/cpu_tiny_paper_budget_bucketed.json --name paper_budget_bucketed_cpu_tiny --seeds 0"
$S --depths 1 &
$S --depths 2 &
wait
$S --depths 1,2
python curve.py --name paper_budget_bucketed_cpu_tiny
