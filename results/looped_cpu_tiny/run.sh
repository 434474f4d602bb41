#!/usr/bin/env bash
# The looped comparison: one block (K=1) applied 2, 4 and 6 times, at matched parameters (d_ff of
# depth 1) and at matched compute (d_ff of the depth itself), beside the unlooped depths 1-6 of the
# recorded study, with its recipe (recipes/cpu_tiny_cosine.json), 3 seeds. Resumable: finished
# cells are skipped. Unlooped cells already trained by results/cpu_tiny_cosine/run.sh are reused
# when linked here first (else they are trained again):
#   mkdir -p results/looped_cpu_tiny/runs && ln -s $PWD/results/cpu_tiny_cosine/runs/d*_s* results/looped_cpu_tiny/runs/
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
R=recipes/cpu_tiny_cosine.json
N=looped_cpu_tiny
S="python sweep.py --config $R --name $N --looped 1"
{ $S --seeds 0 --depths 1,2,4 && $S --seeds 1 --depths 1,2,4 && $S --seeds 2 --depths 1,2,4; } &
{ $S --seeds 0 --depths 1,6 && $S --seeds 1 --depths 1,6 && $S --seeds 2 --depths 1,6; } &
wait
$S
# While cells are still running, `$S --collect` tables the finished ones and trains nothing (how
# the committed results.csv and summary.md were made until every cell is done).
