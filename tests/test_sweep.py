import csv
import json
import math
import re

import pytest

from conftest import ROOT

import report
import sweep
from common import UserError, mean_ci, read_csv, sha256_file


@pytest.fixture
def jobs_in_process(monkeypatch):
    """sweep.py's jobs (train, finetune, evaluate, report) called in this process with the argv a
    child would get: the same mains without a Python start and a torch import each. The slow
    smoke test keeps real processes."""
    import importlib

    def run(script, argv, check=False):
        main = importlib.import_module(script.removesuffix(".py")).main
        if not check:
            return main(argv)
        try:
            main(argv + ["--check"])
        except UserError as e:
            raise UserError(f"{script}: {e}") from None
    monkeypatch.setattr(sweep, "run_script", run)


def test_mean_ci():
    m, h = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.303 * 1.0 / 3 ** 0.5)
    assert mean_ci([5.0])[0] == 5.0
    assert report.effective_rank(__import__("torch").ones(4)) == pytest.approx(4.0)


@pytest.mark.slow
@pytest.mark.data
def test_smoke_sweep_resumes_and_reports(tmp_path, monkeypatch):
    """Two depths x one task with every control, a few steps each, every job its own process as a
    user runs it; a second call skips everything."""
    monkeypatch.setattr(sweep, "ROOT", tmp_path)
    argv = ["--name", "smoke", "--model_class", "tiny", "--depths", "1,2", "--seeds", "0",
            "--tasks", "geoquery", "--pretrain_iters", "4", "--finetune_iters", "4", "--eval_limit", "8",
            "--pretrain_args", "--batch_size 2 --block_size 32 --eval_iters 1 --warmup_iters 1",
            "--finetune_args", "--batch_size 4 --eval_examples 2 --warmup_iters 1",
            "--ppl_matched", "--loss_matched", "--dev_selected", "--rank_analysis", "--quiet"]
    rows = sweep.main(argv)
    root = tmp_path / "results" / "smoke"
    table = list(csv.DictReader(open(root / "results.csv")))
    main = [r for r in table if not r["control"]]
    assert len(main) == 2 and {r["n_layer"] for r in main} == {"1", "2"}
    assert all(r["code_version"] and r["task_data_sha256"] and r["pretrain_data_sha256"] for r in table)
    assert all(0 < float(r["bits_per_byte"]) < float(r["val_loss"]) for r in main)  # over a byte a token
    ppl = [r for r in table if r["control"].startswith("ppl_matched")]
    deep = next(r for r in main if r["n_layer"] == "2")
    assert len(ppl) == 1 and 1 <= int(ppl[0]["pretrain_step"]) <= 4
    if ppl[0]["pretrain_step"] == deep["pretrain_step"]:  # matched at its last step: its own run stands
        assert ppl[0]["gen_acc"] == deep["gen_acc"] and not (root / "runs" / "d2_s0" / "ppl_matched_geoquery").exists()
    else:
        assert (root / "runs" / "d2_s0" / "ppl_matched_geoquery" / "summary.json").exists()
    for r in main:  # gen split by the words TinyStories never shows: the two parts make the whole
        n, novel, known = int(r["gen_n_novel_words"]), float(r["gen_acc_novel_words"] or 0), float(r["gen_acc_known_words"] or 0)
        assert 0 < n <= 8 and novel * n + known * (8 - n) == pytest.approx(8 * float(r["gen_acc"]))
    lm = [r for r in table if r["control"].startswith("loss_matched")]
    assert len(lm) == 1 and all(r["n_layer"] == "2" and int(r["finetune_step"]) in (1, 2, 3, 4) for r in lm)
    assert "Loss-matched control" in (root / "summary.md").read_text()
    assert "with a word the pretraining corpus never contains" in (root / "summary.md").read_text()
    ds = [r for r in table if r["control"] == "dev_selected"]
    assert len(ds) == 2 and {r["n_layer"] for r in ds} == {"1", "2"}
    for png in ("perplexity_by_depth.png", "generalization_by_depth.png", "ffn_rank_by_depth.png"):
        assert (root / png).stat().st_size > 1000
    summary = (root / "summary.md").read_text()
    assert "| 1 | 1195 |" in summary and "geoquery gen" in summary
    # resumed: nothing is re-run, the same rows come back
    stamp = (root / "runs" / "d1_s0" / "pretrain" / "ckpt.pt").stat().st_mtime
    rows2 = sweep.main(argv)
    assert (root / "runs" / "d1_s0" / "pretrain" / "ckpt.pt").stat().st_mtime == stamp
    assert [r["gen_acc"] for r in rows2] == [r["gen_acc"] for r in rows]


