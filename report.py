"""
The study's report: results/<name>/results.csv (written by sweep.py) turned into the paper's
tables and figures, with 95% confidence intervals over seeds and paired depth differences.

    python report.py --name paper_budget_cpu_tiny
    python report.py --name cpu_tiny --rank_analysis     # and the FFN singular-value analysis

Reads only what is on disk, trains and scores nothing, so it tables a study that is still running
(the cells finished so far). Writes summary.md, the figures (*.png) and, with --rank_analysis,
ffn_rank.json (effective rank of every FFN matrix, from the run folders' checkpoints).
"""
import argparse
import json
import math
import re
from pathlib import Path

import torch

import tasks
from checkpoint import load_checkpoint
from common import ROOT, Parser, UserError, main_guard, mean_ci, read_csv, save_figure, write_atomic

LATER_COLUMNS = ("n_unique", "flops_per_token", "bits_per_byte", "pretrain_vocab_size", "pretrain_dataset",
                 "pretrain_args", "finetune_args", "recipe", "recipe_sha256", "eval_n", "gen_n_novel_words")
CELL = re.compile(r"^d(\d+)(?:_u(\d+)(\w+))?_s(\d+)$")  # d4_s0, d4_u1params_s0


def get_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--name", required=True, help="the study: results/NAME/ (or a study's folder)")
    a("--rank_analysis", action="store_true", help="singular values and effective rank of the FFN weights of "
      "every run folder here (the others' stay in ffn_rank.json)")
    return p.parse_args(argv)


class Study:
    """What the tables need to know of a study, read from its rows (every row records its settings)."""

    def __init__(self, root, rows):
        main = [r for r in rows if not r["control"]]
        self.name, self.root = root.name, root
        self.task_list = [t for t in dict.fromkeys(r["task"] for r in rows) if t]  # none: a pretraining study
        self.pre_task = self.task_list[0] if self.task_list else ""  # the rows that carry a model's pretraining
        self.model_class = main[0]["model_class"]
        self.seeds = ",".join(str(s) for s in sorted({r["seed"] for r in main}))
        self.pretrained = any(r["pretrain_step"] for r in main)
        self.dataset = next((r.get("pretrain_dataset") for r in main if r.get("pretrain_dataset")), "")
        self.eval_n = sorted({r["eval_n"] for r in main if r["eval_n"] != ""})
        self.config, self.config_sha256 = main[0]["recipe"], main[0]["recipe_sha256"]
        self.pretrain_args, self.finetune_args = main[0]["pretrain_args"], main[0]["finetune_args"]
        # the grid the rows span, and what of it has no row yet (unfinished, or not run)
        depths, seeds = sorted({r["n_layer"] for r in main}), sorted({r["seed"] for r in main})
        have = {(r["n_layer"], r["seed"]) for r in main}
        self.skipped = [f"d{d}_s{s}" for s in seeds for d in depths if (d, s) not in have]
        cells = {cell_name(r) for r in rows}
        self.kept = sorted(c for c in cells if not (root / "runs" / c).is_dir())  # run folders elsewhere


def cell_name(row):
    """The run folder a results.csv row came from (a control's: its model's)."""
    m = re.match(r"looped_(\w+)_u(\d+)$", row["control"])
    return f"d{row['n_layer']}_s{row['seed']}" if not m else f"d{row['n_layer']}_u{m[2]}{m[1]}_s{row['seed']}"


# --- FFN rank analysis (the paper's finding 5: very narrow FFNs come close to rank-deficient) ---

def effective_rank(s):
    """Roy & Vetterli (2007): exp of the entropy of the normalized singular values."""
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def rank_analysis(study):
    """Effective rank of every FFN matrix of the unlooped cells whose run folders are here (the
    pretrained weights; without pretraining, the first task's fine-tuned ones); the other cells'
    entries of an earlier ffn_rank.json are kept."""
    out, here = {}, set()
    for cell in sorted((study.root / "runs").glob("d*_s*")) if (study.root / "runs").is_dir() else []:
        m = CELL.match(cell.name)
        path = cell / "pretrain" / "ckpt.pt" if study.pretrained else cell / f"ft_{study.task_list[0]}" / "ckpt.pt"
        if not m or m[2] or not (path.parent / "summary.json").exists():  # looped, or still training
            continue
        depth, seed = int(m[1]), int(m[4])
        here.add((depth, seed))
        ck = load_checkpoint(path)
        cfg = ck["model_config"]
        for name, w in ck["model"].items():
            if ".ffn.wi.weight" in name or ".ffn.wo.weight" in name:
                mats = w.float().chunk(2, 0) if ("wi" in name and cfg["block"] == "paper") else [w.float()]
                for k, mat in enumerate(mats):
                    s = torch.linalg.svdvals(mat)
                    label = "wo" if "wo" in name else (f"wi_{k}" if len(mats) > 1 else "wi")
                    out.setdefault((depth, label), []).append(
                        {"seed": seed, "layer": int(name.split(".")[1]), "effective_rank": effective_rank(s),
                         "max_rank": min(mat.shape), "d_ff": cfg["d_ff"]})
    old = study.root / "ffn_rank.json"
    for x in json.loads(old.read_text()) if old.is_file() else []:  # other cells' stay, as in results.csv
        if (x["n_layer"], x["seed"]) not in here:
            out.setdefault((x["n_layer"], x["matrix"]), []).append(
                {k: v for k, v in x.items() if k not in ("n_layer", "matrix")})
    write_atomic(old, json.dumps([{"n_layer": d, "matrix": m, **x} for (d, m), xs in sorted(out.items())
                                  for x in xs], indent=1))
    return out


# --- tables and figures ------------------------------------------------------------------------------

def summarize(rows, study):
    """Markdown in the paper's layout: depth by task, mean +- 95% CI over seeds (in %)."""
    main = [r for r in rows if not r["control"]]
    depths = sorted({r["n_layer"] for r in main})
    versions = sorted({r["code_version"] for r in rows})
    lines = [f"# {study.name}: {study.model_class} class, seeds {study.seeds}", "",
             "Mean over seeds ± 95% CI half-width (t-distribution). "
             + (f"Generalization exact match in %, scored on {' or '.join(f'{n:,}' for n in study.eval_n) or 'all'} "
                "generalization examples per run. " if study.task_list else "A pretraining study (no fine-tuning). ")
             + f"Runs made by code {', '.join(versions)}"
             + (f"; recipe {study.config} (sha256 {study.config_sha256})." if study.config else ".")
             + "".join(f" {k}: `{getattr(study, k)}`." for k in ("pretrain_args", "finetune_args")
                       if getattr(study, k)), "",
             *([f"No row yet (unfinished, or not run): {', '.join(study.skipped)}.", ""] if study.skipped else []),
             *([f"Carried over from the earlier results.csv (run folders on the machine that ran them): "
                f"{', '.join(study.kept)}.", ""] if study.kept else []),
             "| " + " | ".join(["depth", "d_ff", "perplexity", "bits per byte", *(f"{t} gen" for t in study.task_list)])
             + " |",
             "|---|---|---|---|" + "---|" * len(study.task_list)]
    for d in depths:
        rs = [r for r in main if r["n_layer"] == d]
        ppl, bpb = (mean_ci([r.get(k, "") for r in rs if r["task"] == study.pre_task])
                    for k in ("perplexity", "bits_per_byte"))
        cells = [fmt(mean_ci([100 * r["gen_acc"] for r in rs if r["task"] == t])) for t in study.task_list]
        lines.append("| " + " | ".join([str(d), str(rs[0]["d_ff"]), fmt(ppl), fmt(bpb, 3), *cells]) + " |")
    lines += pretraining_tables(main, study, depths)
    if not study.task_list:
        write_atomic(study.root / "summary.md", "\n".join(lines) + "\n")
        return "\n".join(lines)
    lines += ["", "In-distribution exact match (%), and what fine-tuning took (steps; minutes per run):", "",
              "| depth | " + " | ".join(f"{t} test | steps | minutes" for t in study.task_list) + " |",
              "|---|" + "---|---|---|" * len(study.task_list)]
    for d in depths:
        rs = [r for r in main if r["n_layer"] == d]
        cells = [f"{fmt(mean_ci([100 * r['id_acc'] for r in rs if r['task'] == t and r['id_acc'] != '']))} | "
                 f"{', '.join(sorted({str(r['finetune_step']) for r in rs if r['task'] == t}))} | "
                 f"{fmt(mean_ci([r['finetune_seconds'] / 60 for r in rs if r['task'] == t]))}"
                 for t in study.task_list]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in main})
    for t in study.task_list:
        lines += ["", f"{t}: every seed, generalization / in-distribution exact match (%):", "",
                  "| depth | " + " | ".join(f"seed {k}" for k in seeds) + " |", "|---|" + "---|" * len(seeds)]
        for d in depths:
            by = {r["seed"]: r for r in main if r["n_layer"] == d and r["task"] == t}
            lines.append(f"| {d} | " + " | ".join(
                f"{100 * by[k]['gen_acc']:.1f} / {100 * by[k]['id_acc']:.1f}" if k in by and by[k]["id_acc"] != ""
                else (f"{100 * by[k]['gen_acc']:.1f}" if k in by else "–") for k in seeds) + " |")
    for t in [t for t in study.task_list if tasks.get_task(t).structural]:
        lines += ["", f"{t}: lexical and structural generalization (%):", "", "| depth | lexical | structural |",
                  "|---|---|---|"]
        for d in depths:
            rs = [r for r in main if r["n_layer"] == d and r["task"] == t]
            lines.append(f"| {d} | {fmt(mean_ci([100 * r['lexical_acc'] for r in rs]))} | "
                         f"{fmt(mean_ci([100 * r['structural_acc'] for r in rs]))} |")
    lines += novel_word_table(main, study, depths) + paired_differences(main, study, depths)
    lines += control_tables(rows, main, study)
    lines += looped_table(rows, study, depths)
    write_atomic(study.root / "summary.md", "\n".join(lines) + "\n")
    return "\n".join(lines)


