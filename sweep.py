"""
The study in one command: for every depth and seed, pretrain (train.py), fine-tune on each task
(finetune.py) and score (evaluate.py), each run as its own process, as a user would run it; the
rows go to results/<name>/results.csv, and report.py turns them into the paper's tables (95%
confidence intervals over seeds) and figures.

    python sweep.py --config recipes/cpu_tiny.json --name cpu_tiny --loss_matched --dev_selected
    python sweep.py --model_class tiny --depths 1,2 --tasks cogs --seeds 0 --pretrain_iters 300

Finished steps are skipped, so the same command resumes a crashed sweep. Writes
results/<name>/results.csv (one row per depth x seed x task), command.txt (each distinct command
that ran it), and runs/ (checkpoints; not for git); then runs `python report.py --name <name>`
(summary.md, figures). --ppl_matched adds the paper's perplexity-matched control, --loss_matched its
loss-matched one, --dev_selected scores each run at its best-dev snapshot, --rank_analysis has the
report add the FFN singular-value analysis. --looped K adds, at every depth L above K, models of K
distinct blocks applied L times, at matched parameters (the d_ff of depth K) and at matched compute
(the d_ff of depth L): depth as computation against depth as parameters. While a study runs,
`python report.py --name <name>` tables the cells finished so far.

A study's settings live in a recipe file (recipes/*.json): `python sweep.py --config
recipes/cpu_tiny.json` reads its "sweep" section and hands the file to train.py and finetune.py,
whose own sections it holds; flags given on the command line override the file.
--pretrain_iters 0 fine-tunes from random weights (no pretraining) with the recipe's model flags.
"""
import argparse
import fcntl
import json
import math
import re
import shlex
import sys

import tasks
from checkpoint import load_checkpoint, snapshots
from common import (ROOT, Parser, UserError, folder_to_write, integer, main_guard, parse_int_list,
                    parse_with_recipe, pick_device, read_csv, run_script, write_atomic, write_csv)
from corpus import WORD, corpus_words, ensure_prepared
from model import MATCHES, MODEL_CLASSES, config_for


def get_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--name", default="sweep", help="results go to results/NAME/")
    a("--model_class", default="tiny", choices=tuple(MODEL_CLASSES), help=f"size class: {', '.join(MODEL_CLASSES)}")
    a("--depths", default="1,2,4,6", help="comma-separated depths")
    a("--tasks", default="cogs,cogs_vf", help=f"comma-separated tasks: {', '.join(tasks.TASKS)}; none: "
      "pretraining only (finding 2: one row per depth and seed, validation loss and bits per byte)")
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
    a("--finetune_evals", type=integer(1), default=4, help="dev evaluations, each with a weights snapshot "
      "(for --loss_matched), per fine-tuning run")
    a("--rank_analysis", action="store_true", help="the report adds the singular values and effective rank of the "
      "FFN weights")
    a("--looped", type=integer(0), default=0, help="also train looped models of K distinct blocks at every depth above "
      "K, at matched parameters and at matched compute (0: none)")
    a("--looped_match", default="both", choices=("both",) + MATCHES, help="which looped models --looped trains: "
      "both matchings, or only one (a lane that runs the cheap compute-matched cells first)")
    a("--collect", action="store_true", help="train and score nothing: run report.py on the rows results.csv "
      "holds (kept so that the recorded studies' commands still table them)")
    a("--device", default="auto", help="auto, cpu, cuda or mps")
    a("--quiet", action="store_true", help="no progress bars")
    return check_args(parse_with_recipe(p, argv, "sweep"))