@pytest.mark.data
def test_sweep_without_pretraining_from_a_recipe(tmp_path, monkeypatch, jobs_in_process):
    """--pretrain_iters 0 fine-tunes fresh models; the recipe file's sections reach every step."""
    monkeypatch.setattr(sweep, "ROOT", tmp_path)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({
        "sweep": {"model_class": "tiny", "depths": "1,2", "seeds": "0", "tasks": "geoquery",
                  "pretrain_iters": 0, "finetune_iters": 3, "eval_limit": 4, "quiet": True},
        "finetune": {"batch_size": 2, "eval_examples": 2, "optimizer": "adafactor", "learning_rate": 1e-3,
                     "lr_schedule": "constant", "warmup_iters": 0, "dropout": 0.1}}))
    sweep.main(["--config", str(recipe), "--name", "scratch"])
    root = tmp_path / "results" / "scratch"
    table = list(csv.DictReader(open(root / "results.csv")))
    assert [r["n_layer"] for r in table] == ["1", "2"] and all(r["pretrain_step"] == "0" for r in table)
    assert all(r["recipe"] == str(recipe) and len(r["recipe_sha256"]) == 64 for r in table)
    ft = json.loads((root / "runs" / "d2_s0" / "ft_geoquery" / "summary.json").read_text())
    assert ft["run_config"]["optimizer"] == "adafactor" and ft["model_config"]["dropout"] == 0.1
    assert ft["step"] == 3 and ft["run_config"]["config_sha256"] == table[0]["recipe_sha256"]


@pytest.mark.data
def test_a_pretraining_study_has_one_row_per_model_and_the_bits_per_byte_tables(tmp_path, monkeypatch, jobs_in_process):
    """--tasks none: finding 2 alone. Every depth and seed pretrains, rows carry validation loss and
    bits per byte, the report gives every seed and the paired differences; and rows outlive
    their run folders (a study that spans machines): a rerun trains nothing."""
    import shutil
    monkeypatch.setattr(sweep, "ROOT", tmp_path)
    argv = ["--name", "pre", "--depths", "1,2", "--seeds", "0,1", "--tasks", "none", "--pretrain_iters", "2",
            "--pretrain_args", "--batch_size 2 --block_size 32 --eval_iters 1", "--quiet"]
    sweep.main(argv)
    root = tmp_path / "results" / "pre"
    table = list(csv.DictReader(open(root / "results.csv")))
    assert sorted((r["n_layer"], r["seed"]) for r in table) == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    assert all(r["task"] == "" and r["pretrain_tokens"] == str(2 * 2 * 32) and r["pretrain_data_sha256"]
               and 0 < float(r["bits_per_byte"]) < float(r["val_loss"]) for r in table)
    summary = (root / "summary.md").read_text()
    by = {(r["n_layer"], r["seed"]): float(r["bits_per_byte"]) for r in table}
    diff = report.mean_ci([by["2", k] - by["1", k] for k in ("0", "1")])
    assert "| 2 | 512 | 2 |" in summary and report.fmt(diff, 3) in summary and "In-distribution" not in summary
    assert (root / "bits_per_byte_by_depth.png").stat().st_size > 1000
    shutil.rmtree(root / "runs")
    sweep.main(argv)
    assert list(csv.DictReader(open(root / "results.csv"))) == table and not (root / "runs").exists()
    for bad in (["--loss_matched"], ["--pretrain_iters", "0"]):
        with pytest.raises(UserError, match="--tasks|--loss_matched"):
            sweep.get_args(argv + bad)