def pretraining_tables(main, study, depths):
    """Finding 2: every seed's validation bits per byte, and each depth's paired difference from the
    shallowest and from the depth before it (the same seed: the same windows of the corpus)."""
    if not study.pretrained:
        return []
    pre = {(r["n_layer"], r["seed"]): r for r in main if r["task"] == study.pre_task and r["bits_per_byte"] != ""}
    seeds = sorted({k for _, k in pre})
    lines = ["", f"Pretraining on {study.dataset or 'the corpus'}: validation bits per byte (perplexity) at the "
             "last step, every seed; the paired differences in bits per byte (negative: the deeper model is "
             "better), mean ± 95% CI over seeds:", "",
             "| depth | d_ff | steps | minutes | " + " | ".join(f"seed {k}" for k in seeds)
             + " | − shallowest | − depth before |", "|---|---|---|---|" + "---|" * len(seeds) + "---|---|"]
    for i, d in enumerate(depths):
        rs = {k: pre[d, k] for k in seeds if (d, k) in pre}
        if not rs:
            continue
        diff = [[rs[k]["bits_per_byte"] - pre[b, k]["bits_per_byte"] for k in rs if (b, k) in pre]
                for b in (depths[0], depths[i - 1])] if i else [[], []]
        lines.append(f"| {d} | {next(iter(rs.values()))['d_ff']} | "
                     f"{', '.join(sorted({str(r['pretrain_step']) for r in rs.values()}))} | "
                     f"{fmt(mean_ci([r['pretrain_seconds'] / 60 for r in rs.values()]))} | "
                     + " | ".join(f"{rs[k]['bits_per_byte']:.3f} ({rs[k]['perplexity']:.1f})" if k in rs else "–"
                                  for k in seeds)
                     + " | " + " | ".join(fmt(mean_ci(x), 3) if x else "–" for x in diff) + " |")
    return lines


