"""
The training-length curve: exact match on test and gen against epochs, from the weights
snapshots that fine-tuning kept (finetune.py --snapshot_steps), for every run of a sweep, one band
per depth (mean and 95% CI over seeds).

    python curve.py --name paper_budget_cpu_tiny
    python curve.py --name long_curve_cpu_tiny --beside paper_budget_cpu_tiny  # both in one figure

Each point scores a seeded sample of --limit examples of each split, the same sample at every
point of every run, and is kept beside the snapshot (curve/step_NNNNNNN.json, with the weights
file's sha256), so a rerun scores only new snapshots and those rewritten since (a run started afresh
or resumed from an earlier checkpoint writes the same step's file again). The points are read,
never used to choose anything: choosing a run's length or checkpoint on them would be choosing on
the generalization split. Writes results/NAME/curve.csv (one row per run and step, with the run's
config, seed, code version and data sha256), curve.md and curve.png.
"""
import argparse
import json
import random
import re
from pathlib import Path

import torch

import tasks
from checkpoint import load_checkpoint, model_from, snapshots
from common import (ROOT, Parser, UserError, code_version, integer, main_guard, mean_ci, pick_device, read_csv,
                    save_figure, sha256_file, write_atomic, write_csv)
from corpus import ensure_prepared
from model import GPTConfig

CELL = re.compile(r"^d(\d+)(?:_(u\d+\w+))?_s(\d+)$")  # d4_s0, d4_u1params_s0


