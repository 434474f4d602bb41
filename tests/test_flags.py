"""Every script refuses a bad value in one line on stderr with exit code 2, before any work starts,
and writes nothing. One table over all of them (run in-process: the scripts' own main())."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

import bench
import common
import curve
import evaluate
import finetune
import model
import sample
import sweep
import train
from corpus import load_prepare

sys.path.insert(0, str(ROOT / "data"))
import fetch  # noqa: E402

NO_CUDA = not torch.cuda.is_available()


def prepare_main(folder):
    return lambda argv: (setattr(sys, "argv", ["prepare.py", *argv]), load_prepare(folder).main())


def cogs_prepare(argv):
    sys.argv = ["prepare.py", *argv]
    fetch.task_main("", "cogs", lambda out: None)


SCRIPTS = {"train": train.main, "finetune": finetune.main, "evaluate": evaluate.main, "sample": sample.main,
           "sweep": sweep.main, "curve": curve.main, "bench": bench.main, "model": model.main,
           "tinystories": prepare_main("tinystories"), "c4": prepare_main("c4"), "text": prepare_main("text"),
           "cogs": cogs_prepare}

# (script, flags, what the one line must say); {tmp} is a fresh folder, {file} a file in it
CASES = [
    ("train", ["--learning_rate", "nan"], "argument --learning_rate: must be a finite number"),
    ("train", ["--learning_rate", "0"], "argument --learning_rate: must be > 0"),
    ("train", ["--max_minutes", "inf"], "must be a finite number"),
    ("train", ["--max_iters", "0"], "argument --max_iters: must be >= 1"),
    ("train", ["--batch_size", "-1"], "argument --batch_size: must be >= 1"),
    ("train", ["--gradient_accumulation_steps", "0"], "must be >= 1"),
    ("train", ["--warmup_iters", "-5"], "argument --warmup_iters: must be >= 0"),
    ("train", ["--eval_interval", "0"], "argument --eval_interval: must be >= 1"),
    ("train", ["--block_size", "1"], "argument --block_size: must be >= 2"),
    ("train", ["--vocab_size", "256"], "argument --vocab_size: must be 0 (the class's own) or 257 to 50257"),
    ("train", ["--vocab_size", "50258"], "argument --vocab_size: must be >= 0 and <= 50257"),
    ("train", ["--seed", "-1"], "argument --seed: must be >= 0"),
    ("train", ["--dropout", "1.5"], "argument --dropout: must be >= 0 and <= 0.99"),
    ("train", ["--beta2", "1"], "argument --beta2"),
    ("train", ["--z_loss", "-1"], "argument --z_loss: must be >= 0"),
    ("train", ["--grad_clip", "nan"], "argument --grad_clip: must be a finite number"),
    ("train", ["--n_layer", "two"], "argument --n_layer: expected an integer"),
    ("train", ["--optimizer", "sgd"], "argument --optimizer: invalid choice: 'sgd'"),
    ("train", ["--lr_schedule", "linear"], "argument --lr_schedule: invalid choice"),
    ("train", ["--dtype", "fp16"], "argument --dtype: invalid choice: 'fp16'"),
    ("train", ["--block", "mamba"], "argument --block: invalid choice"),
    ("train", ["--pos", "alibi"], "argument --pos: invalid choice"),
    ("train", ["--model_class", "huge"], "argument --model_class: invalid choice: 'huge'"),
    ("train", ["--n_layer", "9"], "the deepest possible is 7"),
    ("train", ["--n_layer", "2", "--n_unique", "3"], "n_unique must be between 1 and n_layer (2)"),
    ("train", ["--device", "tpu"], "--device 'tpu' is not a device"),
    ("train", ["--device", "cuda"] if NO_CUDA else ["--device", "cuda:99"], "--device cuda"),
    ("train", ["--out_dir", "{file}"], "--out_dir {file} is a file"),
    ("train", ["--out_dir", "{file}/run"], "cannot be written here"),
    ("train", ["--data_dir", "{file}"], "--data_dir {file} is a file"),
    ("train", ["--config", "{tmp}"], "no such file"),
    ("train", ["--config", "{recipe}"], "pretrain.learning_rate = 'nan': must be a finite number"),
    ("finetune", ["--task", "nope"], "argument --task: invalid choice: 'nope'"),
    ("finetune", ["--eval_examples", "0"], "argument --eval_examples: must be >= 1"),
    ("finetune", ["--init_from", "{tmp}/none", "--task", "cogs"], "no checkpoint at"),
    ("evaluate", ["--ckpt", "x", "--limit", "-1"], "argument --limit: must be >= 0"),
    ("evaluate", ["--ckpt", "x", "--batch_size", "0"], "argument --batch_size: must be >= 1"),
    ("evaluate", ["--ckpt", "x", "--task", "nope"], "argument --task: invalid choice"),
    ("evaluate", ["--ckpt", "x", "--dtype", "half"], "argument --dtype: invalid choice"),
    ("evaluate", ["--ckpt", "{tmp}", "--task", "cogs", "--out", "{tmp}"], "is a folder; give a JSON file name"),
    ("evaluate", ["--ckpt", "{tmp}/none.pt", "--task", "cogs"], "no checkpoint at"),
    ("sample", ["--temperature", "-1"], "argument --temperature: must be >= 0"),
    ("sample", ["--num_samples", "0"], "argument --num_samples: must be >= 1"),
    ("sample", ["--top_k", "-1"], "argument --top_k: must be >= 0"),
    ("sample", ["--device", "gpu"], "is not a device"),
    ("curve", ["--name", "x", "--device", "tpu"], "is not a device"),
    ("sweep", ["--finetune_iters", "0"], "argument --finetune_iters: must be >= 1"),
    ("sweep", ["--pretrain_iters", "-1"], "argument --pretrain_iters: must be >= 0"),
    ("sweep", ["--looped", "-1"], "argument --looped: must be >= 0"),
    ("sweep", ["--depths", "1,x"], "comma-separated integers"),
    ("sweep", ["--seeds", "0,-1"], "--seeds must be non-negative"),
    ("sweep", ["--seeds", "0,0"], "--seeds names [0] more than once"),
    ("sweep", ["--depths", "2,1,2"], "--depths names [2] more than once"),
    ("sweep", ["--tasks", "cogs,cogs"], "names a task more than once"),
    ("sweep", ["--model_class", "huge"], "invalid choice: 'huge'"),
    ("sweep", ["--tasks", "cogs,nope"], "unknown task 'nope'"),
    ("sweep", ["--tasks", ","], "--tasks ',' names no task"),
    ("sweep", ["--finetune_args", "--batch_size 0"], "argument --batch_size: must be >= 1"),
    ("sweep", ["--pretrain_args", "--learning_rate inf"], "argument --learning_rate: must be a finite number"),
    ("bench", ["--steps", "0"], "argument --steps: must be >= 1"),
    ("bench", ["--block_size", "1"], "argument --block_size: must be >= 2"),
    ("bench", ["--depths", "0"], "n_layer must be at least 1"),
    ("model", ["--vocab_size", "0"], "argument --vocab_size: must be >= 1"),
    ("model", ["--match", "flops"], "argument --match: invalid choice"),
    ("model", ["--model_class", "99M"], "invalid choice: '99M'"),
    ("tinystories", ["--out_dir", "{tmp}/ts", "--max_mb", "0"], "argument --max_mb: must be > 0"),
    ("c4", ["--out_dir", "{tmp}/c4", "--train_shards", "0"], "argument --train_shards: must be >= 1"),
    ("c4", ["--out_dir", "{tmp}/c4", "--val_shards", "9"], "argument --val_shards: must be >= 1 and <= 8"),
    ("text", ["--name", "t", "--train", "{tmp}/none.txt", "--val", "{file}"], "is not a file"),
    ("cogs", ["--out_dir", "{file}"], "--out_dir {file} is a file"),
]


@pytest.mark.parametrize("script,flags,needle", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_bad_value_is_refused_in_one_line(script, flags, needle, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "f.txt").write_text("a file")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"pretrain": {"learning_rate": "nan"}}))
    fill = {"{tmp}": str(work), "{file}": str(work / "f.txt"), "{recipe}": str(recipe)}
    argv = [a for a in flags]
    for k, v in fill.items():
        argv = [a.replace(k, v) for a in argv]
        needle = needle.replace(k, v)
    if script in ("train", "finetune") and "--out_dir" not in argv:
        argv += ["--out_dir", str(work / "out")]
    monkeypatch.setattr(sweep, "ROOT", tmp_path / "sweeproot")
    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    before = sorted(p.name for p in work.rglob("*"))
    with pytest.raises(SystemExit) as e:
        common.main_guard(lambda: SCRIPTS[script](argv))
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in work.rglob("*")) == before  # nothing written
    assert not (tmp_path / "sweeproot").exists()


def test_output_piped_into_head_ends_quietly():
    """`sweep.py --collect | head` once ended in a BrokenPipeError traceback: the reader leaving is
    not an error of ours, so main_guard stops with no output on stderr (exit 1, like Unix tools)."""
    code = "import common; common.main_guard(lambda: [print('x' * 99) for _ in range(100_000)])"
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()  # as `head` does after its lines
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 1 and err == "", err


@pytest.mark.parametrize("kind,faster,want", [("", True, "float32"), ("amx", False, "bfloat16"),
                                              ("avx512_bf16", False, "float32"), ("avx512_bf16", True, "bfloat16")])
def test_auto_dtype_on_cpu_follows_the_bf16_instructions_and_the_matmul_probe(monkeypatch, kind, faster, want):
    monkeypatch.setattr(common, "cpu_bf16", lambda: kind)
    monkeypatch.setattr(common, "bf16_matmul_faster", lambda: faster)
    assert common.pick_dtype("auto", "cpu") == want
    assert common.pick_dtype("float32", "cpu") == "float32"



@pytest.mark.parametrize("values, needle", [
    ({"data_dir": ["data", "tinystories"]}, 'pretrain.data_dir = ["data", "tinystories"]: give a string'),
    ({"init": None}, "pretrain.init = null: give a string"),
    ({"max_iters": True}, "pretrain.max_iters = true: give a number or string"),
    ({"max_iters": 2.5}, "pretrain.max_iters = 2.5: expected an integer"),
    ({"learning_rate": {"peak": 1}}, "give a number or string"),
    ({"quiet": "yes"}, 'pretrain.quiet must be true or false, got "yes"'),
    ({"optimizer": "sgd"}, "pretrain.optimizer = 'sgd'; choose one of"),
    ({"n_layers": 4}, "pretrain.n_layers is not a flag of this script"),
])
def test_a_recipe_value_of_the_wrong_kind_is_refused_in_one_line(values, needle, tmp_path, capsys):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"pretrain": values}))
    with pytest.raises(SystemExit) as e:
        common.main_guard(lambda: train.main(["--config", str(recipe), "--out_dir", str(tmp_path / "out")]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


JOBS = ("train", "finetune", "evaluate", "sample", "sweep", "report", "curve", "bench")


def test_no_job_imports_another():
    """Jobs stand on the library alone; the study runs the other jobs as processes."""
    import ast
    for job in JOBS:
        tree = ast.parse((ROOT / f"{job}.py").read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & (set(JOBS) - {job}), f"{job}.py imports {sorted(names & set(JOBS))}"


def test_every_function_reads_in_one_sitting():
    """No function of the project is over 60 lines (the loop in trainer.train included)."""
    import ast
    files = sorted(ROOT.glob("*.py")) + sorted((ROOT / "tools").glob("*.py")) + sorted((ROOT / "data").rglob("*.py"))
    long = [f"{f.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for f in files
            for n in ast.walk(ast.parse(f.read_text()))
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, long
    assert not list((ROOT / "results").rglob("*.py")), "code belongs with the scripts, not under results/"