def test_cells_finished_on_another_machine_are_carried_over_from_results_csv(tmp_path, monkeypatch, jobs_in_process,
                                                                              capsys):
    """A study spans sessions on fresh machines: finished cells whose run folders stayed behind
    keep their rows (and their controls), the sweep trains only what is missing, and a new cell's
    control is matched to a shallowest depth that ran elsewhere."""
    import shutil
    monkeypatch.setattr(sweep, "ROOT", tmp_path)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({
        "sweep": {"model_class": "tiny", "depths": "1,2", "seeds": "0", "tasks": "geoquery", "pretrain_iters": 0,
                  "finetune_iters": 4, "finetune_evals": 2, "eval_limit": 4, "loss_matched": True,
                  "rank_analysis": True, "quiet": True},
        "finetune": {"batch_size": 2, "eval_examples": 2, "warmup_iters": 0}}))
    sweep.main(["--config", str(recipe), "--name", "multi"])
    root = tmp_path / "results" / "multi"
    before = list(csv.DictReader(open(root / "results.csv")))
    assert any(r["control"].startswith("loss_matched") for r in before)
    assert {r["device"] for r in before} == {"cpu"}  # where each row ran: studies span CPUs and lent GPUs
    ranks = json.loads((root / "ffn_rank.json").read_text())
    import curve
    curve.main(["--name", str(root), "--limit", "4", "--device", "cpu"])
    points = list(csv.DictReader(open(root / "curve.csv")))
    scored = sorted((root / "runs" / "d2_s0" / "ft_geoquery" / "curve").glob("step_*.json"))
    assert scored and all(json.loads(k.read_text())["device"] == "cpu" for k in scored)
    # a snapshot written again (a run started afresh, or resumed from an earlier checkpoint) is scored
    # again; the others are read from where they were kept
    snap = sorted((root / "runs" / "d2_s0" / "ft_geoquery" / "snapshots").glob("step_*.pt"))[0]
    shutil.copyfile(root / "runs" / "d2_s0" / "ft_geoquery" / "ckpt.pt", snap)
    capsys.readouterr()
    curve.main(["--name", str(root), "--limit", "4", "--device", "cpu"])
    assert re.findall(r"scored (\S+) step (\d+)", capsys.readouterr().out) == \
        [("runs/d2_s0/ft_geoquery", str(int(snap.stem.split("_")[1])))]
    assert json.loads((snap.parent.parent / "curve" / f"{snap.stem}.json").read_text())["checkpoint_sha256"] == \
        sha256_file(snap)
    points = list(csv.DictReader(open(root / "curve.csv")))
    # another study's curve drawn beside this one's, dashed, in the same figure (here: itself)
    rows = read_csv(root / "curve.csv")
    drawn = curve.figure(rows, tmp_path / "both.png", beside=rows, beside_name="other")
    assert {"depth 1 (1 seed)", "depth 1 (1 seed), other"} <= set(drawn) and (tmp_path / "both.png").exists()
    with pytest.raises(UserError, match="--beside"):
        curve.get_args(["--name", str(root), "--beside", str(tmp_path / "results")])
    shutil.rmtree(root / "runs")  # the machine that ran them is gone
    # a lane of the study over depth 4 alone keeps the other cells' rows in results.csv
    sweep.main(["--config", str(recipe), "--name", "multi", "--depths", "4", "--rank_analysis", "--quiet"])
    assert [r for r in csv.DictReader(open(root / "results.csv")) if r["n_layer"] != "4"] == before
    sweep.main(["--config", str(recipe), "--name", "multi", "--depths", "1,2,4"])
    after = list(csv.DictReader(open(root / "results.csv")))
    curve.main(["--name", str(root), "--limit", "4"])
    again = list(csv.DictReader(open(root / "curve.csv")))
    assert [r for r in again if r["run"] != "d4_s0"] == points and any(r["run"] == "d4_s0" for r in again)
    assert not (root / "runs" / "d1_s0").exists() and (root / "runs" / "d4_s0").exists()
    assert [r for r in after if r["n_layer"] in ("1", "2")] == before
    # depth 4's control is computed here against depth 1's final dev loss, read from its row
    lm = [r for r in after if r["control"].startswith("loss_matched")]
    assert sorted(r["n_layer"] for r in lm) == ["2", "4"]
    target = float(next(r for r in before if r["n_layer"] == "1" and not r["control"])["finetune_val_loss"])
    snaps = sweep.snapshot_meta(sorted((root / "runs" / "d4_s0" / "ft_geoquery" / "snapshots").glob("step_*.pt")))
    closest = min(snaps.values(), key=lambda m: abs(m["val_loss"] - target))
    assert len(snaps) == 2 and next(r for r in lm if r["n_layer"] == "4")["finetune_step"] == str(closest["step"])
    kept = [x for x in json.loads((root / "ffn_rank.json").read_text()) if x["n_layer"] in (1, 2)]
    assert kept == ranks and {x["n_layer"] for x in json.loads((root / "ffn_rank.json").read_text())} == {1, 2, 4}
    summary = (root / "summary.md").read_text()
    assert "Carried over from the earlier results.csv" in summary and "d1_s0, d2_s0" in summary
    # another recipe's rows are not carried: its cells would be trained afresh
    assert sweep.read_rows(root / "results.csv", "0" * 64) == []


