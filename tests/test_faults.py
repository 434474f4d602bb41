"""Runs that survive what machines and clusters do to them: damaged checkpoints, failed writes,
a NaN on one process, a process killed under torchrun. Faults are injected deterministically
(cluster.fault)."""
import json
import os
import re
import shutil
import socket
import sys
import subprocess

import pytest
import torch

from conftest import ROOT

import checkpoint
import train
from checkpoint import load_checkpoint
from common import UserError

FAST = ["--model_class", "tiny", "--n_layer", "1", "--batch_size", "2", "--block_size", "32",
        "--eval_iters", "1", "--quiet", "--device", "cpu"]


def run_train(corpus, out, *args):
    return train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(out), *args])


def test_checksum_catches_one_flipped_byte(corpus, tmp_path):
    out = tmp_path / "r"
    run_train(corpus, out, "--max_iters", "2", "--eval_interval", "2")
    path = out / "ckpt.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the file (inside a tensor)
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="fails verification|not a readable checkpoint"):
        load_checkpoint(path)


def test_checksum_catches_a_changed_tensor(corpus, tmp_path):
    out = tmp_path / "r"
    run_train(corpus, out, "--max_iters", "2", "--eval_interval", "2")
    ck = torch.load(out / "ckpt.pt", weights_only=True)
    name = next(iter(ck["model"]))
    ck["model"][name].view(-1)[0] += 1e-3
    torch.save(ck, out / "ckpt.pt")
    with pytest.raises(UserError, match="fails verification"):
        load_checkpoint(out / "ckpt.pt")


