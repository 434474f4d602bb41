import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

import train
from checkpoint import load_checkpoint, save_checkpoint
from common import UserError

# small and fast: the tiny class's embedding dominates, so keep batches and steps few
FAST = ["--model_class", "tiny", "--n_layer", "1", "--batch_size", "2", "--block_size", "32",
        "--eval_iters", "1", "--warmup_iters", "2", "--quiet"]


def cmd(*args):
    return [sys.executable, str(ROOT / "train.py"), *FAST, *args]


def weights(path):
    return load_checkpoint(path)["model"]


def test_prepared_memmap_roundtrips(corpus):
    import tiktoken
    ids = np.memmap(corpus / "val.bin", dtype=np.uint16, mode="r")
    text = tiktoken.get_encoding("gpt2").decode(ids[:50].tolist())
    assert text.startswith("Spot. Spot saw the shiny car")
    assert (np.asarray(ids) == 50256).sum() == json.loads((corpus / "meta.json").read_text())["val_documents"]


@pytest.mark.slow
def test_resume_after_hard_kill_is_bitwise_exact(corpus, tmp_path):
    n = 40
    common = ["--data_dir", str(corpus), "--max_iters", str(n), "--eval_interval", str(n // 2)]
    straight = tmp_path / "straight"
    subprocess.run(cmd(*common, "--out_dir", str(straight)), check=True, capture_output=True)

    killed = tmp_path / "killed"
    # the process kills itself (SIGKILL) right after step 27: part-way through the second half
    env = {**os.environ, "NANODEPTH_KILL_AT_STEP": "27"}
    p = subprocess.run(cmd(*common, "--out_dir", str(killed)), capture_output=True, text=True, env=env)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert load_checkpoint(killed / "ckpt.pt")["step"] == n // 2
    # resumed with an abbreviated flag (--max_it), which argparse accepts: it must still count
    r = subprocess.run(cmd("--data_dir", str(corpus), "--out_dir", str(killed), "--resume", f"--max_it={n}"),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = weights(straight / "ckpt.pt"), weights(killed / "ckpt.pt")
    assert load_checkpoint(killed / "ckpt.pt")["step"] == n
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = [json.loads(x) for x in (killed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [n // 2, n]


def test_resume_reapplies_only_the_flags_given_abbreviations_included(corpus, tmp_path):
    out = tmp_path / "r"
    first = train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(out), "--max_iters", "2",
                        "--eval_interval", "2"])
    # the clock the real save path wrote goes on: a resumed run's seconds are the whole run's
    saved_s = load_checkpoint(out / "ckpt.pt")["elapsed_s"]  # the clock at the last eval, before the save
    assert 0 < saved_s <= first["train_seconds"]
    # FAST sets --batch_size 2; a resume that does not name it keeps it, the abbreviated --max_i counts
    s = train.main(["--data_dir", str(corpus), "--out_dir", str(out), "--resume", "--max_i", "3", "--quiet",
                    "--eval_interval", "3"])
    assert s["step"] == 3 and s["run_config"]["batch_size"] == 2 and s["run_config"]["max_iters"] == 3
    assert s["run_config"]["n_layer"] == 1  # the run's own, not the default 2
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["elapsed_s"] < log[-1]["elapsed_s"] <= s["train_seconds"]
    # it goes on from the checkpoint's clock (not from the first run's end, which also counted its save)
    assert s["train_seconds"] > saved_s and log[0]["elapsed_s"] == saved_s


def test_resume_drops_evals_logged_after_the_checkpoint(corpus, tmp_path):
    out = tmp_path / "r"
    train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(out), "--max_iters", "2", "--eval_interval", "2"])
    # what a process killed after an eval at step 3 (no checkpoint) leaves, and a write it cut off
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "val_loss": 1.0}) + "\n" + '{"step": 3, "val_l')
    (out / "snapshots").mkdir()  # and the snapshots it kept, one before its checkpoint and one after
    for step in (1, 3):
        (out / "snapshots" / f"step_{step:07d}.pt").write_bytes((out / "ckpt.pt").read_bytes())
    train.main(["--data_dir", str(corpus), "--out_dir", str(out), "--resume", "--max_iters", "4", "--quiet"])
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]  # step 3 once in a plot's x axis would be the killed run's
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step_0000001.pt"]  # step 3's was the killed run's


def test_resuming_a_finished_run_changes_nothing(corpus, tmp_path, capsys):
    out = tmp_path / "done"
    train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(out), "--max_iters", "2", "--eval_interval", "2"])
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    s = train.main(["--data_dir", str(corpus), "--out_dir", str(out), "--resume", "--quiet"])
    assert "nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert s["step"] == 2 and s["val_loss"] is not None


