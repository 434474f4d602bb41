#!/usr/bin/env bash
# The training-length curve to 100 epochs (recipes/cpu_tiny_long_curve.json, issue 21 item 2):
# depths 1 and 2 x seeds 0-2, COGS-vf from random weights, 19,000 steps x 128. Two lanes, one core
# each (depth 1 and depth 2 of a seed side by side). Resumable: finished cells are skipped, a killed
# cell resumes from its last checkpoint (every 2,375 steps). A cell whose row is in the committed
# results.csv is skipped even when its run folder is gone (the study spans sessions): commit
# results.csv, and curve.csv with the curve points, as cells finish.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=recipes/cpu_tiny_long_curve.json
N=long_curve_cpu_tiny
source tools/lanes.sh  # done_before, lane, and S (this study's sweep.py command)
lane "0 1 2" 1 &
lane "0 1 2" 2 &
wait
$S
python curve.py --name $N
