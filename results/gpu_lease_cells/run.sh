#!/usr/bin/env bash
# One lent GPU (the device tool's H200, one call of at most 10 minutes) trains the CPU studies'
# missing cells, each cell as the studies' own command would on a CPU core, but with --device cuda:
# each sweep.py lane is one process (one CPU thread) sharing the GPU, and many run at once, since a
# tiny-class step is a few hundred small kernels and leaves the GPU mostly idle. Priority by nice
# (CPU time is what the lanes compete for): the paper-budget study's seed 4 first, then the
# word-vocabulary lever's seeds 1 and 2, then the 100-epoch curve, then the looped comparison.
# Each cell's loss-matched control and curve points are made on the GPU as soon as the cell is
# scored (its snapshots go back with the machine); at the deadline what still trains is stopped
# (its cell is lost, not half-kept), every study is tabled, and the 41M class's fine-tuning rate is
# timed alone on the GPU (issue 22 item 5; NO_41M=1 skips it). Cells whose rows results.csv already
# holds are carried, not trained again, so the same command goes on from where a lease stopped.
# Results come back as one tarball per study under $OUT (no weights), refreshed every 20 seconds,
# so a call cut off early still returns every cell finished by then.
#   BUDGET=540 CODE=<commit> bash results/gpu_lease_cells/run.sh     (on the lent machine, from the
#   repository root, with data/cogs_vf prepared and .carry/tiktoken_cache carried)
# SMOKE=1 shortens every cell to 40 steps and 40 scored examples, DEV=cpu runs it on the CPU, and
# ONLY="study ..." runs those studies alone: a check of this script on a CPU machine (in a scratch
# copy of the repository: it writes into results/).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_lease_out}; mkdir -p "$OUT"
BUDGET=${BUDGET:-540}                      # seconds for the whole script
T0=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 NANODEPTH_CODE_VERSION=${CODE:-unknown}
[ -d .carry/tiktoken_cache ] && export TIKTOKEN_CACHE_DIR=$PWD/.carry/tiktoken_cache
DEV=${DEV:-cuda}
EXTRA=""; CURVE=""
[ -n "${SMOKE:-}" ] && EXTRA="--finetune_iters 40 --eval_limit 40" && CURVE="--limit 40"
LOGS=/tmp/gpu_lease_logs; rm -rf "$LOGS"; mkdir -p "$LOGS"
PB=recipes/cpu_tiny_paper_budget.json
WORD=recipes/cpu_tiny_paper_budget_word.json
LONG=recipes/cpu_tiny_long_curve.json
declare -A RECIPE=([paper_budget_cpu_tiny]=$PB [paper_budget_word_cpu_tiny]=$WORD [long_curve_cpu_tiny]=$LONG
                   [looped_paper_budget_cpu_tiny]=$PB)
STUDIES="${!RECIPE[*]}"