def test_refuses_to_clobber_and_rejects_foreign_checkpoints(corpus, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"not a checkpoint")
    r = subprocess.run(cmd("--data_dir", str(corpus), "--out_dir", str(out), "--max_iters", "2"),
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr
    assert (out / "ckpt.pt").read_bytes() == b"not a checkpoint"
    r = subprocess.run(cmd("--data_dir", str(corpus), "--out_dir", str(out), "--resume"),
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not a readable checkpoint" in r.stderr and "Traceback" not in r.stderr
    torch.save({"weights": torch.zeros(2)}, out / "ckpt.pt")  # a torch file, but not ours
    r = subprocess.run(cmd("--data_dir", str(corpus), "--out_dir", str(out), "--resume"),
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not a nanodepth checkpoint" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["--dataset", "nosuchcorpus"], "no prepared corpus"),
    (["--n_layer", "9"], "deepest possible is 7"),
    (["--model_class", "huge"], "invalid choice: 'huge'"),
    (["--batch_size", "0"], "argument --batch_size: must be >= 1, got 0"),
])
def test_bad_input(args, needle, tmp_path):
    r = subprocess.run(cmd("--out_dir", str(tmp_path / "o"), *args), capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_recipe_file_sets_defaults_and_flags_override(corpus, tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"pretrain": {"optimizer": "adamw", "learning_rate": 0.003,
                                               "lr_schedule": "cosine", "z_loss": 0.0, "max_iters": 3,
                                               "eval_interval": 3, "warmup_iters": 0}}))
    s = train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(tmp_path / "o"), "--config", str(recipe),
                    "--max_iters", "2", "--eval_interval", "2"])
    rc = s["run_config"]
    assert rc["optimizer"] == "adamw" and rc["z_loss"] == 0.0 and rc["lr_schedule"] == "cosine"
    assert rc["learning_rate"] == 0.003 and train.get_args([]).optimizer == "adafactor"
    assert s["step"] == 2  # the command line wins over the file
    assert rc["config"] == str(recipe) and len(rc["config_sha256"]) == 64
    for bad, needle in (({"pretrain": {"no_such_flag": 1}}, "pretrain.no_such_flag is not a flag"),
                        ({"pretrain": {"optimizer": "sgd"}}, "choose one of adamw, adafactor")):
        recipe.write_text(json.dumps(bad))
        r = subprocess.run(cmd("--out_dir", str(tmp_path / "o2"), "--config", str(recipe)),
                           capture_output=True, text=True)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_recipes_in_the_repository_parse():
    import finetune
    import sweep
    for path in sorted((ROOT / "recipes").glob("*.json")):
        train.get_args(["--config", str(path)])
        finetune.get_args(["--config", str(path)])
        sweep.get_args(["--config", str(path)])


def test_missing_data_offline_says_how_to_fix(tmp_path, monkeypatch):
    env = {**os.environ, "NANODEPTH_MIRROR": str(tmp_path / "empty_mirror")}
    r = subprocess.run([sys.executable, str(ROOT / "data" / "tinystories" / "prepare.py"),
                        "--out_dir", str(tmp_path / "ts")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "NANODEPTH_MIRROR" in r.stderr and "Traceback" not in r.stderr


def test_nan_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    import model
    out = tmp_path / "nan"
    real_forward = model.GPT.forward
    calls = {"n": 0}

    def poisoned(self, idx, targets=None, **kw):
        y = real_forward(self, idx, targets=targets, **kw)
        if targets is not None and self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                return y * float("nan")
        return y

    monkeypatch.setattr(model.GPT, "forward", poisoned)
    with pytest.raises(UserError, match=r"non-finite at step 3 .*not applied; the last good checkpoint .* \(step 2\) is kept"):
        train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(out), "--max_iters", "5",
                    "--eval_interval", "2"])
    assert load_checkpoint(out / "ckpt.pt")["step"] == 2


def test_snapshots_and_summary(corpus, tmp_path):
    out = tmp_path / "snap"
    s = train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(out), "--max_iters", "4",
                    "--eval_interval", "4", "--snapshot_interval", "2"])
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["step_0000002.pt", "step_0000004.pt"]
    snap = load_checkpoint(out / "snapshots" / snaps[0])
    assert snap["step"] == 2 and np.isfinite(snap["val_loss"])
    saved = json.loads((out / "summary.json").read_text())
    assert saved["seed"] == 0 and saved["code_version"] and saved["data"]["train_sha256"]
    assert saved["val_ppl"] == pytest.approx(np.exp(s["val_loss"]))
    # a run started afresh over it leaves none of the replaced run's files to be read as its own
    (out / "curve").mkdir()
    (out / "curve" / "step_0000004.json").write_text("{}")
    train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(out), "--max_iters", "3",
                "--eval_interval", "3", "--snapshot_interval", "3", "--overwrite"])
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step_0000003.pt"]
    assert not list((out / "curve").iterdir()) and json.loads((out / "summary.json").read_text())["step"] == 3