def test_last_two_checkpoints_kept_and_resume_falls_back(corpus, tmp_path, capsys):
    out = tmp_path / "r"
    run_train(corpus, out, "--max_iters", "4", "--eval_interval", "2")
    assert load_checkpoint(out / "ckpt.pt")["step"] == 4 and load_checkpoint(out / "ckpt.prev.pt")["step"] == 2
    straight = load_checkpoint(out / "ckpt.pt")["model"]
    data = bytearray((out / "ckpt.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "ckpt.pt").write_bytes(bytes(data))
    s = train.main(["--out_dir", str(out), "--data_dir", str(corpus), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert "resuming from the previous checkpoint" in err and "(step 2)" in err
    assert s["step"] == 4
    again = load_checkpoint(out / "ckpt.pt")["model"]  # steps 3-4 redone from step 2: the same weights
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_failed_write_leaves_the_previous_checkpoint(corpus, tmp_path, monkeypatch):
    out = tmp_path / "r"
    real_save = torch.save
    calls = {"n": 0}

    def full_disk(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: half written, then the disk is full
            open(f, "wb").write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(UserError, match="could not write .*No space left on device.* intact"):
        run_train(corpus, out, "--max_iters", "4", "--eval_interval", "2")
    assert load_checkpoint(out / "ckpt.pt")["step"] == 2
    assert not list(out.glob("*.tmp")) and not (out / "ckpt.prev.pt").exists()


def torchrun(*args, env=None, timeout=300):
    exe = shutil.which("torchrun")
    if exe is None:
        pytest.skip("torchrun not on PATH")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def worker_lines(stderr):
    """The workers' own messages, without torchrun's launcher log lines."""
    return [line for line in stderr.splitlines() if not re.match(r"[WEI]\d{4} ", line)]


def launch(n, argv, env):
    """n processes of one DDP run, started as torchrun starts them (RANK, WORLD_SIZE, MASTER_*), but
    with no launcher to stop the others when one exits: each process's own exit code and output."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **env, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(n),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for r in range(n)]
    return [(p.wait(timeout=300), p.communicate()[1]) for p in procs]


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_before_the_step(corpus, tmp_path):
    out = tmp_path / "ddp"
    results = launch(2, [str(ROOT / "train.py"), *FAST, "--data_dir", str(corpus), "--out_dir", str(out),
                         "--max_iters", "6", "--eval_interval", "2"],
                     {"NANODEPTH_NAN_AT_STEP": "3", "NANODEPTH_FAULT_RANK": "1"})
    for rank, (code, err) in enumerate(results):  # both stop, in one line, none hangs or applies the step
        assert code == 2 and "non-finite at step 3" in err and "Traceback" not in err, (rank, err[-2000:])
    ck = load_checkpoint(out / "ckpt.pt")
    assert ck["step"] == 2 and len(ck["rng"]) == 2
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [2]


COMMON = ["--standalone", "--nproc_per_node=2", str(ROOT / "train.py"), *FAST, "--max_iters", "8", "--eval_interval", "2"]
KILL_RANK_1 = {"NANODEPTH_KILL_AT_STEP": "5", "NANODEPTH_FAULT_RANK": "1"}  # SIGKILL after step 5


@pytest.fixture(scope="module")
def unbroken(corpus, tmp_path_factory):
    """The final checkpoint of a 2-process torchrun run that nothing interrupted."""
    out = tmp_path_factory.mktemp("unbroken")
    r = torchrun(*COMMON, "--data_dir", str(corpus), "--out_dir", str(out))
    assert r.returncode == 0, "\n".join(worker_lines(r.stderr)[-20:])
    return load_checkpoint(out / "ckpt.pt")


def assert_same_run(a, b):
    assert a["step"] == b["step"] == 8
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.slow
def test_killed_rank_restarted_by_torchrun_ends_as_an_unbroken_run(corpus, unbroken, tmp_path):
    """torchrun --max-restarts=1 restarts both workers when one is killed; they resume from the last
    checkpoint on their own and end with the unbroken run's weights."""
    r = torchrun("--max-restarts=1", *COMMON, "--data_dir", str(corpus), "--out_dir", str(tmp_path), env=KILL_RANK_1)
    assert r.returncode == 0, "\n".join(worker_lines(r.stderr)[-20:])
    assert re.search(r"exitcode\s*: -9", r.stderr), "no worker was killed"
    assert_same_run(unbroken, load_checkpoint(tmp_path / "ckpt.pt"))


@pytest.mark.slow
def test_killed_rank_then_rerun_ends_as_an_unbroken_run(corpus, unbroken, tmp_path):
    """Without restarts the job fails; the same torchrun command with --resume, as a scheduler's
    requeue would run it, ends with the unbroken run's weights."""
    common = [*COMMON, "--data_dir", str(corpus), "--out_dir", str(tmp_path)]
    r = torchrun(*common, env=KILL_RANK_1)
    assert r.returncode != 0 and re.search(r"exitcode\s*: -9", r.stderr), "no worker was killed"
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 4
    again = torchrun(*common, "--resume")
    assert again.returncode == 0, "\n".join(worker_lines(again.stderr)[-20:])
    assert_same_run(unbroken, load_checkpoint(tmp_path / "ckpt.pt"))


def test_ctrl_c_during_a_checkpoint_write_leaves_no_litter_and_the_old_one_intact(corpus, tmp_path, monkeypatch):
    out = tmp_path / "r"
    run_train(corpus, out, "--max_iters", "2", "--eval_interval", "2")
    ck, good = load_checkpoint(out / "ckpt.pt"), (out / "ckpt.pt").read_bytes()

    def interrupted(obj, f):  # half the file written, then Ctrl-C
        open(f, "wb").write(b"partial checkpoint")
        raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(ck, out / "ckpt.pt", keep_previous=True)
    assert not list(out.glob("*.tmp")) and (out / "ckpt.pt").read_bytes() == good


def test_a_stop_between_the_two_renames_still_leaves_the_new_checkpoint(corpus, tmp_path, monkeypatch):
    """The window CI once hit: ckpt.pt already renamed to ckpt.prev.pt, the new file not yet in place."""
    out = tmp_path / "r"
    run_train(corpus, out, "--max_iters", "2", "--eval_interval", "2")
    ck = load_checkpoint(out / "ckpt.pt")
    real = os.replace

    def stopped_after_first(src, dst):
        real(src, dst)
        monkeypatch.setattr(checkpoint.os, "replace", real)
        raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint.os, "replace", stopped_after_first)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint({**ck, "step": 99}, out / "ckpt.pt", keep_previous=True)
    assert not list(out.glob("*.tmp"))
    assert load_checkpoint(out / "ckpt.pt")["step"] == 99 and load_checkpoint(out / "ckpt.prev.pt")["step"] == 2


def test_sigterm_stops_a_run_cleanly_and_it_resumes(corpus, tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, str(ROOT / "train.py"), *FAST, "--data_dir", str(corpus), "--out_dir", str(out),
           "--max_iters", "100000", "--eval_interval", "1"]  # a checkpoint every step: the signal lands near one
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import time
    deadline = time.time() + 120
    while not (out / "ckpt.prev.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    p.terminate()  # SIGTERM, as a scheduler stops a job
    assert p.wait(timeout=60) == 143 and "Traceback" not in p.stderr.read()
    assert not list(out.glob("*.tmp"))
    step = load_checkpoint(out / "ckpt.pt")["step"]
    r = subprocess.run(cmd[:-4] + ["--max_iters", str(step + 1), "--eval_interval", "1", "--resume"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and load_checkpoint(out / "ckpt.pt")["step"] == step + 1, r.stderr


def test_a_new_process_removes_the_temporaries_of_dead_ones_only(corpus, tmp_path):
    out = tmp_path / "r"
    run_train(corpus, out, "--max_iters", "2", "--eval_interval", "2")
    dead, alive = out / "ckpt.pt.999999999.tmp", out / f"notes.txt.{os.getpid()}.tmp"  # alive: this process
    dead.write_bytes(b"x" * 1000)
    alive.write_bytes(b"y")
    run_train(corpus, out, "--max_iters", "3", "--eval_interval", "3", "--resume")
    assert not dead.exists() and alive.exists()


def test_a_second_run_in_a_running_folder_is_refused_and_a_killed_holder_frees_it(corpus, tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, str(ROOT / "train.py"), *FAST, "--data_dir", str(corpus), "--out_dir", str(out),
           "--max_iters", "100000", "--eval_interval", "5"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time
        deadline = time.time() + 120
        while not (out / "ckpt.pt").exists() and time.time() < deadline:
            time.sleep(0.2)
        for extra in (["--resume"], ["--overwrite", "--seed", "7"]):  # a resume and a clobber, both refused
            r = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=120)  # unrefused: it trains on
            assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
            assert "in use" in r.stderr and f"pid {first.pid}" in r.stderr, r.stderr
    finally:
        first.kill()  # SIGKILL: no handler runs, the kernel drops the lock
        first.wait()
    step = load_checkpoint(out / "ckpt.pt")["step"]
    r = subprocess.run(cmd[:-4] + ["--max_iters", str(step + 1), "--eval_interval", "1", "--resume"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and load_checkpoint(out / "ckpt.pt")["step"] == step + 1, r.stderr


def test_a_run_refused_before_writing_leaves_no_folder(tmp_path):
    out = tmp_path / "new" / "r"
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *FAST, "--data_dir", str(tmp_path / "nodata"),
                        "--out_dir", str(out), "--max_iters", "2"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert not out.exists()


def copy_corpus(corpus, tmp_path):
    d = tmp_path / "corpus"
    shutil.copytree(corpus, d)
    return d


def train_cli(data, out, *extra):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *FAST, "--data_dir", str(data),
                           "--out_dir", str(out), "--max_iters", "1", *extra], capture_output=True, text=True)


@pytest.mark.parametrize("damage, needle", [
    (lambda b: b[:len(b) // 2], "cut short"),          # a full disk mid-copy: half the tokens
    (lambda b: b[:-1], "cut short"),                     # an odd byte count
    (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "changed since"),  # one flipped bit, same size
])
def test_damaged_corpus_is_refused_in_one_line(corpus, tmp_path, damage, needle):
    d = copy_corpus(corpus, tmp_path)
    assert train_cli(d, tmp_path / "ok").returncode == 0  # hashed and cached while intact
    (d / "train.bin").write_bytes(damage((d / "train.bin").read_bytes()))
    r = train_cli(d, tmp_path / "r")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in r.stderr and "prepare it again with data/tinystories/prepare.py" in r.stderr


def test_unrecorded_corpus_with_an_odd_size_and_a_damaged_meta_are_refused(corpus, tmp_path):
    d = copy_corpus(corpus, tmp_path)
    (d / "meta.json").write_text("{ not json")
    r = train_cli(d, tmp_path / "r")
    assert r.returncode == 2 and "meta.json" in r.stderr and "Traceback" not in r.stderr
    (d / "meta.json").unlink()  # a folder prepared by hand: nothing to check against but the format
    (d / "train.bin").write_bytes((d / "train.bin").read_bytes()[:-1])
    r = train_cli(d, tmp_path / "r")
    assert r.returncode == 2 and "odd number of bytes" in r.stderr and "Traceback" not in r.stderr


def test_a_run_records_the_hash_of_what_it_read(corpus, tmp_path):
    from common import sha256_file
    d = copy_corpus(corpus, tmp_path)
    s = run_train(d, tmp_path / "r", "--max_iters", "1")
    assert s["data"]["train_sha256"] == sha256_file(d / "train.bin")
    assert s["data"]["val_sha256"] == sha256_file(d / "val.bin")


def test_a_resume_on_other_data_is_refused_unless_told_and_then_recorded(corpus, tmp_path):
    out = tmp_path / "r"
    first = run_train(corpus, out, "--max_iters", "2", "--eval_interval", "2")
    moved = copy_corpus(corpus, tmp_path / "moved")  # the same files in another folder: a plain resume
    assert train_cli(moved, out, "--max_iters", "3", "--resume").returncode == 0
    other = copy_corpus(corpus, tmp_path / "other")
    ids = (other / "train.bin").read_bytes()
    (other / "train.bin").write_bytes(ids[2:] + ids[:2])  # other tokens, and no record to check them by
    meta = json.loads((other / "meta.json").read_text())
    meta.pop("files"), meta.pop("train_sha256")
    (other / "meta.json").write_text(json.dumps(meta))
    r = train_cli(other, out, "--max_iters", "4", "--resume")
    assert r.returncode == 2 and "trained on other data" in r.stderr and "train_sha256" in r.stderr, r.stderr
    assert load_checkpoint(out / "ckpt.pt")["step"] == 3  # nothing trained, nothing written
    r = train_cli(other, out, "--max_iters", "4", "--resume", "--new_data")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["data"]["train_sha256"] != first["data"]["train_sha256"]
    assert s["data"]["resumed_from_data"]["train_sha256"] == first["data"]["train_sha256"]
