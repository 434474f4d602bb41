#!/usr/bin/env bash
# A recorded CPU study, resumable: finished cells are skipped, so rerunning continues it.
# Two one-thread processes share the 12 cells (4 depths x 3 seeds), then one call finds every
# cell done and writes results.csv, summary.md, the loss-matched control and the figures.
#   bash results/cpu_tiny/run.sh [RECIPE NAME]     (default: recipes/cpu_tiny.json cpu_tiny)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
R=${1:-recipes/cpu_tiny.json}
N=${2:-cpu_tiny}
{ python sweep.py --config $R --name $N --seeds 0 && python sweep.py --config $R --name $N --seeds 2 --depths 1,2; } &
{ python sweep.py --config $R --name $N --seeds 1 && python sweep.py --config $R --name $N --seeds 2 --depths 4,6; } &
wait
python sweep.py --config $R --name $N --loss_matched --dev_selected
