#!/bin/bash
# lever.sh NAME TASK STEPS [finetune flags...]: fine-tune, then score test and gen samples
set -e
name=$1; task=$2; steps=$3; shift 3
export TIKTOKEN_CACHE_DIR=/work/shared/tiktoken_cache NANODEPTH_MIRROR=/work/shared/data OMP_NUM_THREADS=1
cd /work/lev
out=/work/levres/$name
python finetune.py --task $task --max_iters $steps --eval_interval 500 --eval_examples 200 --out_dir $out --quiet "$@" > $out.log 2>&1 || python finetune.py --task $task --max_iters $steps --eval_interval 500 --eval_examples 200 --out_dir $out --quiet --resume >> $out.log 2>&1
python evaluate.py --ckpt $out --task $task --limit 1000 --sample --out $out/eval.json >> $out.log 2>&1
python - $out <<'PY' >> /work/levres/summary.txt
import json,sys
e=json.load(open(sys.argv[1]+"/eval.json")); s=json.load(open(sys.argv[1]+"/summary.json"))
r={x["split"]:x for x in e["results"]}
g=r.get("gen",r.get("test"))
print(sys.argv[1].split("/")[-1], "steps",s["step"],"min",round(s["train_seconds"]/60,1),"devEM",round(s.get("dev_exact_match",-1),3),
 "test",round(r["test"]["exact_match"],3),"gen",round(g["exact_match"],3),"lex",round(g.get("lexical",{}).get("exact_match",-1),3), flush=True)
PY