def test_bench_by_depth_runs(tmp_path):
    import bench
    out = tmp_path / "b.json"
    r = bench.main(["--depths", "1,2", "--steps", "1", "--batch_size", "1", "--block_size", "16",
                    "--decode_batch", "2", "--decode_tokens", "2", "--dtypes", "float32", "--vocab_size", "1025",
                    "--out", str(out)])
    saved = json.loads(out.read_text())
    assert [row["n_layer"] for row in saved["rows"]] == [1, 2]
    from model import config_for, count_params
    assert [row["forward_flops_per_token"] for row in saved["rows"]] == [
        count_params(config_for("tiny", n, vocab_size=1025, block_size=16), 16)["forward_flops_per_token"] for n in (1, 2)]
    assert all(row["train_tokens_per_s_float32"] > 0 and row["decode_ms_per_token_batch1"] > 0
               for row in saved["rows"])
    assert saved["code_version"] and saved["matmul_peak_flops"]["float32"] > 0 and r["rows"]


@pytest.mark.data
def test_looped_sweep_adds_both_matchings(tmp_path, monkeypatch, jobs_in_process):
    monkeypatch.setattr(sweep, "ROOT", tmp_path)
    looped = ["--name", "loop", "--model_class", "tiny", "--depths", "1,2", "--seeds", "0", "--tasks", "geoquery",
              "--pretrain_iters", "0", "--finetune_iters", "2", "--eval_limit", "4", "--looped", "1", "--quiet",
              "--finetune_args", "--batch_size 2 --eval_examples 2"]
    sweep.main(looped)
    root = tmp_path / "results" / "loop"
    table = {(r["n_layer"], r["control"]): r for r in csv.DictReader(open(root / "results.csv"))}
    assert set(table) == {("1", ""), ("2", ""), ("2", "looped_params_u1"), ("2", "looped_compute_u1")}
    plain, p, c = table["2", ""], table["2", "looped_params_u1"], table["2", "looped_compute_u1"]
    assert plain["n_unique"] == "2" and p["n_unique"] == c["n_unique"] == "1"
    assert p["d_ff"] == table["1", ""]["d_ff"] == "1195" and c["d_ff"] == plain["d_ff"] == "512"
    assert c["flops_per_token"] == plain["flops_per_token"] and int(c["params"]) < int(plain["params"])
    assert int(p["flops_per_token"]) > int(plain["flops_per_token"])
    assert "Looped models" in (root / "summary.md").read_text()
    assert plain["finetune_args"] == "--batch_size 2 --eval_examples 2" and plain["pretrain_args"] == ""
    assert "finetune_args: `--batch_size 2 --eval_examples 2`" in (root / "summary.md").read_text()
    assert "--finetune_args '--batch_size 2 --eval_examples 2'" in (root / "command.txt").read_text()
    assert (root / "looped_by_depth.png").stat().st_size > 1000

    # report.py tables what results.csv holds and trains nothing: a lane that has finished seed 1 at
    # depth 1 only leaves depth 2 of seed 1 named as having no row yet
    sweep.main(["--name", "loop", "--model_class", "tiny", "--depths", "1", "--seeds", "1", "--tasks", "geoquery",
                "--pretrain_iters", "0", "--finetune_iters", "2", "--eval_limit", "4", "--quiet",
                "--finetune_args", "--batch_size 2 --eval_examples 2"])
    rows = list(csv.DictReader(open(root / "results.csv")))
    assert len(rows) == 5 and sorted(p.name for p in (root / "runs").iterdir()) == [
        "d1_s0", "d1_s1", "d2_s0", "d2_u1compute_s0", "d2_u1params_s0"]
    (root / "summary.md").unlink()
    report.main(["--name", str(root)])
    summary = (root / "summary.md").read_text()
    assert "No row yet (unfinished, or not run): d2_s1." in summary and "seeds 0,1" in summary
    assert sorted(p.name for p in (root / "runs").iterdir())[1] == "d1_s1"  # nothing trained
    with pytest.raises(UserError, match="holds no finished cell yet"):
        report.main(["--name", str(tmp_path / "results" / "empty")])
    assert not (tmp_path / "results" / "empty").exists()

    # a looped cell finished on another machine (its folder gone, its row committed) is carried
    # over like an unlooped one, not trained again
    import shutil
    shutil.rmtree(root / "runs" / "d2_u1compute_s0")
    sweep.main(looped)
    assert not (root / "runs" / "d2_u1compute_s0").exists()
    in_order = lambda t: sorted(t, key=lambda r: (r["seed"], r["n_layer"], r["control"]))  # noqa: E731
    assert in_order(csv.DictReader(open(root / "results.csv"))) == in_order(rows)
    assert "d2_u1compute_s0" in (root / "summary.md").read_text()

    # --looped_match trains one matching only, and keeps the other's rows
    seed_1 = looped[:looped.index("--seeds") + 1] + ["1"] + looped[looped.index("--seeds") + 2:]
    sweep.main(seed_1 + ["--looped_match", "compute"])
    assert {p.name for p in (root / "runs").iterdir()} >= {"d2_s1", "d2_u1compute_s1"}
    assert not (root / "runs" / "d2_u1params_s1").exists()
    controls = [(r["seed"], r["control"]) for r in csv.DictReader(open(root / "results.csv"))]
    assert ("1", "looped_compute_u1") in controls and ("0", "looped_params_u1") in controls
    assert ("1", "looped_params_u1") not in controls


