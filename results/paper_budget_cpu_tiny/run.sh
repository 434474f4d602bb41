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
export OMP_NUM_THREADS=1
R=recipes/cpu_tiny_paper_budget.json
N=paper_budget_cpu_tiny
S="python sweep.py --config $R --name $N"
done_before() {  # depth $1, seed $2: a main row in results.csv, and no run folder to resume
  [ ! -d results/$N/runs/d$1_s$2 ] && python -c "import csv,sys; sys.exit(not any(r['n_layer'] == '$1' and
    r['seed'] == '$2' and not r['control'] for r in csv.DictReader(open('results/$N/results.csv'))))" 2>/dev/null
}
lane() { for seed in 0 1 2 3 4; do for d in "$@"; do
  done_before $d $seed || $S --seeds $seed --depths $d; done; done; }
lane 1 4 &
lane 2 6 &
wait
$S
python curve.py --name $N
# While cells are still running, `python report.py --name $N` tables the finished ones and trains nothing, and
# `python curve.py --name $N` scores the snapshots of the finished ones.
