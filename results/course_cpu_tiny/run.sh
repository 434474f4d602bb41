#!/usr/bin/env bash
# The course assignment: depth 1 and depth 2 of the tiny class at the study's fine-tuning budget
# (recipes/course_cpu_tiny.json), one seed each, side by side on two cores, then both scores and
# the gap (summary.md: "Paired differences"). Resumable: run it again after an interruption.
# Change one thing in the recipe or the code, give the run another --name, and compare.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
S="python sweep.py --config recipes/course_cpu_tiny.json --name ${1:-course_cpu_tiny}"
$S --depths 1 > /dev/null &
$S --depths 2 > /dev/null &
wait
$S | grep -A5 -E "^cogs_vf: every seed|^Paired differences"
