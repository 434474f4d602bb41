"""The CUDA paths: the same checks as on the CPU, on a GPU. Skipped where torch sees no GPU (CI has
none); on a GPU machine `python -m pytest tests/test_cuda.py` runs them."""
import json
import subprocess
import sys

import pytest
import torch

from checkpoint import load_checkpoint, load_model
from corpus import load_prepare
from conftest import ROOT, small_model

import tasks
import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

FAST = ["--model_class", "tiny", "--n_layer", "2", "--batch_size", "4", "--block_size", "64",
        "--eval_iters", "2", "--warmup_iters", "2", "--quiet", "--device", "cuda"]


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("block", ["paper", "gpt2"])
def test_float32_forward_and_grads_match_the_cpu(block):
    x, y = torch.randint(0, 101, (3, 40)), torch.randint(0, 101, (3, 40))
    y[:, :10] = -1
    out = {}
    for dev in ("cpu", "cuda"):
        model = small_model(block=block).to(dev)
        loss = model(x.to(dev), targets=y.to(dev))
        loss.backward()
        out[dev] = (loss.detach().cpu(), {n: p.grad.cpu() for n, p in model.named_parameters()})
    assert rel(out["cuda"][0], out["cpu"][0]) < 1e-5
    for n, g in out["cpu"][1].items():
        assert rel(out["cuda"][1][n], g) < 1e-4, n


def test_bf16_chunked_loss_matches_whole_logits():
    x, y = torch.randint(0, 101, (3, 40), device="cuda"), torch.randint(0, 101, (3, 40), device="cuda")
    losses, grads = [], []
    for chunk in (0, 7):
        model = small_model(loss_chunk=chunk).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x, targets=y)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert rel(losses[1], losses[0]) < 1e-2
    for n in grads[0]:
        assert rel(grads[1][n], grads[0][n]) < 3e-2, n


def test_cached_decoding_equals_cache_free_with_padding():
    model = small_model().double().cuda().eval()
    idx = torch.randint(0, 100, (4, 9), device="cuda")
    valid = torch.ones_like(idx, dtype=torch.bool)
    valid[0, :4] = False
    valid[2, :1] = False
    cached = tasks.generate(model, idx, 25, eos_id=100, valid=valid)
    assert cached == tasks.generate(model, idx, 25, eos_id=100, valid=valid, use_cache=False)
    assert tasks.generate(model, idx[:1, 4:], 25, eos_id=100) == cached[:1]


def test_train_bf16_fused_adamw_checkpoint_and_resume(corpus, tmp_path):
    out = tmp_path / "run"
    s = train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(out), "--max_iters", "6",
                    "--eval_interval", "3", "--optimizer", "adamw", "--lr_schedule", "cosine"])
    assert s["device"] == "cuda" and s["dtype"] == "bfloat16" and s["step"] == 6
    first = json.loads((out / "log.jsonl").read_text().splitlines()[0])["val_loss"]
    assert s["val_loss"] < first  # six steps at this learning rate already lower the loss
    ck = load_checkpoint(out / "ckpt.pt")  # weights_only, onto the CPU
    assert all(t.device.type == "cpu" for t in ck["model"].values())
    r = train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(out), "--resume", "--max_iters", "8"])
    assert r["step"] == 8 and load_checkpoint(out / "ckpt.pt")["step"] == 8


def test_compiled_training_runs(corpus, tmp_path):
    s = train.main([*FAST, "--data_dir", str(corpus), "--out_dir", str(tmp_path / "c"), "--max_iters", "4",
                    "--eval_interval", "4", "--compile"])
    assert s["step"] == 4 and s["val_loss"] < 11.0


@pytest.mark.data
def test_finetune_evaluate_and_cached_decoding_on_cuda(tmp_path):
    data = tmp_path / "geoquery"
    load_prepare("geoquery").prepare(data)
    import finetune
    out = tmp_path / "ft"
    finetune.main(["--task", "geoquery", "--data_dir", str(data), "--from_scratch", "--n_layer", "1",
                   "--max_iters", "150", "--eval_interval", "150", "--eval_examples", "8", "--batch_size", "32",
                   "--learning_rate", "3e-3", "--warmup_iters", "10", "--out_dir", str(out), "--quiet",
                   "--device", "cuda"])
    model, _ = load_model(out / "ckpt.pt", "cuda")
    test = tasks.read_split("geoquery", "test", data)[:32]
    fast = tasks.decode_examples(model, test, batch_size=16)
    assert fast == tasks.decode_examples(model, test, batch_size=16, use_cache=False)
    assert len(set(fast)) > 1  # a trained model, not a constant
    r = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--ckpt", str(out), "--task", "geoquery",
                        "--data_dir", str(data), "--limit", "32", "--device", "cuda",
                        "--out", str(tmp_path / "e.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["results"][0]["n"] == 32
