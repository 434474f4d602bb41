# Sourced by the recorded studies' run.sh (after they set R, the recipe, and N, the study's name):
# a study's cells in lanes, one core each, resumable across sessions on fresh machines.
export OMP_NUM_THREADS=1
S="python sweep.py --config $R --name $N"

# done_before DEPTH SEED: the cell has a main row in the committed results.csv and no run folder
# here to resume (a cell finished on another machine: its rows stand for it)
done_before() {
  [ ! -d "results/$N/runs/d$1_s$2" ] && python -c "import csv,sys; sys.exit(not any(r['n_layer'] == '$1' and
    r['seed'] == '$2' and not r['control'] for r in csv.DictReader(open('results/$N/results.csv'))))" 2>/dev/null
}

# lane "SEEDS" DEPTH...: seed by seed, each depth's cell unless done before
lane() {
  local seeds=$1 seed d
  shift
  for seed in $seeds; do for d in "$@"; do done_before "$d" "$seed" || $S --seeds "$seed" --depths "$d"; done; done
}
