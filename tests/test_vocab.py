"""The cheap fine-tuning epoch: a task vocabulary (or a word one) that the checkpoint carries,
length-bucketed batches, and what they must not change: the loss of the same examples."""
import csv
import json
import subprocess
import sys
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, data_unavailable

import finetune
import tasks
from checkpoint import load_checkpoint, load_model
from common import UserError
from model import GPT, config_for

ROWS = [("A cat ran .", "run ( agent = cat )", "in_distribution"),
        ("Emma saw a dog .", "see ( agent = Emma , theme = dog )", "in_distribution"),
        ("Abigail slept .", "sleep ( agent = Abigail )", "in_distribution")]


def test_task_vocabulary_holds_only_the_tasks_tokens_and_round_trips():
    v = tasks.Vocab.build("task", ROWS)
    full = tasks.Vocab()
    ids = {t for seq in full.encode_texts([t for r in ROWS for t in r[:2]], "rows") for t in seq}
    assert v.tokens == sorted(ids | {full.eot, full.sep}) and v.size == len(v.tokens) < 40
    ex = tasks.encode_rows(ROWS, v, "rows")
    assert all(0 <= t < v.size for e in ex for t in e.prompt + e.answer)
    assert ex[0].answer[-1] == v.eot and ex[0].prompt[-1] == v.sep
    assert [v.decode(e.answer[:-1]).strip() for e in ex] == [r[1] for r in ROWS]
    # the same example in GPT-2's numbering maps onto it token for token
    g = tasks.encode_rows(ROWS, full, "rows")
    assert [[v.tokens[t] for t in e.prompt + e.answer] for e in ex] == [e.prompt + e.answer for e in g]


def test_word_vocabulary_is_one_token_per_word():
    v = tasks.Vocab.build("word", ROWS)
    ex = tasks.encode_rows(ROWS, v, "rows")
    assert len(ex[2].prompt) == len("Abigail slept .".split()) + 1  # GPT-2 BPE splits "Abigail"
    assert v.decode(ex[1].answer[:-1]) == ROWS[1][1]
    assert v.tokens[:2] == list(tasks.WORD_SPECIALS)


@pytest.mark.parametrize("kind", ["task", "word"])
def test_a_token_outside_the_vocabulary_is_refused_in_one_line(kind):
    v = tasks.Vocab.build(kind, ROWS)
    lacks = r"cogs gen: 'A Zebra ran .' has the token '.*Z.*', which the model's \w+ vocabulary of \d+ tokens lacks"
    with pytest.raises(UserError, match=lacks):
        tasks.encode_rows([("A Zebra ran .", "run ( agent = Zebra )", "x")], v, "cogs gen")


def test_the_cut_model_is_the_full_model_restricted_to_the_tasks_tokens():
    """Same layers, the embedding and head rows of the task's tokens: the cut model's loss equals
    the cross-entropy of the full model's logits over those columns (the function is unchanged)."""
    v = tasks.Vocab.build("task", ROWS)
    torch.manual_seed(0)
    full = GPT(config_for("tiny", 2, block_size=64, tie_embeddings=0, quiet=True)).eval()
    cut = GPT(config_for("tiny", 2, block_size=64, tie_embeddings=0, quiet=True,
                                 vocab="task", tokens=v.tokens)).eval()
    assert cut.wte.weight.shape[0] == v.size and cut.lm_head.weight.shape[0] == v.size
    keep = torch.tensor(v.tokens)
    state = full.state_dict()
    state["wte.weight"], state["lm_head.weight"] = state["wte.weight"][keep], state["lm_head.weight"][keep]
    cut.load_state_dict(state)
    xg, _ = tasks.train_batch(tasks.encode_rows(ROWS, tasks.Vocab(), "rows"), 50256)
    xt, yt = tasks.train_batch(tasks.encode_rows(ROWS, v, "rows"), v.eot)
    with torch.no_grad():
        logits = full(xg)[..., keep]
        ref = F.cross_entropy(logits.reshape(-1, v.size), yt.reshape(-1), ignore_index=-1)
        assert torch.allclose(cut(xt), logits, atol=1e-5)
        assert abs(cut(xt, targets=yt).item() - ref.item()) < 1e-5
        assert abs(ref.item() - full(xg, targets=_full_targets(yt, keep)).item()) > 1e-3  # the cut matters


