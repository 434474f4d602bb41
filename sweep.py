"""
The study in one command: for every depth and seed, pretrain (train.py), fine-tune on each task
(finetune.py) and score (evaluate.py), through those scripts' own code; then the paper's table
with 95% confidence intervals over seeds, and its figures.

    python sweep.py --config recipes/cpu_tiny.json --name cpu_tiny --loss_matched --dev_selected
    python sweep.py --model_class tiny --depths 1,2 --tasks cogs --seeds 0 --pretrain_iters 300

Finished steps are skipped, so the same command resumes a crashed sweep. Writes
results/<name>/results.csv (one row per depth x seed x task), summary.md, figures (*.png) and
runs/ (checkpoints; not for git). --ppl_matched adds the paper's perplexity-matched control,
--loss_matched its loss-matched one, --dev_selected scores each run at its best-dev snapshot,
--rank_analysis the FFN singular-value analysis. --looped K adds, at every depth L above K, models
of K distinct blocks applied L times, at matched parameters (the d_ff of depth K) and at matched
compute (the d_ff of depth L): depth as computation against depth as parameters.
--collect trains nothing: it tables and plots whichever of the named cells have finished (a study
still running, or cells finished by separate calls), leaving the others out.

A study's settings live in a recipe file (recipes/*.json): `python sweep.py --config
recipes/cpu_tiny.json` reads its "sweep" section and hands the file to train.py and finetune.py,
whose own sections it holds; flags given on the command line override the file.
--pretrain_iters 0 fine-tunes from random weights (no pretraining) with the recipe's model flags.
"""
import argparse
import csv
import fcntl
import io
import json
import math
import re
import shlex
import statistics
import sys

import torch

import evaluate
import finetune
import tasks
import train
from checkpoint import load_checkpoint
from common import (ROOT, Parser, UserError, folder_to_write, integer, main_guard, parse_with_recipe,
                    parse_int_list, pick_device, save_figure, write_atomic)
from model import MATCHES, MODEL_CLASSES, config_for

# two-sided 95% Student t quantiles by degrees of freedom (normal beyond 30)
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
       2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
       2.045, 2.042]