def get_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--name", required=True, help="the sweep whose runs to score: results/NAME/runs/ (or a sweep's folder)")
    a("--data_dir", default="", help="folder with the task's prepared files (default: data/<task folder>)")
    a("--limit", type=integer(1), default=1000, help="examples per split at each point (a seeded sample)")
    a("--seed", type=integer(0), default=0, help="seed of the sample")
    a("--batch_size", type=integer(1), default=256, help="examples decoded together")
    a("--device", default="auto", help="auto, cpu, cuda or mps: where the snapshots are scored")
    a("--beside", default="", help="another study whose committed curve.csv the figure draws too, dashed "
      "(e.g. the same recipe on a shorter schedule); its rows stay out of this study's curve.csv and table")
    args = p.parse_args(argv)
    args.device = pick_device(args.device)
    if args.beside and not study_folder(args.beside).joinpath("curve.csv").is_file():
        raise UserError(f"--beside {args.beside}: no curve.csv in {study_folder(args.beside)}; "
                        "name a study that curve.py has scored")
    return args


def study_folder(name):
    return Path(name) if Path(name).is_dir() else ROOT / "results" / name


def points(run):
    """(step, weights file) of a run's snapshots and its final checkpoint, in step order."""
    snaps = snapshots(run)
    if (run / "summary.json").exists():  # the finished run's last step
        snaps.setdefault(json.loads((run / "summary.json").read_text())["step"], run / "ckpt.pt")
    return sorted(snaps.items())


def score_point(path, task, splits, args, cache):
    """Exact match of one snapshot on the seeded sample of each split."""
    ck = load_checkpoint(path)
    cfg = GPTConfig(**ck["model_config"])
    vocab = tasks.Vocab.of(cfg)
    key = (task.name, vocab.kind, len(vocab.tokens), tuple(vocab.tokens[:8]))
    if key not in cache:  # the sample, read and encoded once per vocabulary
        ensure_prepared(task.folder, args.data_dir)
        every = {s: tasks.read_split(task, s, args.data_dir or None, vocab) for s in splits}
        cache[key] = {s: random.Random(args.seed).sample(ex, min(args.limit, len(ex))) for s, ex in every.items()}
    sample = cache[key]
    need = max(tasks.longest(ex)[1] for ex in sample.values())
    model = model_from(ck, path, device=args.device, context=need)
    out = {"step": ck["step"], "checkpoint": str(path), "limit": args.limit, "sample_seed": args.seed,
           "device": args.device, "code_version": code_version()}
    with torch.no_grad():
        for s, ex in sample.items():
            result, _ = tasks.score(ex, tasks.decode_examples(model, ex, args.batch_size), task)
            out[s] = {k: result[k]["exact_match"] if isinstance(result[k], dict) else result[k]
                      for k in ("exact_match", "lexical", "structural") if k in result}
    return out


def collect(args):
    root = study_folder(args.name)
    if not (root / "runs").is_dir() and not (root / "curve.csv").is_file():
        raise UserError(f"no runs in {root / 'runs'}; run the sweep first (results/{args.name}/run.sh)")
    here = {c.name for c in (root / "runs").iterdir()} if (root / "runs").is_dir() else set()
    # a study that spans machines: the points of cells whose run folders stayed elsewhere are carried
    # over from the earlier curve.csv
    rows, cache = [r for r in read_csv(root / "curve.csv") if r["run"] not in here], {}
    for cell in sorted((root / "runs").iterdir()) if here else []:
        m = CELL.match(cell.name)
        if not m:
            continue
        for run in sorted(cell.glob("ft_*")):
            task = tasks.get_task(run.name[3:])
            splits = [s for s in dict.fromkeys((task.id_split, task.gen_split)) if s]
            summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else None
            n_train = None
            for step, path in points(run):
                kept, digest = run / "curve" / f"step_{step:07d}.json", sha256_file(path)
                point = json.loads(kept.read_text()) if kept.exists() else {}
                if point.get("checkpoint_sha256") != digest:  # new, or the weights changed since it was scored
                    point = {**score_point(path, task, splits, args, cache), "checkpoint_sha256": digest}
                    kept.parent.mkdir(exist_ok=True)
                    write_atomic(kept, json.dumps(point, indent=1) + "\n")
                    print(f"scored {run.relative_to(root)} step {step}", flush=True)
                ck = summary or load_checkpoint(path)
                ck_cfg = ck["run_config"]
                if n_train is None:  # runs before train_examples was recorded: count them
                    n_train = ck["data"].get("train_examples") or \
                        len(tasks.read_pairs(task, "train", args.data_dir or None))
                batch = ck_cfg["batch_size"] * ck_cfg.get("gradient_accumulation_steps", 1)
                row = {"run": cell.name, "n_layer": int(m[1]), "variant": m[2] or "", "seed": int(m[3]),
                       "task": task.name, "step": step, "finetune_examples": step * batch,
                       "epochs": round(step * batch / n_train, 3), "finished": summary is not None,
                       "id_acc": point[task.id_split]["exact_match"] if task.id_split else "",
                       "gen_acc": point[task.gen_split]["exact_match"],
                       "lexical_acc": point[task.gen_split].get("lexical", ""),
                       "structural_acc": point[task.gen_split].get("structural", ""),
                       "limit": point["limit"], "vocab": ck["model_config"].get("vocab", "gpt2"),
                       "batching": ck_cfg.get("batching", "random"), "recipe": ck_cfg.get("config", ""),
                       "recipe_sha256": ck_cfg.get("config_sha256", ""),
                       "task_data_sha256": (summary or {}).get("data", {}).get(f"{task.gen_split}_sha256", ""),
                       "code_version": point["code_version"]}
                rows.append(row)
    if not rows:
        raise UserError(f"no snapshots under {root / 'runs'}; fine-tune with --snapshot_steps")
    return root, rows


def table(rows):
    """Mean [95% CI] over seeds at each (series, task, step): the curve's text form."""
    groups = {}
    for r in rows:
        groups.setdefault((r["task"], r["n_layer"], r["variant"], r["step"]), []).append(r)
    lines = ["| task | depth | step | epochs | seeds | test | gen |", "|---|---|---|---|---|---|---|"]
    for (task, n, variant, step), rs in sorted(groups.items()):
        cells = []
        for key in ("id_acc", "gen_acc"):
            m, h = mean_ci([100 * r[key] for r in rs if r[key] != ""])
            cells.append(f"{m:.1f}" + (f" ± {h:.1f}" if h == h else ""))
        label = f"{n}" + (f" ({variant})" if variant else "")
        lines.append(f"| {task} | {label} | {step} | {rs[0]['epochs']:.1f} | {len(rs)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def figure(rows, path, beside=(), beside_name=""):
    """Test and gen against epochs, one band (mean, 95% CI over seeds) per depth; the rows of
    another study (beside) dashed. Returns the labels of the lines drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    task_names = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, 2 * len(task_names), figsize=(9 * len(task_names), 3.8), squeeze=False)
    series = sorted({(r["n_layer"], r["variant"], False) for r in rows} |
                    {(r["n_layer"], r["variant"], True) for r in beside})
    color = {k: f"C{i % 10}" for i, k in enumerate(sorted({(n, v) for n, v, _ in series}))}  # a depth's two lines alike
    drawn = []
    for t, task in enumerate(task_names):
        for a, (key, title) in enumerate((("id_acc", "test (in-distribution)"), ("gen_acc", "gen"))):
            ax = axes[0, 2 * t + a]
            for n, variant, other in series:
                pts = {}
                for r in beside if other else rows:
                    if r["task"] == task and (r["n_layer"], r["variant"]) == (n, variant) and r[key] != "":
                        pts.setdefault(r["epochs"], []).append(100 * r[key])
                if not pts:
                    continue
                xs = sorted(pts)
                ms = [mean_ci(pts[x]) for x in xs]
                mean = [m for m, _ in ms]
                half = [h if h == h else 0.0 for _, h in ms]
                seeds = max(len(v) for v in pts.values())
                label = (f"depth {n}{' ' + variant if variant else ''} ({seeds} seed{'s' if seeds > 1 else ''})"
                         + (f", {beside_name}" if other else ""))
                line, = ax.plot(xs, mean, marker="o", ms=3, label=label, color=color[n, variant],
                                ls="--" if other else "-")
                drawn.append(label)
                ax.fill_between(xs, [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)],
                                color=line.get_color(), alpha=0.07 if other else 0.15)
            ax.set_xscale("log")
            ax.set_ylim(-2, 102)  # a two-seed band runs far past what a percentage can be
            ax.set_xlabel("epochs (passes over the training split)")
            ax.set_ylabel("exact match (%)")
            ax.set_title(f"{task}: {title}")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return drawn


def main(argv=None):
    args = get_args(argv)
    root, rows = collect(args)
    write_csv(root / "curve.csv", rows)
    md = (f"Training-length curve of results/{args.name}: exact match (%) on a seeded sample of {args.limit} "
          "examples per split at each snapshot, mean ± 95% CI over the seeds that reached it. Read only; "
          "nothing was chosen on it.\n\n" + table(rows))
    write_atomic(root / "curve.md", md)
    beside = [r for r in read_csv(study_folder(args.beside) / "curve.csv")
              if r["task"] in {x["task"] for x in rows}] if args.beside else []
    figure(rows, root / "curve.png", beside, Path(args.beside).name)
    print(table(rows))
    print(f"wrote {root / 'curve.csv'}, curve.md and curve.png")


if __name__ == "__main__":
    main_guard(main)
