#!/usr/bin/env bash
# The recorded CPU study, resumable: finished cells are skipped, so rerunning continues it.
# Two one-thread processes share the 12 cells (4 depths x 3 seeds), then one call finds every
# cell done and writes results.csv, summary.md, the loss-matched control and the figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
R=recipes/cpu_tiny_cosine.json
{ python sweep.py --config $R --name cpu_tiny_cosine --seeds 0 && python sweep.py --config $R --name cpu_tiny_cosine --seeds 2 --depths 1,2; } &
{ python sweep.py --config $R --name cpu_tiny_cosine --seeds 1 && python sweep.py --config $R --name cpu_tiny_cosine --seeds 2 --depths 4,6; } &
wait
python sweep.py --config $R --name cpu_tiny_cosine --loss_matched --dev_selected