def _full_targets(y, keep):
    return torch.where(y >= 0, keep[y.clamp(min=0)], y)


def synthetic(n=200):
    """n examples whose lengths spread from 3 to 42 tokens; each opens with its own token 100 + i."""
    return [tasks.Example(f"s{i}", f"t{i}", "c", [100 + i] + list(range(1, 1 + i % 20)),
                          list(range(1, 2 + i % 21)) + [0]) for i in range(n)]


def test_bucketed_batches_pad_little_keep_every_example_equally_likely_and_replay():
    ex = synthetic()
    rand, buck = tasks.Batches(ex, 4, 0, "random"), tasks.Batches(ex, 4, 0, "bucketed")
    assert sorted(i for b in buck.buckets for i in b) == list(range(len(ex))) and min(map(len, buck.buckets)) >= 16
    pad = {}
    for name, b in (("random", rand), ("bucketed", buck)):
        g = torch.Generator().manual_seed(1)
        xs = [b(g)[0] for _ in range(200)]
        pad[name] = sum((x == 0).sum().item() for x in xs) / sum(x.numel() for x in xs)
    assert pad["bucketed"] < pad["random"] / 3
    counts = Counter()
    gen = torch.Generator().manual_seed(0)
    for _ in range(5000):
        first = (buck(gen)[0][:, 0] - 100).tolist()  # which examples the step drew
        assert len(set(first)) == 4  # distinct within a batch
        counts.update(first)
    expected = 5000 * 4 / len(ex)
    assert all(abs(counts[i] - expected) < 0.45 * expected for i in range(len(ex)))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert all(torch.equal(buck(g1)[0], buck(g2)[0]) for _ in range(5))  # stateless: a resume replays


def test_padding_does_not_change_the_loss():
    """Bucketing changes how much padding a batch has, never the loss of its examples."""
    torch.manual_seed(0)
    model = GPT(config_for("tiny", 2, block_size=128, vocab_size=320, quiet=True)).eval()
    ex = synthetic(6)[:3]
    x, y = tasks.train_batch(ex, 0)
    longer = ex + [tasks.Example("l", "l", "c", list(range(1, 40)), [5, 0])]
    xl, yl = tasks.train_batch(longer, 0)
    n_ans = (y != -1).sum()
    with torch.no_grad():
        tight = model(x, targets=y).item()
        # the long example's own answer tokens removed from the mean: only padding differs
        yl[3] = -1
        padded = model(xl, targets=yl).item()
    assert xl.shape[1] > x.shape[1] + 30 and n_ans > 0
    assert abs(tight - padded) < 1e-5


# --- end to end: the vocabulary travels in the checkpoint ---------------------------------------

@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    if data_unavailable():
        pytest.skip(data_unavailable())
    from corpus import load_prepare
    d = tmp_path_factory.mktemp("scan")
    load_prepare("scan").prepare(d)
    return d


FT = ["--from_scratch", "--n_layer", "1", "--batch_size", "8", "--eval_examples", "4", "--quiet"]