def test_paired_differences_pair_by_seed():
    import types

    rows = [{"n_layer": d, "seed": s, "task": "cogs_vf", "gen_acc": g, "id_acc": 0.9}
            for d, s, g in ((1, 0, 0.10), (2, 0, 0.30), (1, 1, 0.50), (2, 1, 0.70), (2, 2, 0.99))]
    lines = report.paired_differences(rows, types.SimpleNamespace(task_list=["cogs_vf"]), [1, 2])
    row = next(line for line in lines if line.startswith("| cogs_vf | 2"))
    # seeds 0 and 1 differ by +20 each (unpaired means 40 vs 66 would say nothing); seed 2 has no depth 1
    assert "| 2 | 20.0 ± 0.0 | 0.0 ± 0.0 | +20.0, +20.0 |" in row


def test_looped_seeds_pair_each_loop_with_the_unlooped_model_of_its_seed():
    rows = [{"n_layer": 2, "seed": s, "task": "cogs_vf", "control": c, "gen_acc": g, "id_acc": 0.99}
            for s, c, g in ((0, "", 0.30), (1, "", 0.50), (0, "looped_compute_u1", 0.25),
                            (1, "looped_compute_u1", 0.45), (2, "looped_compute_u1", 0.90))]
    kinds = {"": "unlooped", "looped_params_u1": "looped, matched parameters",
             "looped_compute_u1": "looped, matched compute"}
    lines = report.looped_seeds(rows, "cogs_vf", [1, 2], kinds)
    row = next(line for line in lines if line.startswith("| 2 | looped, matched compute"))
    # seed 2 has no unlooped model, so it is shown but not paired; no matched-parameter row exists
    assert row == "| 2 | looped, matched compute | 25.0 / 99.0 | 45.0 / 99.0 | 90.0 / 99.0 | -5.0 ± 0.0 (-5.0, -5.0) |"
    assert not any("matched parameters" in line for line in lines)


