#!/usr/bin/env bash
# The training-length curve to 100 epochs (recipes/cpu_tiny_long_curve.json, issue 21 item 2):
# depths 1 and 2 x seeds 0-2, COGS-vf from random weights, 19,000 steps x 128. Two lanes, one core
# each (depth 1 and depth 2 of a seed side by side). Resumable: finished cells are skipped, a killed
# cell resumes from its last checkpoint (every 2,375 steps). A cell whose row is in the committed
# results.csv is skipped even when its run folder is gone (the study spans sessions): commit
# results.csv, and curve.csv with the curve points, as cells finish.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
R=recipes/cpu_tiny_long_curve.json
N=long_curve_cpu_tiny
S="python sweep.py --config $R --name $N"
done_before() {  # depth $1, seed $2: a main row in results.csv, and no run folder to resume
  [ ! -d results/$N/runs/d$1_s$2 ] && python -c "import csv,sys; sys.exit(not any(r['n_layer'] == '$1' and
    r['seed'] == '$2' and not r['control'] for r in csv.DictReader(open('results/$N/results.csv'))))" 2>/dev/null
}
lane() { for seed in 0 1 2; do done_before $1 $seed || $S --seeds $seed --depths $1; done; }
lane 1 &
lane 2 &
wait
$S
python curve.py --name $N