echo "== $(date -u +%FT%TZ) code ${CODE:-unknown}, budget ${BUDGET}s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# MPS lets kernels of the many processes share the GPU at once instead of taking turns; kept only
# if a CUDA process starts under it
if [ "$DEV" = cuda ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p /tmp/mps_pipe /tmp/mps_log
  if nvidia-cuda-mps-control -d && timeout 40 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
    echo "MPS on"
  else
    echo quit | timeout 10 nvidia-cuda-mps-control; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    echo "MPS off (it did not start a CUDA process)"
  fi
fi

pack() {  # one tarball per study: tables, rows, curve points, each run's summary and log; no weights
  for n in $STUDIES; do
    [ -d results/$n ] || continue
    (cd results && find $n -path "$n/runs" -prune -o -type f -print > /tmp/files_$n
     find $n/runs \( -name summary.json -o -name log.jsonl -o -path "*/curve/*.json" \) 2>/dev/null >> /tmp/files_$n
     tar czf "$OUT/.$n.tgz" -T /tmp/files_$n && mv "$OUT/.$n.tgz" "$OUT/$n.tgz")
  done
  tail -n 4 "$LOGS"/*.log > "$LOGS/tails.txt" 2>/dev/null
  (cd /tmp && tar czf "$OUT/.logs.tgz" gpu_lease_logs && mv "$OUT/.logs.tgz" "$OUT/logs.tgz")
}
( while sleep 20; do pack; done ) & PACKER=$!
( while sleep 30; do echo "-- t=$(( $(date +%s) - T0 ))s $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null) load $(cut -d' ' -f1 /proc/loadavg)"; done ) & MONITOR=$!

# cell NICE NAME RECIPE FLAGS REF CURVE SEED DEPTH: one cell as its own sweep.py lane, then at once
# (a lease can end before the whole study does, and the snapshots go with the machine) its
# loss-matched control against the seed's depth REF (when REF is given and is not DEPTH: once REF's
# cell is scored, `--depths REF,DEPTH` trains nothing and computes the control) and, with CURVE=1,
# the curve points of its snapshots. A cell with rows already in results.csv and no run folder is
# carried by sweep.py, not trained again, so the same call resumes a study on the next lease.
cell() {
  local nice=$1 name=$2 recipe=$3 flags=$4 ref=$5 curve=$6 seed=$7 depth=$8
  local log="$LOGS/${name}_d${depth}_s${seed}.log" runs=results/$name/runs
  local S="nice -n $nice python3 sweep.py --config $recipe --name $name --device $DEV $EXTRA $flags --seeds $seed"
  $S --depths "$depth" > "$log" 2>&1 || return 0
  echo "== t=$(( $(date +%s) - T0 ))s $name d$depth s$seed trained"
  if [ -n "$ref" ] && [ "$ref" != "$depth" ]; then
    while [ -d $runs/d${ref}_s$seed ] && [ ! -f $runs/d${ref}_s$seed/ft_cogs_vf/eval_cogs_vf.json ]; do sleep 5; done
    $S --depths "$ref,$depth" >> "$log" 2>&1
  fi
  [ "$curve" = 1 ] && nice -n "$nice" python3 curve.py --name "$name" --device "$DEV" $CURVE >> "$log" 2>&1
  echo "== t=$(( $(date +%s) - T0 ))s $name d$depth s$seed collected"
}
# study NICE NAME RECIPE FLAGS REF CURVE "SEED:DEPTH ...": its cells at once (ONLY="study ..." runs just these)
study() {
  local nice=$1 name=$2 recipe=$3 flags=$4 ref=$5 curve=$6 c
  [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]] && return 0
  for c in $7; do cell "$nice" "$name" "$recipe" "$flags" "$ref" "$curve" "${c%:*}" "${c#*:}" & done
  wait
}
STUDY_PIDS=()
study 0 paper_budget_cpu_tiny $PB "" 1 1 "4:1 4:2 4:4 4:6" & STUDY_PIDS+=($!)
study 2 paper_budget_word_cpu_tiny $WORD "" "" 1 "1:1 1:2 2:1 2:2" & STUDY_PIDS+=($!)
study 5 long_curve_cpu_tiny $LONG "" "" 1 "0:1 0:2 1:1 1:2 2:1 2:2" & STUDY_PIDS+=($!)
study 10 looped_paper_budget_cpu_tiny $PB "--looped 1" "" 0 "0:2 0:4 0:6 1:2 1:4 1:6 2:2 2:4 2:6" & STUDY_PIDS+=($!)

# the deadline: keep RESERVE seconds for the tables, the 41M timing and the last pack
RESERVE=${RESERVE:-100}
running() { local p; for p in "${STUDY_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while running && [ "$(left)" -gt "$RESERVE" ]; do sleep 5; done
echo "== t=$(( $(date +%s) - T0 ))s deadline or all done; stopping what still trains"
# this script's own processes only: a pattern (pkill -f) would also stop other studies on the machine
tree() { local c; echo "$1"; for c in $(ps -o pid= --ppid "$1"); do tree "$c"; done; }  # parents first: none spawns anew
victims=$(for p in "${STUDY_PIDS[@]}"; do tree "$p"; done)
kill -TERM $victims 2>/dev/null; sleep 3; kill -KILL $victims 2>/dev/null
for n in $STUDIES; do  # the tables of whatever rows each study has (trains nothing), FFN ranks where its recipe asks
  [ -f results/$n/results.csv ] && timeout 30 python3 report.py --name $n $(python3 -c "import json, sys
print('--rank_analysis' if json.load(open(sys.argv[1]))['sweep'].get('rank_analysis') else '')" ${RECIPE[$n]}) \
    > "$LOGS/${n}_report.log" 2>&1
done
kill $PACKER 2>/dev/null; wait $PACKER 2>/dev/null
pack

# issue 22 item 5: the 41M class's fine-tuning steps on this GPU, alone, packed batches of 128 (the
# one-GPU recipe's fine-tuning; from random weights but with GPT-2's whole vocabulary, the head a
# model pretrained by that recipe keeps: --from_scratch alone would cut it to the task's tokens)
if [ "$DEV" = cuda ] && [ -z "${NO_41M:-}" ]; then
  for d in 1 2 4; do
    [ "$(left)" -gt 25 ] || break
    timeout $(( $(left) - 15 )) python3 finetune.py --config recipes/gpu_41m.json --task cogs_vf --from_scratch \
      --model_class 41M --n_layer $d --vocab gpt2 --max_iters 150 --eval_interval 150 --eval_examples 100 --device cuda \
      --out_dir /tmp/t41m_d$d --quiet > "$LOGS/t41m_d$d.log" 2>&1
    python3 -c "import json; s = json.load(open('/tmp/t41m_d$d/summary.json')); print('41M depth $d:', s['step'],
      'steps in', round(s['train_seconds'], 1), 's with one eval;', round(s['tokens_per_s_last']), 'tokens/s at the end;',
      s['dtype'], s['model_config']['vocab_size'], 'vocab,', s['params']['total'], 'params')" | tee -a "$OUT/timing_41m.txt"
    cp /tmp/t41m_d$d/log.jsonl "$LOGS/t41m_d$d.jsonl" 2>/dev/null
  done
fi
kill $MONITOR 2>/dev/null
pack
echo "== t=$(( $(date +%s) - T0 ))s done"