def test_band_draws_no_interval_where_a_depth_has_one_seed():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def drawn(gens):  # {depth: the seeds' generalization}
        rows = [{"n_layer": d, "gen_acc": g} for d, gs in gens.items() for g in gs]
        fig, ax = plt.subplots()
        report.band(ax, [1, 2, 4], *report.mean_series(rows, [1, 2, 4], "gen_acc"), "g")
        xs = [x for c in ax.collections for p in c.get_paths() for x, _ in p.vertices]
        bars = [list(seg[:, 1]) for c in ax.containers for seg in c.lines[2][0].get_segments()]
        plt.close(fig)
        return max(xs, default=None), bars

    # depth 4 ran one seed: the band stops at depth 2 rather than narrowing onto its point
    assert drawn({1: [8, 12], 2: [18, 22], 4: [30]}) == (2, [])
    # a CI with no neighbour to join is drawn as an error bar
    _, bars = drawn({1: [10], 2: [18, 22], 4: [30]})
    assert len(bars) == 1 and bars[0][0] < 20 < bars[0][1]


def test_lanes_over_different_depths_keep_each_others_rows(tmp_path, monkeypatch, jobs_in_process):
    """run.sh's lanes: sweeps over depth 1 and over depth 2 of one study, their run folders both
    here; the second must not drop the first's rows from results.csv."""
    monkeypatch.setattr(sweep, "ROOT", tmp_path)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({
        "sweep": {"model_class": "tiny", "depths": "1,2", "seeds": "0", "tasks": "geoquery", "pretrain_iters": 0,
                  "finetune_iters": 2, "finetune_evals": 1, "eval_limit": 4, "quiet": True},
        "finetune": {"batch_size": 2, "eval_examples": 2, "warmup_iters": 0}}))
    for depth in ("1", "2"):
        sweep.main(["--config", str(recipe), "--name", "lanes", "--depths", depth])
    rows = list(csv.DictReader(open(tmp_path / "results" / "lanes" / "results.csv")))
    assert sorted(r["n_layer"] for r in rows) == ["1", "2"]
    sweep.main(["--config", str(recipe), "--name", "lanes", "--depths", "1"])  # finished: trains nothing
    commands = (tmp_path / "results" / "lanes" / "command.txt").read_text().splitlines()
    assert [c.split()[-1] for c in commands] == ["1", "2"]  # both lanes' commands, each once


def test_generalization_is_split_by_the_words_pretraining_never_showed(tmp_path):
    """Issue 22: a pretrained model's gen accuracy on sentences with a word its corpus lacks, and
    on the rest; the corpus's words are read back from its tokens, across chunk edges."""
    from corpus import corpus_words, load_prepare
    (tmp_path / "train.txt").write_text("The cat slept.\nA dog saw a cake<|endoftext|>The end\n" * 3)
    (tmp_path / "val.txt").write_text("The cat slept.\n" * 4)
    out = tmp_path / "c"
    load_prepare("text").prepare("c", [tmp_path / "train.txt"], [tmp_path / "val.txt"], out)
    known = corpus_words(out)
    assert known == {"the", "cat", "slept", "a", "dog", "saw", "cake", "end"}  # no "endoftext": a boundary
    preds = [{"source": "Zoe saw a cake .", "correct": True}, {"source": "The cat slept .", "correct": False},
             {"source": "A dog saw Zoe .", "correct": False}, {"source": "The dog saw the cat .", "correct": True}]
    assert sweep.novel_word_columns(preds, known) == {
        "gen_n_novel_words": 2, "gen_acc_novel_words": 0.5, "gen_acc_known_words": 0.5}