def novel_word_table(main, study, depths):
    """Pretrained models' generalization on the sentences holding a word their corpus never contains,
    and on the rest (sweep.novel_word_columns): where pretraining cannot have helped."""
    lines = []
    for t in study.task_list:
        rs = [r for r in main if r["task"] == t and r["gen_n_novel_words"] != ""]
        if not rs:
            continue
        n, total = rs[0]["gen_n_novel_words"], rs[0]["eval_n"]
        lines += ["", f"{t}: generalization (%) on the {n:,} of {total:,} sentences with a word the pretraining "
                  "corpus never contains, and on the rest:", "", "| depth | with such a word | the rest |",
                  "|---|---|---|"]
        for d in depths:
            by = [r for r in rs if r["n_layer"] == d]
            lines.append(f"| {d} | " + " | ".join(fmt(mean_ci([100 * r[k] for r in by if r[k] != ""]))
                                                 for k in ("gen_acc_novel_words", "gen_acc_known_words")) + " |")
    return lines


def paired_differences(main, study, depths):
    """Each depth minus the shallowest, seed by seed (the same seed's data order on both sides):
    the interval says whether a depth difference is established, which unpaired intervals blur."""
    if len(depths) < 2 or not study.task_list:
        return []
    ref = depths[0]
    lines = ["", f"Paired differences against depth {ref}, per seed (percentage points; mean ± 95% CI over "
             "the seeds both depths finished):", "",
             "| task | depth | seeds | gen difference | test difference | per seed (gen) |",
             "|---|---|---|---|---|---|"]
    for t in study.task_list:
        base = {r["seed"]: r for r in main if r["n_layer"] == ref and r["task"] == t}
        for d in depths[1:]:
            pairs = sorted(((base[r["seed"]], r) for r in main if r["n_layer"] == d and r["task"] == t
                            and r["seed"] in base), key=lambda p: p[1]["seed"])  # listed in seed order
            if not pairs:
                continue
            gen = [100 * (deep["gen_acc"] - shallow["gen_acc"]) for shallow, deep in pairs]
            test = [100 * (deep["id_acc"] - shallow["id_acc"]) for shallow, deep in pairs
                    if deep["id_acc"] != "" and shallow["id_acc"] != ""]
            lines.append(f"| {t} | {d} − {ref} | {len(pairs)} | {fmt(mean_ci(gen))} | {fmt(mean_ci(test))} | "
                         + ", ".join(f"{g:+.1f}" for g in gen) + " |")
    return lines