def mean_ci(values):
    """Mean and half-width of the 95% confidence interval (t-distribution over seeds)."""
    values = [v for v in values if v not in (None, "") and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    t = T95[len(values) - 2] if len(values) - 1 <= len(T95) else 1.96
    return m, t * statistics.stdev(values) / math.sqrt(len(values))


def get_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--name", default="sweep", help="results go to results/NAME/")
    a("--model_class", default="tiny", choices=tuple(MODEL_CLASSES), help=f"size class: {', '.join(MODEL_CLASSES)}")
    a("--depths", default="1,2,4,6", help="comma-separated depths")
    a("--tasks", default="cogs,cogs_vf", help=f"comma-separated tasks: {', '.join(tasks.TASKS)}")
    a("--seeds", default="0,1,2", help="comma-separated seeds; each seed pretrains and fine-tunes anew")
    a("--dataset", default="tinystories", help="pretraining corpus (as train.py --dataset)")
    a("--pretrain_iters", type=integer(0), default=300, help="pretraining steps per model (0: no pretraining, "
      "fine-tune from random weights)")
    a("--finetune_iters", type=integer(1), default=400, help="fine-tuning steps per model and task")
    a("--pretrain_args", default="", help="extra train.py flags, e.g. '--batch_size 16'")
    a("--finetune_args", default="", help="extra finetune.py flags, e.g. '--learning_rate 1e-3'")
    a("--eval_limit", type=integer(0), default=0, help="score a seeded random sample of N examples per split (0: all)")
    a("--ppl_matched", action="store_true", help="control: fine-tune deeper models from the pretraining "
      "snapshot whose perplexity matches the shallowest depth's final perplexity")
    a("--snapshot_interval", type=integer(0), default=0, help="pretraining snapshots every K steps "
      "(default with --ppl_matched: pretrain_iters / 10)")
    a("--loss_matched", action="store_true", help="control: score deeper models at the fine-tuning "
      "snapshot whose in-distribution dev loss matches the shallowest depth's final dev loss")
    a("--dev_selected", action="store_true", help="also score each run at its snapshot with the best "
      "in-distribution dev exact match (early stopping on dev; never on the generalization split)")
    a("--finetune_evals", type=integer(1), default=4, help="dev evaluations, each with a weights snapshot (for --loss_matched), "
      "per fine-tuning run")
    a("--rank_analysis", action="store_true", help="singular values and effective rank of the FFN weights")
    a("--looped", type=integer(0), default=0, help="also train looped models of K distinct blocks at every depth above "
      "K, at matched parameters and at matched compute (0: none)")
    a("--collect", action="store_true", help="train and score nothing: summarize the finished cells "
      "among those named (unfinished ones are left out and listed)")
    a("--device", default="auto", help="auto, cpu, cuda or mps")
    a("--quiet", action="store_true", help="no progress bars")
    args = parse_with_recipe(p, argv, "sweep")
    pick_device(args.device)
    folder_to_write(ROOT / "results" / args.name, "--name")
    if args.ppl_matched and not args.pretrain_iters:
        raise UserError("--ppl_matched needs pretraining; give --pretrain_iters")
    try:
        args.depth_list = parse_int_list(args.depths, "--depths")
        args.seed_list = parse_int_list(args.seeds, "--seeds")
        for n in args.depth_list:  # the class and every depth are checked where they are defined
            config_for(args.model_class, n, quiet=True)
            if 0 < args.looped < n:
                config_for(args.model_class, n, n_unique=args.looped, quiet=True)
    except ValueError as e:
        raise UserError(str(e)) from None
    args.task_list = [t for t in args.tasks.split(",") if t]
    if len(set(args.task_list)) < len(args.task_list):
        raise UserError(f"--tasks {args.tasks!r} names a task more than once")
    if not args.task_list:  # every table is a task's scores; without one there is nothing to sweep
        raise UserError(f"--tasks {args.tasks!r} names no task; give one or more of {', '.join(tasks.TASKS)}")
    for t in args.task_list:
        tasks.get_task(t)
    if args.ppl_matched and not args.snapshot_interval:
        args.snapshot_interval = max(1, args.pretrain_iters // 10)
    recipe = ["--config", args.config] if args.config else []
    train.get_args(recipe + args.pretrain_args.split())  # their flags refused now, not hours in
    finetune.get_args(recipe + args.finetune_args.split())
    return args


def finetune_budget(ft, step=None):
    """What a fine-tuning run's row must say to be compared: examples seen, vocabulary, batching, dtype."""
    rc = ft["run_config"]
    per_step = rc["batch_size"] * rc.get("gradient_accumulation_steps", 1) * ft.get("world_size", 1)
    return {"finetune_examples": per_step * (step if step is not None else ft["step"]),
            "finetune_batch": per_step, "vocab": ft["data"].get("vocab", "gpt2"),
            "vocab_size": ft["model_config"]["vocab_size"], "batching": rc.get("batching", "random"),
            "dtype": ft.get("dtype", "")}


class Unfinished(Exception):
    """--collect met a step whose result is not on disk: its cell is left out, not run."""


TEXT_COLUMNS = {"model_class", "task", "control", "code_version", "recipe", "pretrain_args", "finetune_args",
                "vocab", "batching", "dtype", "run", "variant"}


def read_csv(path):
    """A results or curve CSV as written, numbers and booleans parsed back ([] if absent)."""
    def value(k, v):
        if k in TEXT_COLUMNS or k.endswith("sha256") or v == "":
            return v
        if v in ("True", "False"):
            return v == "True"
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v
    if not path.is_file():
        return []
    return [{k: value(k, v) for k, v in r.items()} for r in csv.DictReader(open(path, newline=""))]


def read_rows(path, recipe_sha256):
    """The rows of an earlier results.csv made with this recipe."""
    return [r for r in read_csv(path) if r.get("recipe_sha256", "") == recipe_sha256]


class Sweep:
    def __init__(self, args):
        self.args = args
        self.skipped = []  # with --collect: the cells left out as unfinished
        self.root = ROOT / "results" / args.name
        self.runs = self.root / "runs"
        # a study that spans machines: cells finished elsewhere are carried over from results.csv
        # (their run folders, gigabytes of weights, stay behind); self.kept names them
        self.earlier = read_rows(self.root / "results.csv", args.config_sha256)
        self.kept = []
        self.common = ["--device", args.device] + (["--quiet"] if args.quiet else []) + \
            (["--config", args.config] if args.config else [])

    # --- the three steps, each skipped when its result exists -----------------------------------
    def cell(self, depth, seed, variant=None):
        """A model's run folder: d4_s0, or d4_u1params_s0 for K=1 blocks looped to depth 4."""
        return self.runs / (f"d{depth}_s{seed}" if not variant else f"d{depth}_u{variant[0]}{variant[1]}_s{seed}")

    @staticmethod
    def model_flags(depth, variant=None):
        return ["--n_layer", str(depth)] + (["--n_unique", str(variant[0]), "--match", variant[1]] if variant else [])

    def pretrain(self, depth, seed, variant=None):
        if not self.args.pretrain_iters:  # no pretraining: the fine-tuning run builds the model
            return None
        out = self.cell(depth, seed, variant) / "pretrain"
        if not (out / "summary.json").exists():
            self.unfinished(out)
            argv = ["--model_class", self.args.model_class, *self.model_flags(depth, variant), "--seed", str(seed),
                    "--dataset", self.args.dataset, "--max_iters", str(self.args.pretrain_iters),
                    "--eval_interval", str(max(1, self.args.pretrain_iters // 5)), "--out_dir", str(out),
                    "--snapshot_interval", str(self.args.snapshot_interval), *self.common,
                    *self.args.pretrain_args.split()]
            train.main(argv + (["--resume"] if (out / "ckpt.pt").exists() else []))
        return json.loads((out / "summary.json").read_text())

    def finetune(self, init, out, task, seed, depth=None, variant=None):
        if not (out / "summary.json").exists():
            self.unfinished(out)
            start = ["--init_from", str(init)] if init else \
                ["--from_scratch", "--model_class", self.args.model_class, *self.model_flags(depth, variant)]
            every = max(1, self.args.finetune_iters // self.args.finetune_evals)
            argv = ["--task", task, *start, "--seed", str(seed), "--out_dir", str(out),
                    "--max_iters", str(self.args.finetune_iters), "--eval_interval", str(every),
                    "--snapshot_interval", str(every), *self.common,  # weights at each eval: the loss-matched control
                    *self.args.finetune_args.split()]
            finetune.main(argv + (["--resume"] if (out / "ckpt.pt").exists() else []))
        return json.loads((out / "summary.json").read_text())

    def unfinished(self, path):
        if self.args.collect:
            raise Unfinished(path)

    def evaluate(self, run, task, ckpt=None, label=""):
        """The run's scores on the task (eval_<task>.json), or a snapshot's (eval_<task>_<label>.json)."""
        path = run / (f"eval_{task}_{label}.json" if label else f"eval_{task}.json")
        if not path.exists():
            self.unfinished(path)
            argv = ["--ckpt", str(ckpt or run / "ckpt.pt"), "--task", task, "--out", str(path),
                    "--device", self.args.device]
            if self.args.eval_limit:
                argv += ["--limit", str(self.args.eval_limit), "--sample"]
            evaluate.main(argv)
        return json.loads(path.read_text())

    # --- one row of results.csv ------------------------------------------------------------------
    def row(self, depth, seed, task, pre, ft, ev, control="", init_step=None, finetune_step=None):
        t = tasks.get_task(task)
        by_split = {r["split"]: r for r in ev["results"]}
        gen = by_split.get(t.gen_split, {})
        built = pre or ft  # without pretraining the fine-tuning run holds the model's description
        row = {"model_class": self.args.model_class, "n_layer": depth,
               "n_unique": built["model_config"].get("n_unique") or depth,
               "d_model": built["model_config"]["d_model"], "d_ff": built["model_config"]["d_ff"],
               "params": built["params"]["total"], "params_non_embedding": built["params"]["non_embedding"],
               "flops_per_token": built["params"]["forward_flops_per_token"],
               "seed": seed, "task": task, "control": control,
               "pretrain_step": (init_step if init_step is not None else pre["step"]) if pre else 0,
               "val_loss": pre["val_loss"] if pre else "", "perplexity": pre["val_ppl"] if pre else "",
               "bits_per_byte": pre.get("val_bpb", "") if pre else "",
               "pretrain_vocab_size": pre["model_config"]["vocab_size"] if pre else "",
               "finetune_step": finetune_step if finetune_step is not None else ft["step"],
               "id_acc": by_split[t.id_split]["exact_match"] if t.id_split in by_split else "",
               "gen_acc": gen.get("exact_match", ""),
               "lexical_acc": gen.get("lexical", {}).get("exact_match", ""),
               "structural_acc": gen.get("structural", {}).get("exact_match", ""),
               "finetune_val_loss": ft["val_loss"], "eval_n": gen.get("n", ""),
               **finetune_budget(ft, finetune_step),
               "pretrain_seconds": round(pre["train_seconds"], 1) if pre else 0,
               "finetune_seconds": round(ft["train_seconds"], 1),
               "eval_seconds": round(sum(r["seconds"] for r in ev["results"]), 1),
               "code_version": ev["code_version"],
               "pretrain_data_sha256": pre["data"].get("train_sha256") if pre else "",
               "task_data_sha256": gen.get("sha256", ""), "recipe": self.args.config,
               "recipe_sha256": self.args.config_sha256,
               # flags given over the recipe: without them two folders' rows could not be told apart
               "pretrain_args": self.args.pretrain_args, "finetune_args": self.args.finetune_args}
        for c, v in gen.get("categories", {}).items():
            if len(gen["categories"]) > 1:
                row[f"cat:{c}"] = v["exact_match"]
        return row

    def run(self):
        rows = []
        pre = {}
        for seed in self.args.seed_list:
            for depth in self.args.depth_list:
                if self.carry_over(depth, seed, rows, pre):
                    continue
                self.collecting(self.cell(depth, seed).name, lambda: self.model_rows(depth, seed, None, rows, pre))
            for depth in [d for d in self.args.depth_list if 0 < self.args.looped < d]:
                for match in MATCHES:
                    variant = (self.args.looped, match)
                    self.collecting(self.cell(depth, seed, variant).name,
                                    lambda: self.model_rows(depth, seed, variant, rows, pre))
            # the controls compare depths, so they need every depth of the seed
            complete = all((d, seed) in pre for d in self.args.depth_list)
            for flag, control in (("ppl_matched", self.ppl_matched), ("loss_matched", self.loss_matched),
                                  ("dev_selected", self.dev_selected)):
                if getattr(self.args, flag):
                    carried = [r for r in self.earlier if r["seed"] == seed and r["control"].startswith(flag)]
                    if any(self.cell(d, seed).name in self.kept for d in self.args.depth_list):
                        rows.extend(carried)  # the seed's control, computed where its cells ran
                        if not carried:
                            self.skipped.append(f"{flag} s{seed}")
                    elif complete:
                        self.collecting(f"{flag} s{seed}", lambda: rows.extend(control(seed, pre)))
                    else:
                        self.skipped.append(f"{flag} s{seed}")
                    self.write_csv(rows)
        if not rows:
            raise UserError(f"no finished cells in {self.root}; run this sweep without --collect first")
        return rows

    def folder_of(self, row):
        """The run folder a results.csv row came from (a control's: its model's)."""
        m = re.match(r"looped_(\w+)_u(\d+)$", row["control"])
        return self.cell(row["n_layer"], row["seed"], (int(m[2]), m[1]) if m else None)

    def carry_over(self, depth, seed, rows, pre):
        """An unlooped cell whose run folder is not here but whose rows, one per task, an earlier
        results.csv of this recipe holds: those rows stand for it."""
        if self.cell(depth, seed).exists():
            return False
        mine = [r for r in self.earlier if r["n_layer"] == depth and r["seed"] == seed and not r["control"]]
        if sorted(r["task"] for r in mine) != sorted(self.args.task_list):
            return False
        rows += mine
        pre[depth, seed] = None  # nothing on disk to match against: its seed's controls are carried too
        self.kept.append(self.cell(depth, seed).name)
        return True

    def collecting(self, name, work):
        """Run one cell's work; with --collect, an unfinished cell is noted and left out."""
        try:
            work()
        except Unfinished:
            self.skipped.append(name)

    def model_rows(self, depth, seed, variant, rows, pre):
        """Pretrain (if the sweep does), fine-tune and score one model on every task; pre[depth, seed]
        holds an unlooped model's pretraining summary once all its tasks are scored."""
        summary = self.pretrain(depth, seed, variant)
        cell = self.cell(depth, seed, variant)
        init = cell / "pretrain" / "ckpt.pt" if summary else None
        control = f"looped_{variant[1]}_u{variant[0]}" if variant else ""
        mine = []  # rows land together, so a collected model has all its tasks or none
        for task in self.args.task_list:
            ft = self.finetune(init, cell / f"ft_{task}", task, seed, depth, variant)
            ev = self.evaluate(cell / f"ft_{task}", task)
            mine.append(self.row(depth, seed, task, summary, ft, ev, control=control))
            self.write_csv(rows + mine)
        rows += mine
        if not variant:
            pre[depth, seed] = summary

    # --- early stopping on the in-distribution dev split -------------------------------------------
    def dev_selected(self, seed, pre):
        """Each run scored at the snapshot (or final checkpoint) with the best dev exact match, ties
        to the lower dev loss: model selection on in-distribution data only."""
        rows = []
        for task in self.args.task_list:
            for depth in self.args.depth_list:
                run = self.runs / f"d{depth}_s{seed}" / f"ft_{task}"
                cands = snapshot_meta(sorted((run / "snapshots").glob("step_*.pt")))
                key = next(k for k in cands[next(iter(cands))]["metrics"] if k.endswith("_exact_match")) \
                    if cands else None
                if not key:
                    raise UserError(f"no fine-tuning snapshots in {run}; fine-tune it again with this sweep.py")
                best = max(cands, key=lambda s: (cands[s]["metrics"][key], -cands[s]["val_loss"]))
                ev = self.evaluate(run, task, best, "dev_selected")
                ft = {**json.loads((run / "summary.json").read_text()), "val_loss": cands[best]["val_loss"]}
                rows.append(self.row(depth, seed, task, pre[depth, seed], ft, ev, control="dev_selected",
                                     finetune_step=cands[best]["step"]))
        return rows

    # --- the loss-matched control (finding 3, second half) ----------------------------------------
    def loss_matched(self, seed, pre):
        """Generalization of each deeper model at its fine-tuning snapshot whose dev loss is
        closest to the shallowest depth's final dev loss: depths compared at equal in-distribution fit."""
        ref_depth = min(self.args.depth_list)
        rows = []
        for task in self.args.task_list:
            ref = self.runs / f"d{ref_depth}_s{seed}" / f"ft_{task}"
            target = json.loads((ref / "summary.json").read_text())["val_loss"]
            for depth in self.args.depth_list:
                if depth == ref_depth:
                    continue
                run = self.runs / f"d{depth}_s{seed}" / f"ft_{task}"
                snaps = sorted((run / "snapshots").glob("step_*.pt"))
                if not snaps:
                    raise UserError(f"no fine-tuning snapshots in {run}; fine-tune it again with this sweep.py")
                meta = snapshot_meta(snaps)
                best = min(meta, key=lambda s: abs(meta[s]["val_loss"] - target))
                step = meta[best]["step"]
                ev = self.evaluate(run, task, best, "loss_matched")
                ft = {**json.loads((run / "summary.json").read_text()), "val_loss": meta[best]["val_loss"]}
                rows.append(self.row(depth, seed, task, pre[depth, seed], ft, ev,
                                     control=f"loss_matched_to_d{ref_depth}", finetune_step=step))
        return rows

    # --- the paper's perplexity-matched control ------------------------------------------------
    def ppl_matched(self, seed, pre):
        ref_depth = min(self.args.depth_list)
        target = pre[ref_depth, seed]["val_loss"]
        rows = []
        for depth in self.args.depth_list:
            if depth == ref_depth:
                continue
            snaps = sorted((self.runs / f"d{depth}_s{seed}" / "pretrain" / "snapshots").glob("step_*.pt"))
            if not snaps:
                raise UserError(f"no snapshots for depth {depth}; rerun with --snapshot_interval")
            losses = {s: load_checkpoint(s)["val_loss"] for s in snaps}
            best = min(losses, key=lambda s: abs(losses[s] - target))
            step = load_checkpoint(best)["step"]
            cell = self.runs / f"d{depth}_s{seed}"
            matched = {**pre[depth, seed], "val_loss": losses[best], "val_ppl": math.exp(losses[best])}
            for task in self.args.task_list:
                run = cell / f"ppl_matched_{task}"
                ft = self.finetune(best, run, task, seed)
                ev = self.evaluate(run, task)
                rows.append(self.row(depth, seed, task, matched, ft, ev, control=f"ppl_matched_to_d{ref_depth}",
                                     init_step=step))
        return rows

    def write_csv(self, rows):
        if not rows:  # nothing finished yet: leave any results.csv already there alone
            return
        self.root.mkdir(parents=True, exist_ok=True)
        # This call's rows replace their own. Rows of this recipe that it did not make stay: cells
        # outside its depths and seeds (a lane of the study running beside it, or before it), and
        # cells in them whose run folders are elsewhere (finished on another machine). The file is
        # read again under a lock, so two lanes writing at once both keep their rows.
        key = lambda r: (r["n_layer"], r["n_unique"], r["seed"], r["task"], r["control"])  # noqa: E731
        mine = {key(r) for r in rows}
        ours = lambda r: r["n_layer"] in self.args.depth_list and r["seed"] in self.args.seed_list  # noqa: E731
        with open(self.root / ".results.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            earlier = read_rows(self.root / "results.csv", self.args.config_sha256)
            rows = rows + [r for r in earlier if key(r) not in mine and not (ours(r) and self.folder_of(r).exists())]
            keys = list(dict.fromkeys(k for r in rows for k in r))
            text = io.StringIO(newline="")
            w = csv.DictWriter(text, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
            write_atomic(self.root / "results.csv", text.getvalue())


# --- FFN rank analysis (the paper's finding 5: very narrow FFNs come close to rank-deficient) ---

def snapshot_meta(paths):
    """Each snapshot's step, losses and metrics, without keeping its weights in memory."""
    return {p: {k: v for k, v in load_checkpoint(p).items() if k != "model"} for p in paths}


def effective_rank(s):
    """Roy & Vetterli (2007): exp of the entropy of the normalized singular values."""
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def rank_analysis(sweep):
    out = {}
    for depth in sweep.args.depth_list:
        for seed in sweep.args.seed_list:
            cell = sweep.runs / f"d{depth}_s{seed}"
            # the pretrained weights; without pretraining, the first task's fine-tuned ones
            path = cell / "pretrain" / "ckpt.pt" if sweep.args.pretrain_iters else \
                cell / f"ft_{sweep.args.task_list[0]}" / "ckpt.pt"
            if cell.name in sweep.skipped + sweep.kept:  # mid-training, or its weights are elsewhere
                continue
            ck = load_checkpoint(path)
            cfg = ck["model_config"]
            for name, w in ck["model"].items():
                if ".ffn.wi.weight" in name or ".ffn.wo.weight" in name:
                    mats = w.float().chunk(2, 0) if ("wi" in name and cfg["block"] == "paper") else [w.float()]
                    for k, m in enumerate(mats):
                        s = torch.linalg.svdvals(m)
                        label = "wo" if "wo" in name else (f"wi_{k}" if len(mats) > 1 else "wi")
                        out.setdefault((depth, label), []).append(
                            {"seed": seed, "layer": int(name.split(".")[1]), "effective_rank": effective_rank(s),
                             "max_rank": min(m.shape), "d_ff": cfg["d_ff"]})
    return out


# --- tables and figures ------------------------------------------------------------------------------

def summarize(rows, args, root, skipped=(), kept=()):
    """Markdown in the paper's layout: depth by task, mean +- 95% CI over seeds (in %)."""
    main = [r for r in rows if not r["control"]]
    depths = sorted({r["n_layer"] for r in main})
    versions = sorted({r["code_version"] for r in rows})
    lines = [f"# {args.name}: {args.model_class} class, seeds {args.seeds}", "",
             f"Mean over seeds ± 95% CI half-width (t-distribution). Generalization exact match in %, "
             f"scored on {'a seeded sample of ' + str(args.eval_limit) if args.eval_limit else 'all'} examples "
             f"per split. Runs made by code {', '.join(versions)}"
             + (f"; recipe {args.config} (sha256 {args.config_sha256})." if args.config else ".")
             + "".join(f" {k}: `{getattr(args, k)}`." for k in ("pretrain_args", "finetune_args")
                       if getattr(args, k)), "",
             *([f"Collected (--collect) from the finished cells only; left out as unfinished: "
                f"{', '.join(skipped)}.", ""] if skipped else []),
             *([f"Carried over from the earlier results.csv (run folders on the machine that ran them): "
                f"{', '.join(kept)}.", ""] if kept else []),
             "| depth | d_ff | perplexity | bits per byte | " + " | ".join(f"{t} gen" for t in args.task_list) + " |",
             "|---|---|---|---|" + "---|" * len(args.task_list)]
    for d in depths:
        rs = [r for r in main if r["n_layer"] == d]
        ppl, bpb = (mean_ci([r.get(k, "") for r in rs if r["task"] == args.task_list[0]])
                    for k in ("perplexity", "bits_per_byte"))
        cells = [fmt(mean_ci([100 * r["gen_acc"] for r in rs if r["task"] == t])) for t in args.task_list]
        lines.append(f"| {d} | {rs[0]['d_ff']} | {fmt(ppl)} | {fmt(bpb, 3)} | " + " | ".join(cells) + " |")
    lines += ["", "In-distribution exact match (%), and what fine-tuning took (steps; minutes per run):", "",
              "| depth | " + " | ".join(f"{t} test | steps | minutes" for t in args.task_list) + " |",
              "|---|" + "---|---|---|" * len(args.task_list)]
    for d in depths:
        rs = [r for r in main if r["n_layer"] == d]
        cells = [f"{fmt(mean_ci([100 * r['id_acc'] for r in rs if r['task'] == t and r['id_acc'] != '']))} | "
                 f"{', '.join(sorted({str(r['finetune_step']) for r in rs if r['task'] == t}))} | "
                 f"{fmt(mean_ci([r['finetune_seconds'] / 60 for r in rs if r['task'] == t]))}"
                 for t in args.task_list]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in main})
    for t in args.task_list:
        lines += ["", f"{t}: every seed, generalization / in-distribution exact match (%):", "",
                  "| depth | " + " | ".join(f"seed {k}" for k in seeds) + " |", "|---|" + "---|" * len(seeds)]
        for d in depths:
            by = {r["seed"]: r for r in main if r["n_layer"] == d and r["task"] == t}
            lines.append(f"| {d} | " + " | ".join(
                f"{100 * by[k]['gen_acc']:.1f} / {100 * by[k]['id_acc']:.1f}" if k in by and by[k]["id_acc"] != ""
                else (f"{100 * by[k]['gen_acc']:.1f}" if k in by else "–") for k in seeds) + " |")
    for t in [t for t in args.task_list if tasks.get_task(t).structural]:
        lines += ["", f"{t}: lexical and structural generalization (%):", "", "| depth | lexical | structural |",
                  "|---|---|---|"]
        for d in depths:
            rs = [r for r in main if r["n_layer"] == d and r["task"] == t]
            lines.append(f"| {d} | {fmt(mean_ci([100 * r['lexical_acc'] for r in rs]))} | "
                         f"{fmt(mean_ci([100 * r['structural_acc'] for r in rs]))} |")
    lines += paired_differences(main, args, depths)
    lines += control_tables(rows, main, args)
    lines += looped_table(rows, args, depths)
    write_atomic(root / "summary.md", "\n".join(lines) + "\n")
    return "\n".join(lines)


def paired_differences(main, args, depths):
    """Each depth minus the shallowest, seed by seed (the same seed's data order on both sides):
    the interval says whether a depth difference is established, which unpaired intervals blur."""
    if len(depths) < 2:
        return []
    ref = depths[0]
    lines = ["", f"Paired differences against depth {ref}, per seed (percentage points; mean ± 95% CI over "
             "the seeds both depths finished):", "",
             "| task | depth | seeds | gen difference | test difference | per seed (gen) |",
             "|---|---|---|---|---|---|"]
    for t in args.task_list:
        base = {r["seed"]: r for r in main if r["n_layer"] == ref and r["task"] == t}
        for d in depths[1:]:
            pairs = [(base[r["seed"]], r) for r in main if r["n_layer"] == d and r["task"] == t and r["seed"] in base]
            if not pairs:
                continue
            gen = [100 * (deep["gen_acc"] - shallow["gen_acc"]) for shallow, deep in pairs]
            test = [100 * (deep["id_acc"] - shallow["id_acc"]) for shallow, deep in pairs
                    if deep["id_acc"] != "" and shallow["id_acc"] != ""]
            lines.append(f"| {t} | {d} − {ref} | {len(pairs)} | {fmt(mean_ci(gen))} | {fmt(mean_ci(test))} | "
                         + ", ".join(f"{g:+.1f}" for g in gen) + " |")
    return lines


def control_tables(rows, main, args):
    """The paper's controls and early stopping on dev, each beside the reference depth's own runs."""
    lines = []
    controls = {"ppl_matched": ("Perplexity-matched control", "deeper models fine-tuned from the pretraining "
                                "snapshot closest in perplexity to the shallowest model's final one",
                                "pretrain_step", "perplexity"),
                "loss_matched": ("Loss-matched control", "deeper models scored at the fine-tuning snapshot "
                                 "whose in-distribution dev loss is closest to the shallowest model's final one",
                                 "finetune_step", "finetune_val_loss"),
                "dev_selected": ("Dev-selected checkpoints", "every run scored at its fine-tuning snapshot with "
                                 "the best in-distribution dev exact match (early stopping on dev)",
                                 "finetune_step", "finetune_val_loss")}
    for kind, (title, what, step_key, fit_key) in controls.items():
        ctrl = [r for r in rows if r["control"].startswith(kind)]
        if not ctrl:
            continue
        base = {r["n_layer"] for r in main} - {r["n_layer"] for r in ctrl}
        ref = [r for r in main if r["n_layer"] in base]
        lines += ["", f"{title} ({ctrl[0]['control']}): {what}.", "",
                  f"| depth | {step_key} | {fit_key} | " + " | ".join(f"{t} gen | {t} test" for t in args.task_list)
                  + " |", "|---|---|---|" + "---|---|" * len(args.task_list)]
        for d in sorted({r["n_layer"] for r in ref + ctrl}):
            rs = [r for r in ref + ctrl if r["n_layer"] == d]
            steps = sorted({r[step_key] for r in rs})
            lines.append(f"| {d} | {', '.join(map(str, steps))} | "
                         f"{fmt(mean_ci([r[fit_key] for r in rs if r['task'] == args.task_list[0]]), 3)} | "
                         + " | ".join(fmt(mean_ci([100 * r["gen_acc"] for r in rs if r["task"] == t])) + " | "
                                      + fmt(mean_ci([100 * r["id_acc"] for r in rs if r["task"] == t]))
                                      for t in args.task_list) + " |")
    return lines


def looped_table(rows, args, depths):
    """Unlooped against looped models at each depth: depth as parameters against depth as computation."""
    looped = [r for r in rows if r["control"].startswith("looped_")]
    if not looped:
        return []
    k = looped[0]["n_unique"]
    kinds = {"": "unlooped", f"looped_params_u{k}": "looped, matched parameters",
             f"looped_compute_u{k}": "looped, matched compute"}
    lines = ["", f"Looped models ({k} distinct block{'s' if k > 1 else ''} applied depth times): at matched "
             f"parameters the d_ff of depth {k} (the class's parameters, more FLOPs), at matched compute the "
             "d_ff of the depth itself (its FLOPs, fewer parameters). Generalization / in-distribution exact "
             "match (%); parameters and forward MFLOP per token below each.", ""]
    for t in args.task_list:
        lines += [f"{t}:", "", "| depth | " + " | ".join(kinds.values()) + " |", "|---|---|---|---|"]
        for d in depths:
            cells = []
            for kind in kinds:
                rs = [r for r in rows if r["control"] == kind and r["n_layer"] == d and r["task"] == t]
                cells.append("–" if not rs else
                             f"{fmt(mean_ci([100 * r['gen_acc'] for r in rs]))} / "
                             f"{fmt(mean_ci([100 * r['id_acc'] for r in rs if r['id_acc'] != '']))}<br>"
                             f"{rs[0]['params']:,}; {rs[0]['flops_per_token'] / 1e6:.1f}")
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def fmt(mc, digits=1):
    m, h = mc
    if math.isnan(m):
        return "–"
    return f"{m:.{digits}f}" if math.isnan(h) else f"{m:.{digits}f} ± {h:.{digits}f}"


def mean_series(rows, depths, key, task=None, scale=1.0):
    """Mean and 95% CI half-width of a column at each depth (nan where no row has it)."""
    ms, hs = [], []
    for d in depths:
        m, h = mean_ci([scale * r[key] for r in rows
                        if r["n_layer"] == d and (task is None or r["task"] == task) and r[key] != ""])
        ms.append(m)
        hs.append(0.0 if math.isnan(h) else h)
    return ms, hs


def band(ax, depths, ms, hs, label, marker="o"):
    keep = [i for i, m in enumerate(ms) if not math.isnan(m)]
    xs, m, h = [depths[i] for i in keep], [ms[i] for i in keep], [hs[i] for i in keep]
    ax.plot(xs, m, marker=marker, label=label)
    ax.fill_between(xs, [a - b for a, b in zip(m, h)], [a + b for a, b in zip(m, h)], alpha=0.2)


def finish_depth_figure(ax, path, depths, narrow, ylabel):
    """Axis labels, the d_ff < d_model line (where the paper saw perplexity worsen), and the file."""
    import matplotlib.pyplot as plt
    if narrow:
        ax.axvline(narrow[0] - 0.5, color="gray", ls="--", lw=1)
        ax.text(narrow[0] - 0.45, ax.get_ylim()[1], " d_ff < d_model", va="top", fontsize=8, color="gray")
    ax.set_xlabel("depth (n_layer), parameters held fixed")
    ax.set_ylabel(ylabel)
    ax.set_xticks(depths)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.figure.tight_layout()
    save_figure(ax.figure, path)
    plt.close(ax.figure)


def figures(rows, args, root, ranks=None):
    """perplexity_by_depth, generalization_by_depth, <task>_lexical_structural, looped_by_depth and
    ffn_rank_by_depth (.png), each with 95% CI bands over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    main = [r for r in rows if not r["control"]]
    depths = sorted({r["n_layer"] for r in main})
    narrow = [d for d in depths if next(r["d_ff"] for r in main if r["n_layer"] == d) < main[0]["d_model"]]
    plots = []  # (file, y label, title, [(label, rows, key, task, scale)])
    if args.pretrain_iters:
        plots.append(("perplexity_by_depth.png", f"{args.dataset} validation perplexity",
                      f"{args.model_class}: pretraining perplexity by depth",
                      [("", main, "perplexity", args.task_list[0], 1.0)]))
    plots.append(("generalization_by_depth.png", "generalization exact match (%)",
                  f"{args.model_class}: generalization by depth (95% CI)",
                  [(t, main, "gen_acc", t, 100) for t in args.task_list]))
    for t in [t for t in args.task_list if tasks.get_task(t).structural]:
        plots.append((f"{t}_lexical_structural.png", "exact match (%)", f"{t}: lexical vs structural generalization",
                      [("lexical (18 categories)", main, "lexical_acc", t, 100),
                       ("structural (3 categories)", main, "structural_acc", t, 100)]))
    looped = [r for r in rows if r["control"].startswith("looped_")]
    if looped:
        t, k = args.task_list[0], looped[0]["n_unique"]
        plots.append(("looped_by_depth.png", "generalization exact match (%)",
                      f"{t}: unlooped vs {k} block looped, by depth (95% CI)",
                      [("unlooped", main, "gen_acc", t, 100)] +
                      [(kind.replace("looped_", "looped, matched ").replace(f"_u{k}", ""),
                        [r for r in looped if r["control"] == kind], "gen_acc", t, 100)
                       for kind in sorted({r["control"] for r in looped}, reverse=True)]))
    if ranks:
        rank_rows = [{"n_layer": d, "task": m, "fraction": x["effective_rank"] / x["max_rank"]}
                     for (d, m), xs in ranks.items() for x in xs]
        plots.append(("ffn_rank_by_depth.png", "effective rank fraction", "FFN weights: effective rank / full rank",
                      [(m, rank_rows, "fraction", m, 1.0) for m in sorted({k[1] for k in ranks})]))
    for path, ylabel, title, lines in plots:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for label, subset, key, task, scale in lines:
            band(ax, depths, *mean_series(subset, depths, key, task, scale), label)
        ax.set_title(title)
        finish_depth_figure(ax, root / path, depths, narrow, ylabel)


def main(argv=None):
    args = get_args(argv)
    sweep = Sweep(args)
    rows = sweep.run()
    ranks = None
    if args.rank_analysis:
        ranks = rank_analysis(sweep)
        old, mine = sweep.root / "ffn_rank.json", {(d, x["seed"]) for (d, _), xs in ranks.items() for x in xs}
        for x in json.loads(old.read_text()) if old.is_file() else []:  # other cells' stay, as in results.csv
            if (x["n_layer"], x["seed"]) not in mine:
                ranks.setdefault((x["n_layer"], x["matrix"]), []).append(
                    {k: v for k, v in x.items() if k not in ("n_layer", "matrix")})
        write_atomic(sweep.root / "ffn_rank.json", json.dumps(
            [{"n_layer": d, "matrix": m, **x} for (d, m), xs in sorted(ranks.items()) for x in xs], indent=1))
    print(summarize(rows, args, sweep.root, sweep.skipped, sweep.kept))
    figures(rows, args, sweep.root, ranks)
    # quoted, so that a value with spaces (--finetune_args "--dropout 0.1") pastes back as given
    write_atomic(sweep.root / "command.txt", shlex.join(
        ["python", "sweep.py", *(argv if argv is not None else sys.argv[1:])]) + "\n")
    print(f"wrote {sweep.root}/results.csv, summary.md and figures")
    return rows


if __name__ == "__main__":
    main_guard(main)