@pytest.mark.slow
def test_task_vocabulary_is_saved_resumed_and_refuses_other_data(scan, tmp_path):
    out = tmp_path / "ft"
    base = ["--task", "scan_simple", "--data_dir", str(scan), *FT, "--out_dir", str(out),
            "--snapshot_steps", "3,5"]
    finetune.main(base + ["--max_iters", "6", "--eval_interval", "3"])
    ck = load_checkpoint(out / "ckpt.pt")
    cfg = ck["model_config"]
    assert cfg["vocab"] == "task" and cfg["vocab_size"] == len(cfg["tokens"]) < 100
    assert ck["data"]["vocab_size"] == cfg["vocab_size"] and "tokens_only_outside_train" in ck["data"]
    assert sorted(p.name for p in (out / "snapshots").glob("*.pt")) == ["step_0000003.pt", "step_0000005.pt"]
    finetune.main(base + ["--max_iters", "8", "--resume"])
    assert load_checkpoint(out / "ckpt.pt")["step"] == 8
    # the curve: every snapshot and the final checkpoint scored on one sample, kept, and tabled
    import curve
    study = tmp_path / "study"
    (study / "runs" / "d1_s0").mkdir(parents=True)
    (study / "runs" / "d1_s0" / "ft_scan_simple").symlink_to(out)
    curve.main(["--name", str(study), "--data_dir", str(scan), "--limit", "8"])
    rows = list(csv.DictReader(open(study / "curve.csv")))
    assert [int(r["step"]) for r in rows] == [3, 5, 8] and {r["limit"] for r in rows} == {"8"}
    assert float(rows[2]["epochs"]) == round(8 * 8 / int(ck["data"]["train_examples"]), 3)
    assert (study / "curve.png").stat().st_size > 0 and (out / "curve" / "step_0000008.json").exists()
    model, _ = load_model(out)
    test = tasks.read_split("scan_simple", "test", scan, tasks.Vocab.of(model.config))
    assert len(tasks.decode_examples(model, test[:8])) == 8
    r = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--ckpt", str(out), "--task", "cogs_vf",
                        "--split", "test", "--limit", "4"], capture_output=True, text=True)
    assert r.returncode == 2 and "vocabulary" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "finetune.py"), "--task", "scan_simple", "--data_dir", str(scan),
                        "--init_from", str(out), "--vocab", "word", "--out_dir", str(tmp_path / "x"), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "keeps its own" in r.stderr and "Traceback" not in r.stderr


def test_word_vocabulary_end_to_end(scan, tmp_path):
    out = tmp_path / "w"
    finetune.main(["--task", "scan_simple", "--data_dir", str(scan), *FT, "--vocab", "word", "--batching", "packed",
                   "--max_iters", "4", "--eval_interval", "4", "--out_dir", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_config"]["vocab"] == "word" and summary["data"]["vocab"] == "word"
    assert summary["run_config"]["batching"] == "packed" and 0 < summary["val_loss"] < 10
    r = subprocess.run([sys.executable, str(ROOT / "sample.py"), "--ckpt", str(out / "ckpt.pt"), "--prompt",
                        "jump twice", "--num_samples", "1", "--temperature", "0", "--max_new_tokens", "5"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("jump twice\n"), r.stderr


def test_packed_examples_give_the_loss_they_give_unpacked():
    """Packing lays examples end to end; the block-diagonal mask must keep each to itself, T5's
    relative bias included, so the loss over their answers is the loss of the padded batch."""
    torch.manual_seed(0)
    model = GPT(config_for("tiny", 2, block_size=128, vocab_size=320, quiet=True)).eval()
    ex = synthetic(40)[::3]
    x, y = tasks.train_batch(ex, 0)
    px, py, seg = tasks.packed_batch(ex, 0)
    assert px.shape[0] < x.shape[0] and px.shape[1] == x.shape[1] and (py != -1).sum() == (y != -1).sum()
    assert (seg.max(1).values > 0).any()  # some row holds several examples
    with torch.no_grad():
        assert abs(model(x, targets=y).item() - model(px, targets=py, segments=seg).item()) < 1e-5
        assert abs(model(x, targets=y).item() - model(px, targets=py).item()) > 1e-3  # the mask matters
    gen = torch.Generator().manual_seed(0)
    b = tasks.Batches(synthetic(), 16, 0, "packed")(gen)
    assert len(b) == 3 and int((b[2].max(1).values + 1).sum()) == 16  # the batch's 16 examples, packed