def control_tables(rows, main, study):
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
        seeds = ", ".join(str(k) for k in sorted({r["seed"] for r in ctrl}))
        lines += ["", f"{title} ({ctrl[0]['control']}): {what}. Seeds {seeds}.", "",
                  f"| depth | {step_key} | {fit_key} | " + " | ".join(f"{t} gen | {t} test" for t in study.task_list)
                  + " |", "|---|---|---|" + "---|---|" * len(study.task_list)]
        for d in sorted({r["n_layer"] for r in ref + ctrl}):
            rs = [r for r in ref + ctrl if r["n_layer"] == d]
            steps = sorted({r[step_key] for r in rs})
            lines.append(f"| {d} | {', '.join(map(str, steps))} | "
                         f"{fmt(mean_ci([r[fit_key] for r in rs if r['task'] == study.task_list[0]]), 3)} | "
                         + " | ".join(fmt(mean_ci([100 * r["gen_acc"] for r in rs if r["task"] == t])) + " | "
                                      + fmt(mean_ci([100 * r["id_acc"] for r in rs if r["task"] == t]))
                                      for t in study.task_list) + " |")
    return lines


def looped_table(rows, study, depths):
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
    for t in study.task_list:
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
        lines += looped_seeds(rows, t, depths, kinds)
    return lines