def check_args(args):
    """Every setting refused before anything runs, in one line: depths, tasks, controls, and the
    flags handed to train.py and finetune.py (checked by their own parsers)."""
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
    args.task_list = [] if args.tasks == "none" else [t for t in args.tasks.split(",") if t]
    if len(set(args.task_list)) < len(args.task_list):
        raise UserError(f"--tasks {args.tasks!r} names a task more than once")
    if not args.task_list and (args.tasks != "none" or not args.pretrain_iters):
        raise UserError(f"--tasks {args.tasks!r} names no task; give one or more of {', '.join(tasks.TASKS)}"
                        + ("" if args.pretrain_iters else ", or none with --pretrain_iters for pretraining alone"))
    controls = [f for f in ("ppl_matched", "loss_matched", "dev_selected", "looped") if getattr(args, f)]
    if not args.task_list and controls:
        raise UserError(f"--{controls[0]} compares fine-tuned models; give --tasks, or drop it for pretraining alone")
    for t in args.task_list:
        tasks.get_task(t)
    if args.ppl_matched and not args.snapshot_interval:
        args.snapshot_interval = max(1, args.pretrain_iters // 10)
    recipe = ["--config", args.config] if args.config else []
    run_script("train.py", recipe + args.pretrain_args.split(), check=True)  # their flags refused now, not hours in
    if args.task_list:
        run_script("finetune.py", recipe + args.finetune_args.split(), check=True)
    return args


def finetune_budget(ft, step=None):
    """What a fine-tuning run's row must say to be compared: examples seen, vocabulary, batching, dtype
    and device (a study whose cells ran on CPUs and on a lent GPU says which ran where)."""
    rc = ft["run_config"]
    per_step = rc["batch_size"] * rc.get("gradient_accumulation_steps", 1) * ft.get("world_size", 1)
    return {"finetune_examples": per_step * (step if step is not None else ft["step"]),
            "finetune_batch": per_step, "vocab": ft["data"].get("vocab", "gpt2"),
            "vocab_size": ft["model_config"]["vocab_size"], "batching": rc.get("batching", "random"),
            "dtype": ft.get("dtype", ""), "device": ft.get("device", "")}


def looped_control(variant):
    """The control column of a looped model's rows (variant: K distinct blocks, the matching);
    empty for an unlooped one."""
    return f"looped_{variant[1]}_u{variant[0]}" if variant else ""


def read_rows(path, recipe_sha256):
    """The rows of an earlier results.csv made with this recipe."""
    return [r for r in read_csv(path) if r.get("recipe_sha256", "") == recipe_sha256]


class Sweep:
    def __init__(self, args):
        self.args = args
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
            argv = ["--model_class", self.args.model_class, *self.model_flags(depth, variant), "--seed", str(seed),
                    "--dataset", self.args.dataset, "--max_iters", str(self.args.pretrain_iters),
                    "--eval_interval", str(max(1, self.args.pretrain_iters // 5)), "--out_dir", str(out),
                    "--snapshot_interval", str(self.args.snapshot_interval), *self.common,
                    *self.args.pretrain_args.split()]
            run_script("train.py", argv + (["--resume"] if (out / "ckpt.pt").exists() else []))
        return json.loads((out / "summary.json").read_text())

    def finetune(self, init, out, task, seed, depth=None, variant=None):
        if not (out / "summary.json").exists():
            start = ["--init_from", str(init)] if init else \
                ["--from_scratch", "--model_class", self.args.model_class, *self.model_flags(depth, variant)]
            every = max(1, self.args.finetune_iters // self.args.finetune_evals)
            argv = ["--task", task, *start, "--seed", str(seed), "--out_dir", str(out),
                    "--max_iters", str(self.args.finetune_iters), "--eval_interval", str(every),
                    "--snapshot_interval", str(every), *self.common,  # weights at each eval: the loss-matched control
                    *self.args.finetune_args.split()]
            run_script("finetune.py", argv + (["--resume"] if (out / "ckpt.pt").exists() else []))
        return json.loads((out / "summary.json").read_text())

    def evaluate(self, run, task, ckpt=None, label=""):
        """The run's scores on the task (eval_<task>.json), or a snapshot's (eval_<task>_<label>.json)."""
        path = run / (f"eval_{task}_{label}.json" if label else f"eval_{task}.json")
        if not path.exists():
            argv = ["--ckpt", str(ckpt or run / "ckpt.pt"), "--task", task, "--out", str(path),
                    "--device", self.args.device]
            if self.args.eval_limit:
                argv += ["--limit", str(self.args.eval_limit), "--sample"]
            run_script("evaluate.py", argv)
        return json.loads(path.read_text())

    # --- one row of results.csv ------------------------------------------------------------------
    def model_columns(self, depth, seed, task, control, built, pre, init_step=None):
        """What every row says of the model (from the run that built it) and of its pretraining
        (empty without one)."""
        mc, params = built["model_config"], built["params"]
        return {"model_class": self.args.model_class, "n_layer": depth, "n_unique": mc.get("n_unique") or depth,
                "d_model": mc["d_model"], "d_ff": mc["d_ff"], "params": params["total"],
                "params_non_embedding": params["non_embedding"], "flops_per_token": params["forward_flops_per_token"],
                "seed": seed, "task": task, "control": control,
                "pretrain_step": (init_step if init_step is not None else pre["step"]) if pre else 0,
                "val_loss": pre["val_loss"] if pre else "", "perplexity": pre["val_ppl"] if pre else "",
                "bits_per_byte": pre.get("val_bpb", "") if pre else "",
                "pretrain_vocab_size": pre["model_config"]["vocab_size"] if pre else "",
                "pretrain_dataset": pre["data"].get("name", "") if pre else ""}

    def row(self, depth, seed, task, pre, ft, ev, control="", init_step=None, finetune_step=None):
        t = tasks.get_task(task)
        by_split = {r["split"]: r for r in ev["results"]}
        gen = by_split.get(t.gen_split, {})
        # without pretraining the fine-tuning run holds the model's description
        row = {**self.model_columns(depth, seed, task, control, pre or ft, pre, init_step),
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
        if pre and gen.get("predictions"):
            folder = ensure_prepared(pre["data"]["name"], pre["run_config"].get("data_dir", ""))
            row.update(novel_word_columns(gen["predictions"], corpus_words(folder)))
        return row

    def pretrain_row(self, depth, seed, pre):
        """A pretraining study's row: the model, its validation loss, what it saw, and provenance."""
        rc = pre["run_config"]
        return {**self.model_columns(depth, seed, "", "", pre, pre), "best_val_loss": pre.get("best_val_loss", ""),
                "pretrain_tokens": pre["step"] * rc["batch_size"] * rc.get("gradient_accumulation_steps", 1)
                * rc["block_size"] * pre.get("world_size", 1),
                "dtype": pre.get("dtype", ""), "pretrain_seconds": round(pre["train_seconds"], 1),
                "code_version": pre["code_version"], "pretrain_data_sha256": pre["data"].get("train_sha256"),
                "recipe": self.args.config, "recipe_sha256": self.args.config_sha256,
                "pretrain_args": self.args.pretrain_args, "finetune_args": ""}

    def run(self):
        rows = []
        pre = {}
        for seed in self.args.seed_list:
            for depth in self.args.depth_list:
                if self.carry_over(depth, seed, rows, pre):
                    continue
                self.model_rows(depth, seed, None, rows, pre)
            for depth in [d for d in self.args.depth_list if 0 < self.args.looped < d]:
                matches = MATCHES if self.args.looped_match == "both" else (self.args.looped_match,)
                for variant in ((self.args.looped, match) for match in matches):
                    if not self.carry_over(depth, seed, rows, pre, variant):
                        self.model_rows(depth, seed, variant, rows, pre)
            # the controls compare each depth with the seed's shallowest, cell by cell, so a seed
            # whose depths ran on different machines gets them all (see reference)
            for depth in self.args.depth_list:
                rows.extend(self.controls(depth, seed, pre))
                self.write_csv(rows)
        return rows

    CONTROLS = ("ppl_matched", "loss_matched", "dev_selected")

    def controls(self, depth, seed, pre):
        """A cell's control rows: carried with it when it ran elsewhere, else computed here."""
        flags = tuple(f for f in self.CONTROLS if getattr(self.args, f))
        if self.cell(depth, seed).name in self.kept:
            return [r for r in self.earlier if r["n_layer"] == depth and r["seed"] == seed
                    and r["control"].startswith(flags)]  # no flags: startswith(()) is False
        return [r for f in flags for r in getattr(self, f)(depth, seed, pre)]

    def reference(self, seed, task, column, here):
        """The seed's shallowest depth's final value that a control matches: from its run folder
        (here() reads it), or from its row when it ran on another machine (results.csv keeps the
        value whole: column is its name there)."""
        ref = min(self.args.depth_list)
        if self.cell(ref, seed).name not in self.kept:
            return here(self.cell(ref, seed))
        return next(r[column] for r in self.earlier if r["n_layer"] == ref and r["seed"] == seed
                    and r["task"] == task and not r["control"])

    def folder_of(self, row):
        """The run folder a results.csv row came from (a control's: its model's)."""
        m = re.match(r"looped_(\w+)_u(\d+)$", row["control"])
        return self.cell(row["n_layer"], row["seed"], (int(m[2]), m[1]) if m else None)

    def carry_over(self, depth, seed, rows, pre, variant=None):
        """A cell (unlooped, or a looped variant) whose run folder is not here but whose rows, one
        per task, an earlier results.csv of this recipe holds: those rows stand for it."""
        if self.cell(depth, seed, variant).exists():
            return False
        mine = [r for r in self.earlier if r["n_layer"] == depth and r["seed"] == seed
                and r["control"] == looped_control(variant)]
        if sorted(r["task"] for r in mine) != sorted(self.args.task_list or [""]):
            return False
        rows += mine
        if not variant:
            pre[depth, seed] = None  # nothing on disk: its controls are carried with it (controls)
        self.kept.append(self.cell(depth, seed, variant).name)
        return True

    def model_rows(self, depth, seed, variant, rows, pre):
        """Pretrain (if the sweep does), fine-tune and score one model on every task; pre[depth, seed]
        holds an unlooped model's pretraining summary once all its tasks are scored."""
        summary = self.pretrain(depth, seed, variant)
        cell = self.cell(depth, seed, variant)
        init = cell / "pretrain" / "ckpt.pt" if summary else None
        control = looped_control(variant)
        mine = []  # rows land together, so a collected model has all its tasks or none
        if not self.args.task_list:  # a pretraining study: the model's one row
            mine.append(self.pretrain_row(depth, seed, summary))
            self.write_csv(rows + mine)
        for task in self.args.task_list:
            ft = self.finetune(init, cell / f"ft_{task}", task, seed, depth, variant)
            ev = self.evaluate(cell / f"ft_{task}", task)
            mine.append(self.row(depth, seed, task, summary, ft, ev, control=control))
            self.write_csv(rows + mine)
        rows += mine
        if not variant:
            pre[depth, seed] = summary

    # --- early stopping on the in-distribution dev split -------------------------------------------
    def dev_selected(self, depth, seed, pre):
        """The run scored at the snapshot (or final checkpoint) with the best dev exact match, ties
        to the lower dev loss: model selection on in-distribution data only."""
        rows = []
        for task in self.args.task_list:
            run = self.cell(depth, seed) / f"ft_{task}"
            cands = snapshot_meta(list(snapshots(run).values()))
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
    def loss_matched(self, depth, seed, pre):
        """Generalization of a deeper model at its fine-tuning snapshot whose dev loss is closest
        to the shallowest depth's final dev loss: depths compared at equal in-distribution fit."""
        ref_depth = min(self.args.depth_list)
        if depth == ref_depth:
            return []
        rows = []
        for task in self.args.task_list:
            target = self.reference(seed, task, "finetune_val_loss",
                                    lambda c: json.loads((c / f"ft_{task}" / "summary.json").read_text())["val_loss"])
            run = self.cell(depth, seed) / f"ft_{task}"
            snaps = list(snapshots(run).values())
            if not snaps:
                raise UserError(f"no fine-tuning snapshots in {run}; fine-tune it again with this sweep.py")
            meta = snapshot_meta(snaps)
            best = min(meta, key=lambda s: abs(meta[s]["val_loss"] - target))
            ev = self.evaluate(run, task, best, "loss_matched")
            ft = {**json.loads((run / "summary.json").read_text()), "val_loss": meta[best]["val_loss"]}
            rows.append(self.row(depth, seed, task, pre[depth, seed], ft, ev,
                                 control=f"loss_matched_to_d{ref_depth}", finetune_step=meta[best]["step"]))
        return rows

    # --- the paper's perplexity-matched control ------------------------------------------------
    def ppl_matched(self, depth, seed, pre):
        """A deeper model fine-tuned from its pretraining snapshot whose validation loss is closest
        to the shallowest depth's final one: depths compared at equal perplexity."""
        ref_depth = min(self.args.depth_list)
        if depth == ref_depth:
            return []
        target = self.reference(seed, self.args.task_list[0], "val_loss", lambda c: pre[ref_depth, seed]["val_loss"])
        snaps = list(snapshots(self.cell(depth, seed) / "pretrain").values())
        if not snaps:
            raise UserError(f"no snapshots for depth {depth}; rerun with --snapshot_interval")
        losses = {s: load_checkpoint(s)["val_loss"] for s in snaps}
        best = min(losses, key=lambda s: abs(losses[s] - target))
        step = load_checkpoint(best)["step"]
        matched = {**pre[depth, seed], "val_loss": losses[best], "val_ppl": math.exp(losses[best])}
        rows = []
        for task in self.args.task_list:
            # a model that never gets down to the reference is matched at its last step: its own
            # fine-tuning run is then that control, and is not run twice
            run = self.cell(depth, seed) / (f"ft_{task}" if step == pre[depth, seed]["step"] else f"ppl_matched_{task}")
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
            write_csv(self.root / "results.csv", rows)


def novel_word_columns(predictions, known):
    """Generalization split by whether a sentence holds a word that the pretraining corpus never
    contains (known: the corpus's words, lower-cased): there pretraining could not have helped."""
    hits = {True: [], False: []}  # has a novel word: the sentences' hits
    for p in predictions:
        hits[any(w.lower() not in known for w in WORD.findall(p["source"]))].append(p["correct"])
    acc = lambda h: sum(h) / len(h) if h else ""  # noqa: E731
    return {"gen_n_novel_words": len(hits[True]), "gen_acc_novel_words": acc(hits[True]),
            "gen_acc_known_words": acc(hits[False])}


def snapshot_meta(paths):
    """Each snapshot's step, losses and metrics, without keeping its weights in memory."""
    return {p: {k: v for k, v in load_checkpoint(p).items() if k != "model"} for p in paths}


def main(argv=None):
    args = get_args(argv)
    sweep = Sweep(args)
    report = ["--name", str(sweep.root)] + (["--rank_analysis"] if args.rank_analysis else [])
    if args.collect:
        run_script("report.py", report)
        return read_csv(sweep.root / "results.csv")
    rows = sweep.run()
    # quoted, so that a value with spaces (--finetune_args "--dropout 0.1") pastes back as given; every
    # distinct command is kept, in order, for a study run in lanes (one sweep over some depths each)
    command = shlex.join(["python", "sweep.py", *(argv if argv is not None else sys.argv[1:])])
    path = sweep.root / "command.txt"
    commands = path.read_text().splitlines() if path.exists() else []
    if command not in commands:
        write_atomic(path, "\n".join(commands + [command]) + "\n")
    print(f"wrote {sweep.root}/results.csv")
    run_script("report.py", report)
    return rows


if __name__ == "__main__":
    main_guard(main)
