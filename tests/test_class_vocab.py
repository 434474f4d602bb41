"""A vocabulary sized to the class: GPT-2's BPE kept to its first N merge ranks. It must be the
BPE tiktoken itself builds from those ranks, reached from GPT-2 ids without tokenizing again, and
every script must read a checkpoint's vocabulary from the checkpoint."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

import tasks
from checkpoint import load_checkpoint
from common import gpt2_encoder, gpt2_prefix
from corpus import bits_per_byte, in_prefix

TEXT = ("Once upon a time, Abigail and Ava saw 1,234 glittering  stars -- \"wow!\" she said.\n"
        "A cat ran . run ( agent = cat ) ; Emma's dog isn't here... naïve café 日本語 🙂\n\n\tend")


def tiktoken_prefix(n):
    """The reference: tiktoken's own encoder of GPT-2's first n - 1 ranks, EOT as id n - 1."""
    import tiktoken
    g = gpt2_encoder()
    ranks = {b: r for b, r in g._mergeable_ranks.items() if r < n - 1}
    return tiktoken.Encoding(f"gpt2_{n}", pat_str=g._pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": n - 1})


@pytest.mark.parametrize("n", [257, 1025, 8193])
def test_prefix_of_gpt2_ids_is_tiktokens_encoding_of_the_text(n):
    table, ref = gpt2_prefix(n), tiktoken_prefix(n)
    ids = gpt2_encoder().encode_ordinary(TEXT)
    mapped = [j for i in ids for j in table[i]]
    assert mapped == ref.encode_ordinary(TEXT)
    assert max(mapped) < n - 1 and (n == 257 or len(mapped) < 2 * len(ids))
    assert ref.decode(mapped) == TEXT
    assert table[gpt2_encoder().eot_token] == [n - 1]


def test_full_size_is_gpt2_itself_and_a_prefix_round_trips_task_text():
    rows = [("Abigail gave Ava a cake .", "give ( agent = Abigail , recipient = Ava , theme = cake )", "x")]
    full, cut = tasks.Vocab(), tasks.Vocab("gpt2", size=4097)
    assert (full.size, full.eot, cut.size, cut.eot, cut.sep) == (50257, 50256, 4097, 4096, 198)
    e_full, e_cut = tasks.encode_rows(rows, full, "rows")[0], tasks.encode_rows(rows, cut, "rows")[0]
    assert len(e_cut.prompt) > len(e_full.prompt)  # fewer merges: more pieces
    assert max(e_cut.prompt + e_cut.answer) == cut.eot and e_cut.prompt[-1] == cut.sep
    assert cut.decode(e_cut.answer[:-1]).strip() == rows[0][1]
    assert cut.decode(e_cut.prompt[:-1]).strip() == rows[0][0]


@pytest.mark.data
def test_corpus_converted_to_a_prefix_is_the_prefix_encoding_of_its_text(corpus, tmp_path):
    val = np.memmap(corpus / "val.bin", dtype=np.uint16, mode="r")
    (tmp_path / "val.bin").write_bytes(np.asarray(val[:20_000]).tobytes())
    cut = in_prefix(tmp_path / "val.bin", 1025)
    text = gpt2_encoder().decode(val[:20_000].tolist())
    assert cut.tolist() == tiktoken_prefix(1025).encode(text, allowed_special="all")
    assert (tmp_path / "val.v1025.bin").is_file() and in_prefix(tmp_path / "val.bin", 0).tolist() == val[:20_000].tolist()


def test_bits_per_byte_counts_the_targets_bytes_and_not_eot():
    enc = gpt2_encoder()
    y = torch.tensor([enc.encode_ordinary(" the cat")[:2] + [enc.eot_token, -1]])  # ' the' (4 bytes), ' cat' (4)
    # ln 2 nats per target token over 3 targets = 3 bits over 8 bytes
    assert bits_per_byte(math.log(2), [(None, y)], 0) == pytest.approx(3 / 8)
    cut = tasks.Vocab("gpt2", size=300)
    yc = torch.tensor([cut.from_gpt2(y[0, :3].tolist())])
    n = yc.size(1)
    assert n > 3 and bits_per_byte(math.log(2), [(None, yc)], 300) == pytest.approx(n / 8)


@pytest.mark.slow
@pytest.mark.data
def test_train_with_a_class_vocabulary_then_sample_evaluate_and_finetune(corpus, tmp_path):
    out = tmp_path / "pre"
    run = lambda *a: subprocess.run([sys.executable, *map(str, a)], capture_output=True, text=True, cwd=ROOT)
    r = run(ROOT / "train.py", "--model_class", "tiny", "--n_layer", "1", "--batch_size", "2", "--block_size", "32",
            "--eval_iters", "1", "--max_iters", "4", "--eval_interval", "2", "--quiet", "--vocab_size", "1025",
            "--data_dir", corpus, "--out_dir", out)
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(out / "ckpt.pt")
    assert ck["model_config"]["vocab_size"] == 1025 and ck["model"]["wte.weight"].shape[0] == 1025
    assert ck["data"]["vocab_size"] == 1025 and (corpus / "train.v1025.bin").is_file()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert 0 < log[-1]["val_bpb"] < log[-1]["val_loss"] / math.log(2)  # more than one byte per token
    r = run(ROOT / "sample.py", "--out_dir", out, "--num_samples", "1", "--max_new_tokens", "5", "--prompt", "Once")
    assert r.returncode == 0 and r.stdout.startswith("Once"), r.stderr
    r = run(ROOT / "evaluate.py", "--ckpt", out, "--dataset", "tinystories", "--data_dir", corpus,
            "--block_size", "32", "--limit", "64", "--out", tmp_path / "ppl.json")
    assert r.returncode == 0, r.stderr
    ppl = json.loads((tmp_path / "ppl.json").read_text())["perplexity"]
    assert ppl["vocab_size"] == 1025 and 0 < ppl["bits_per_byte"] < ppl["val_loss"] and ppl["tokens"] == 64 * 32
    ft = tmp_path / "ft"
    r = run(ROOT / "finetune.py", "--task", "cogs_vf", "--init_from", out, "--max_iters", "2", "--batch_size", "4",
            "--eval_interval", "2", "--eval_examples", "4", "--quiet", "--out_dir", ft)
    assert r.returncode == 0, r.stderr
    s = json.loads((ft / "summary.json").read_text())
    assert s["data"]["vocab"] == "gpt2" and s["data"]["vocab_size"] == 1025