def looped_seeds(rows, t, depths, kinds):
    """Every looped run, seed by seed, and its paired generalization difference from the unlooped
    model of the same depth and seed (the same data order)."""
    seeds = sorted({r["seed"] for r in rows if r["control"] in kinds and r["task"] == t})
    by = {(r["control"], r["n_layer"], r["seed"]): r for r in rows if r["control"] in kinds and r["task"] == t}
    lines = ["", f"{t}: every looped seed, generalization / in-distribution exact match (%), and the paired "
             "generalization difference from the unlooped model of the same depth and seed (points):", "",
             "| depth | model | " + " | ".join(f"seed {k}" for k in seeds) + " | looped − unlooped |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    for d in depths:
        for kind, name in [(k, n) for k, n in kinds.items() if k]:  # the looped kinds, not "" (unlooped)
            runs = {k: by[kind, d, k] for k in seeds if (kind, d, k) in by}
            if not runs:
                continue
            cells = ["–" if k not in runs else f"{100 * runs[k]['gen_acc']:.1f}" + (
                f" / {100 * runs[k]['id_acc']:.1f}" if runs[k]["id_acc"] != "" else "") for k in seeds]
            diffs = [100 * (runs[k]["gen_acc"] - by["", d, k]["gen_acc"]) for k in runs if ("", d, k) in by]
            each = ", ".join(f"{x:+.1f}" for x in diffs)
            lines.append(f"| {d} | {name} | " + " | ".join(cells) + f" | {fmt(mean_ci(diffs))} ({each}) |")
    return lines + [""]


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
        hs.append(h)
    return ms, hs


def band(ax, depths, ms, hs, label, marker="o"):
    """The means joined by a line; their 95% CIs as a band where neighbouring depths both have one
    (a depth with a single seed has none: the band stops there, it does not narrow to the point)
    and as an error bar on a CI with no neighbour to join."""
    keep = [i for i, m in enumerate(ms) if not math.isnan(m)]
    xs, m, h = [depths[i] for i in keep], [ms[i] for i in keep], [hs[i] for i in keep]
    line, = ax.plot(xs, m, marker=marker, label=label)
    ax.fill_between(xs, [a - b for a, b in zip(m, h)], [a + b for a, b in zip(m, h)], alpha=0.2,
                    color=line.get_color())
    alone = [i for i in range(len(xs)) if not math.isnan(h[i])
             and all(j < 0 or j >= len(xs) or math.isnan(h[j]) for j in (i - 1, i + 1))]
    if alone:
        ax.errorbar([xs[i] for i in alone], [m[i] for i in alone], yerr=[h[i] for i in alone], fmt="none",
                    ecolor=line.get_color(), alpha=0.5, capsize=3)


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


def figures(rows, study, ranks=None):
    """perplexity_by_depth, generalization_by_depth, <task>_lexical_structural, looped_by_depth and
    ffn_rank_by_depth (.png), each with 95% CI bands over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    main = [r for r in rows if not r["control"]]
    depths = sorted({r["n_layer"] for r in main})
    narrow = [d for d in depths if next(r["d_ff"] for r in main if r["n_layer"] == d) < main[0]["d_model"]]
    plots = []  # (file, y label, title, [(label, rows, key, task, scale)])
    if study.pretrained:
        plots.append(("perplexity_by_depth.png", f"{study.dataset} validation perplexity".strip(),
                      f"{study.model_class}: pretraining perplexity by depth",
                      [("", main, "perplexity", study.pre_task, 1.0)]))
    if study.pretrained and any(r["bits_per_byte"] != "" for r in main):  # older studies recorded none
        plots.append(("bits_per_byte_by_depth.png", f"{study.dataset} validation bits per byte".strip(),
                      f"{study.model_class}: pretraining bits per byte by depth (95% CI)",
                      [("", main, "bits_per_byte", study.pre_task, 1.0)]))
    if study.task_list:
        plots.append(("generalization_by_depth.png", "generalization exact match (%)",
                      f"{study.model_class}: generalization by depth (95% CI)",
                      [(t, main, "gen_acc", t, 100) for t in study.task_list]))
    for t in [t for t in study.task_list if tasks.get_task(t).structural]:
        plots.append((f"{t}_lexical_structural.png", "exact match (%)", f"{t}: lexical vs structural generalization",
                      [("lexical (18 categories)", main, "lexical_acc", t, 100),
                       ("structural (3 categories)", main, "structural_acc", t, 100)]))
    looped = [r for r in rows if r["control"].startswith("looped_")]
    if looped:
        t, k = study.task_list[0], looped[0]["n_unique"]
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
        finish_depth_figure(ax, study.root / path, depths, narrow, ylabel)


def main(argv=None):
    args = get_args(argv)
    root = Path(args.name) if Path(args.name).is_dir() else ROOT / "results" / args.name
    # an older study's rows lack the columns added since (bits per byte, the flags given over a recipe, ...)
    rows = [{**dict.fromkeys(LATER_COLUMNS, ""), **r} for r in read_csv(root / "results.csv")]
    if not any(not r["control"] for r in rows):
        raise UserError(f"{root / 'results.csv'} holds no finished cell yet; run the study first (sweep.py, "
                        f"or {root / 'command.txt'})")
    study = Study(root, rows)
    ranks = rank_analysis(study) if args.rank_analysis else None
    print(summarize(rows, study))
    figures(rows, study, ranks)
    print(f"wrote {root}/summary.md and figures")


if __name__ == "__main__":
    main_guard(main)