@pytest.mark.slow
def test_two_processes_ddp(corpus, tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "ddp"
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(ROOT / "train.py"), *FAST,
                        "--data_dir", str(corpus), "--out_dir", str(out), "--max_iters", "4",
                        "--eval_interval", "2", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300)
    # the workers' own messages, without torchrun's launcher log lines
    assert r.returncode == 0, "\n".join(l for l in r.stderr.splitlines() if not re.match(r"[WEI]\d{4} ", l))[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 4
    ck = load_checkpoint(out / "ckpt.pt")
    assert ck["step"] == 4 and len(ck["rng"]) == 2
    # each rank drew its own batches: their data generators have moved apart
    assert not torch.equal(ck["rng"][0]["data"], ck["rng"][1]["data"])


def test_c4_shard_parsing(tmp_path, monkeypatch):
    """C4 shards are gzipped JSON lines; write two small ones into a mirror and prepare them."""
    mirror = tmp_path / "mirror" / "c4"
    mirror.mkdir(parents=True)
    docs = [{"text": f"Document number {i}. The cat sat.", "url": "x", "timestamp": "t"} for i in range(5)]
    for name in ("c4-train.00000-of-01024.json.gz", "c4-validation.00000-of-00008.json.gz"):
        with gzip.open(mirror / name, "wt", encoding="utf-8") as f:
            f.write("\n".join(json.dumps(d) for d in docs) + "\n")
    env = {**os.environ, "NANODEPTH_MIRROR": str(tmp_path / "mirror")}
    r = subprocess.run([sys.executable, str(ROOT / "data" / "c4" / "prepare.py"), "--out_dir",
                        str(tmp_path / "c4")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "c4" / "meta.json").read_text())
    assert meta["train_documents"] == 5 and meta["val_documents"] == 5
    with gzip.open(mirror / "c4-validation.00000-of-00008.json.gz", "wt") as f:
        f.write('{"text": "fine"}\nnot json\n')
    r = subprocess.run([sys.executable, str(ROOT / "data" / "c4" / "prepare.py"), "--out_dir",
                        str(tmp_path / "c4b")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "line 2" in r.stderr


def test_code_version_named_by_the_environment_wins_over_git(monkeypatch):
    # a copy shipped to a GPU box can carry a .git of another commit than the code it runs
    import common
    monkeypatch.delenv("NANODEPTH_CODE_VERSION", raising=False)
    from_git = common.code_version()
    assert from_git and from_git != "unknown"
    monkeypatch.setenv("NANODEPTH_CODE_VERSION", "0123456789ab")
    assert common.code_version() == "0123456789ab"


def test_looped_model_resumes_bitwise(corpus, tmp_path):
    looped = ["--n_layer", "3", "--n_unique", "1", "--data_dir", str(corpus), "--eval_interval", "2"]
    straight = train.main([*FAST, *looped, "--out_dir", str(tmp_path / "a"), "--max_iters", "4"])
    train.main([*FAST, *looped, "--out_dir", str(tmp_path / "b"), "--max_iters", "2"])
    resumed = train.main(["--out_dir", str(tmp_path / "b"), "--data_dir", str(corpus), "--resume",
                          "--max_iters", "4", "--quiet"])
    assert straight["model_config"]["n_unique"] == 1 and resumed["model_config"]["n_layer"] == 3
    a, b = weights(tmp_path / "a" / "ckpt.pt"), weights(tmp_path / "b" / "ckpt.pt")
    assert a.keys() == b.keys() and not any(k.startswith("blocks.1.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_study_writing_its_results_does_not_make_the_code_dirty(tmp_path):
    """results/ holds what studies write as they run; a change there is not a change of code."""
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    shutil.copy(ROOT / "common.py", repo / "common.py")
    (repo / "results" / "r.csv").write_text("a\n")
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True, check=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x", "--allow-empty")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "y")
    ask = [sys.executable, "-c", "import common; print(common.code_version())"]
    env = {k: v for k, v in os.environ.items() if k != "NANODEPTH_CODE_VERSION"}
    (repo / "results" / "r.csv").write_text("a\nb\n")
    assert not subprocess.run(ask, cwd=repo, capture_output=True, text=True, env=env).stdout.strip().endswith("+dirty")
    (repo / "common.py").write_text((repo / "common.py").read_text() + "\n# changed\n")
    assert subprocess.run(ask, cwd=repo, capture_output=True, text=True, env=env).stdout.strip().endswith("+dirty")
