#!/usr/bin/env bash
# What a looped cell of this study costs here: the paper-budget recipe's fine-tuning step for each
# looped model (and depth 1 as the yardstick), timed between steps 20 and 80 of a real run
# (dev evaluation cut to 8 examples so that it hardly counts), at THREADS threads (default 1).
# Prints seconds per step and the hours 10,000 steps would take. Writes only under a temp folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${THREADS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -m1 -o 'amx_bf16' /proc/cpuinfo || grep -m1 -o 'avx512_bf16' /proc/cpuinfo || echo "no AMX, no AVX512-BF16"
for m in "1" "2 1 params" "4 1 params" "6 1 params" "6 1 compute"; do
  set -- $m
  flags=(--n_layer "$1"); [ $# -gt 1 ] && flags+=(--n_unique "$2" --match "$3")
  python finetune.py --config recipes/cpu_tiny_paper_budget.json --task cogs_vf --from_scratch "${flags[@]}" \
    --max_iters 80 --eval_interval 20 --eval_examples 8 --snapshot_steps "" --out_dir "$tmp/$1_$#_${3:-}" --quiet >/dev/null
  python -c "
import json
log = {r['step']: r['elapsed_s'] for r in map(json.loads, open('$tmp/$1_$#_${3:-}/log.jsonl'))}
s = (log[80] - log[20]) / 60
print(f'depth $1${2:+ looped u$2 $3}, threads $OMP_NUM_THREADS: {s:.3f} s/step, 10,000 steps {s * 10000 / 3600:.2f} h')"
done
