#!/bin/bash
# learn.sh NAME TASK DEPTH STEPS [flags]: the cpu_tiny recipe (plus flags) on a task, then score
set -e
name=$1; task=$2; depth=$3; steps=$4; shift 4
export TIKTOKEN_CACHE_DIR=/work/shared/tiktoken_cache NANODEPTH_MIRROR=/work/shared/data OMP_NUM_THREADS=1 NANODEPTH_CODE_VERSION=617ca2a
cd /work/study
out=/work/levres/$name
python finetune.py --config recipes/cpu_tiny.json --task $task --from_scratch --n_layer $depth --max_iters $steps --eval_interval 250 --snapshot_interval 250 --out_dir $out "$@" > $out.log 2>&1
python evaluate.py --ckpt $out --task $task --limit 1000 --sample --out $out/eval.json >> $out.log 2>&1
python - $out <<'PY' >> /work/levres/learn_summary.txt
import json,sys
e=json.load(open(sys.argv[1]+"/eval.json")); s=json.load(open(sys.argv[1]+"/summary.json"))
r={x["split"]:x for x in e["results"]}
print(sys.argv[1].split("/")[-1], "steps",s["step"],"min",round(s["train_seconds"]/60,1), "dev", s.get("dev_exact_match"),
      {k: (round(v["exact_match"]*100,1), round(100*v.get("lexical",{}).get("exact_match",-.01),1), v["n"]) for k,v in r.items()}, flush=True)
PY
