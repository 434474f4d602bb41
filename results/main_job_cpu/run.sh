#!/usr/bin/env bash
# Issue 22, item 2: the main job as a new user runs it, no flags but the depth, timed; then what it
# learned (python sample.py). The machine is left idle meanwhile (other work paused), so the time
# is the job's own on 2 cores. Keeps log.jsonl, summary.json and the samples here.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=results/main_job_cpu
out=${1:-out-main-job}
start=$(date +%s)
python train.py --n_layer 4 --out_dir "$out"
echo "wall seconds: $(( $(date +%s) - start ))" | tee $here/wall.txt
grep -m1 "model name" /proc/cpuinfo | tee -a $here/wall.txt
python -c "import common; print('cpu bf16:', common.cpu_bf16() or 'none')" | tee -a $here/wall.txt
cp "$out/log.jsonl" "$out/summary.json" $here/
python sample.py --out_dir "$out" --num_samples 3 --max_new_tokens 80 | tee $here/sample.txt
