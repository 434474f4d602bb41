#!/usr/bin/env bash
# The looped comparison at the paper's fine-tuning budget (issue 21 item 4): one block (K=1)
# applied 2, 4 and 6 times, at matched parameters (depth 1's d_ff) and at matched compute (the
# depth's own d_ff), trained exactly as the paper-budget study's models (its recipe,
# recipes/cpu_tiny_paper_budget.json, with --looped 1), seeds 0-2. The unlooped depths 1, 2, 4, 6
# are that study's cells: their committed rows are copied in once and carried over, not trained
# again. Two lanes, one core each: lane A depth 6, lane B depths 2 and 4, seed by seed. Resumable:
# a finished looped cell is skipped (its committed row carried when its run folder is elsewhere),
# a killed one resumes from its last checkpoint. Commit results.csv as cells finish.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
R=recipes/cpu_tiny_paper_budget.json
N=looped_paper_budget_cpu_tiny
S="python sweep.py --config $R --name $N --looped 1"
if [ ! -f results/$N/results.csv ]; then
  python -c "
from common import read_csv, write_atomic, write_csv
import json
rows = [r for r in read_csv('results/paper_budget_cpu_tiny/results.csv') if r['seed'] in (0, 1, 2)]
write_csv('results/$N/results.csv', rows)
ranks = json.load(open('results/paper_budget_cpu_tiny/ffn_rank.json'))
write_atomic('results/$N/ffn_rank.json', json.dumps([x for x in ranks if x['seed'] in (0, 1, 2)], indent=1))
print(len(rows), 'rows of seeds 0-2 and their FFN ranks copied from results/paper_budget_cpu_tiny')"
fi
for seed in 0 1 2; do $S --seeds $seed --depths 1,6; done &
for seed in 0 1 2; do $S --seeds $seed --depths 1,2,4; done &
wait
$S --seeds 0,1,2
