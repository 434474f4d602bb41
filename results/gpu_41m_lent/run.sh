#!/usr/bin/env bash
# The one-GPU study at the budget of one lent slot (recipes/gpu_41m_lent.json), from the repo root:
#   bash results/gpu_41m_lent/run.sh            # on a CUDA machine, about 7 minutes on an H100
# COGS-vf at every depth first, then COGS; each phase's tables are copied to $OUT as it ends, so a
# run cut off at its time limit still reports what it finished. Time caps (--max_minutes) bound
# each pretraining and fine-tuning run; the steps each reached are in results.csv.
# On the lent machine the prepared data travel with the tree and the tiktoken files in .gpu/
# (git-ignored); DEVICE and EXTRA (more sweep flags) are for a dry run on a CPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
if [ -d .gpu ]; then
  export TIKTOKEN_CACHE_DIR=$PWD/.gpu/tiktoken_cache NANODEPTH_CODE_VERSION=$(cat .gpu/commit)
fi
O=${OUT:-results/gpu_41m_lent/out}; mkdir -p "$O"
R=recipes/gpu_41m_lent.json
N=gpu_41m_lent
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true; python3 -c \
  "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)") | tee "$O/env.txt"

copy() {  # the tables so far, and every run's logs and scores (no weights)
  cp results/$N/results.csv results/$N/summary.md "$O/" 2>/dev/null
  cp results/$N/generalization_by_depth.png "$O/" 2>/dev/null
  tar czf "$O/runs.tgz" --exclude='*.pt' results/$N 2>/dev/null
}
for t in cogs_vf cogs_vf,cogs; do
  echo "== tasks $t"
  python3 sweep.py --config $R --name $N --device ${DEVICE:-cuda} --tasks $t \
    --pretrain_args "--max_minutes 1.2" --finetune_args "--max_minutes 0.7" ${EXTRA:-} 2>&1 \
    | grep --line-buffered -v -i warning | tee -a "$O/log.txt"
  copy
done
