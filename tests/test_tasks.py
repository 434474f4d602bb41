import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import ROOT, data_unavailable

import tasks
from common import UserError, sha256_file
from corpus import load_prepare
from model import GPT, GPTConfig

# sha256 of the reference GeoQuery files (data/geoquery's SOURCE.md in the offline mirror tells how
# they were made from the upstream corpus and split ids with NQG's and CSL's own scripts)
GEOQUERY_REFERENCE = {
    "all.tsv": "d4deb74e002b2d64a9efb13ba19870d6b25ccbc181fcef2ab4e3bf7f45ed26df",
    "standard/train.tsv": "c1ffd67c840204afaa3461641424ad97c39565b2900e37ae4cbd03fdab26e7a9",
    "standard/test.tsv": "8f6d65fdcde86ec10125e321dffbbe3eea975b9484a93f9cfa0ab5e71753238e",
    "template/train.tsv": "7964f49fe6bd017e2dbdf69e99b68f9eddf1d9f2811f60f9a211fafdcd381b62",
    "template/test.tsv": "350b932953babc5c92f025659ee5c224d5923fcb8ebf9ed95543c5d6f5771bd8",
    "tmcd/train.tsv": "14ea09e543ea4cb1a126cbd3be2a3f1cc63718e14b6f7523ce6b40b237d285d9",
    "tmcd/test.tsv": "c1bf985686aeaa4338bc6b9538eb27e1d046d07a38548c9ad185595bba7a8080",
    "length/train.tsv": "fc1e90059cc659bd750578566b7ce5d740c5ca2ed83f50352c4ba19a605a63d7",
    "length/test.tsv": "5742ac5eb51b74b7bb40a991e6bf9d5fcb55dffc385ced08a2cafbda9cc68d06",
    "csl/tmcd_1/train.tsv": "b3daf8a17de8270ba7a3e50832af7f167c6df629a4054ce81ff01742180169ee",
    "csl/tmcd_1/test.tsv": "8c28d97eff1a9131141b19b9abcff3d5925a221851a9de16cd2bd2759424c465",
    "csl/length/train.tsv": "fc1e90059cc659bd750578566b7ce5d740c5ca2ed83f50352c4ba19a605a63d7",
    "csl/length/test.tsv": "d679a00dab1f7655c51b3b7b8972072dbbbd620fd79652fb7b83fb34541796ee",
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Each task prepared once (from the mirror or upstream) into a temp folder: {folder: path}."""
    if data_unavailable():
        pytest.skip(data_unavailable())
    root = tmp_path_factory.mktemp("tasks")
    out = {}
    for folder in ("cogs", "cogs_vf", "geoquery", "passivization", "question_formation", "scan"):
        load_prepare(folder).prepare(root / folder)
        out[folder] = root / folder
    return out


def test_geoquery_preprocessing_reproduces_reference(prepared):
    assert len((prepared["geoquery"] / "all.tsv").read_text().splitlines()) == 880
    for name, sha in GEOQUERY_REFERENCE.items():
        assert sha256_file(prepared["geoquery"] / name) == sha, name


def test_funql_normalization_cases():
    geo = load_prepare("geoquery")
    assert geo.normalize("answer(state(all))") == "answer(state)"
    assert geo.normalize("answer(city(loc_2(stateid(virginia))))") == \
        "answer(intersection(city,loc_2(stateid(virginia))))"
    assert geo.normalize("answer(largest_one(population_1(state(all))))") == \
        "answer(largest_one(population_1,state))"
    assert geo.space_tokens("answer(loc_2(m0))") == "answer ( loc_2 ( m0 ) )"


def test_cogs_gen_has_21_categories_of_1000(prepared):
    gen = tasks.read_split("cogs", "gen", prepared["cogs"])
    counts = Counter(e.category for e in gen)
    assert len(counts) == 21 and set(counts.values()) == {1000}
    assert set(tasks.COGS_STRUCTURAL) <= set(counts)
    vf = tasks.read_split("cogs_vf", "gen", prepared["cogs_vf"])
    assert [e.source for e in vf[:100]] == [e.source for e in gen[:100]]


def test_split_sizes(prepared):
    sizes = {("passivization", "gen"): 10000, ("question_formation", "train"): 100000,
             ("scan_length", "test"): 3920, ("geoquery_tmcd", "train"): 440, ("cogs", "test"): 3000}
    for (task, split), n in sizes.items():
        folder = prepared[tasks.get_task(task).folder]
        assert len(tasks.read_split(task, split, folder)) == n, (task, split)
    passiv = tasks.read_split("passivization", "gen", prepared["passivization"])
    assert {e.category for e in passiv} == {"passiv"}


def test_sequence_layout_and_loss_mask(prepared):
    ex = tasks.read_split("cogs", "train", prepared["cogs"])[:3]
    eot = 50256
    for e in ex:
        assert e.prompt[-1] == 198 and e.answer[-1] == eot
    x, y = tasks.train_batch(ex, eot)
    for i, e in enumerate(ex):
        seq = e.prompt + e.answer
        assert x[i, :len(seq) - 1].tolist() == seq[:-1]
        labelled = y[i][y[i] != -1].tolist()
        assert labelled == e.answer  # the loss sees the answer and EOT, nothing of the prompt
        assert (y[i, :len(e.prompt) - 1] == -1).all()


def test_a_word_has_one_token_form_in_source_and_target(prepared):
    """GPT-2 BPE spells a sentence-initial "Paula" [12041, 64] and " Paula" [36025]; tasks encode
    both sides with a leading space so the subject of the source is the token the target copies."""
    from common import gpt2_encoder
    enc = gpt2_encoder()
    assert enc.encode_ordinary("Paula") != enc.encode_ordinary(" Paula") == [36025]
    train = tasks.read_split("cogs_vf", "train", prepared["cogs_vf"])
    ex = next(e for e in train if e.source.startswith("Emma ") and "agent = Emma" in e.target)
    assert ex.prompt[0] == enc.encode_ordinary(" Emma")[0] == 18966 and 18966 in ex.answer
    gen = tasks.read_split("cogs", "gen", prepared["cogs"])
    ex = next(e for e in gen if e.source.startswith("Paula "))
    assert ex.prompt[0] == 36025 and 36025 in ex.answer  # COGS writes it after "x _ 1 ,"
    assert tasks.with_space("  a b") == " a b"


def test_cogs_vf_primitives_are_the_word_itself(prepared):
    """Qiu et al.'s preprocessing: the 143 `primitive` training rows map a word to itself."""
    rows = [e for e in tasks.read_split("cogs_vf", "train", prepared["cogs_vf"]) if e.category == "primitive"]
    assert len(rows) == 143 and all(e.target == e.source and " " not in e.source for e in rows)
    cogs = [e for e in tasks.read_split("cogs", "train", prepared["cogs"]) if e.category == "primitive"]
    assert len(cogs) == 143 and sum("LAMBDA" in e.target for e in cogs) > 100  # plain COGS keeps its form


def test_gold_scores_100_and_one_wrong_token_misses(prepared):
    gen = tasks.read_split("cogs", "gen", prepared["cogs"])[:300]
    result, hits = tasks.score(gen, [e.target for e in gen], "cogs")
    assert result["exact_match"] == 1.0 and all(hits)
    assert result["lexical"]["exact_match"] == 1.0
    preds = [e.target for e in gen]
    preds[7] = preds[7].replace("x _ 1", "x _ 2", 1) if "x _ 1" in preds[7] else preds[7] + " AND"
    preds[8] = preds[8] + " )"  # one extra token
    result, hits = tasks.score(gen, preds, "cogs")
    assert not hits[7] and not hits[8] and sum(hits) == 298
    assert result["exact_match"] == pytest.approx(298 / 300)
    # whitespace differences are not errors
    assert tasks.is_exact_match("  " + gen[0].target.replace(" ", "  ") + " ", gen[0])


def test_malformed_line_is_named(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "data"))
    import fetch
    mirror = tmp_path / "mirror" / "cogs"
    mirror.mkdir(parents=True)
    (mirror / "dev.tsv").write_text("ok .\tok\tin_distribution\nbroken line without tabs\n")
    monkeypatch.setenv("NANODEPTH_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(UserError, match="dev.tsv line 2: expected 3 tab-separated fields, found 1"):
        fetch.prepare_pairs("cogs", "unused/", {"dev": ("dev.tsv", None)}, fetch.tsv_fields(3), tmp_path / "o")
    # a prepared file damaged afterwards is caught when read
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "test.tsv").write_text("a\tb\tc\nno tab here\n")
    with pytest.raises(UserError, match=r"test.tsv line 2"):
        tasks.read_split("cogs", "test", tmp_path / "p")


def test_mirror_file_with_wrong_hash_is_refused(tmp_path):
    mirror = tmp_path / "mirror" / "cogs"
    mirror.mkdir(parents=True)
    for f in ("train.tsv", "dev.tsv", "test.tsv", "gen.tsv"):
        (mirror / f).write_text("A dog ran .\tdog ( x _ 1 )\tin_distribution\n")
    env = {**os.environ, "NANODEPTH_MIRROR": str(tmp_path / "mirror")}
    r = subprocess.run([sys.executable, str(ROOT / "data" / "cogs" / "prepare.py"), "--out_dir",
                        str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "does not match the expected" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "train.tsv").exists()


def test_checkpoint_too_short_for_task_names_the_example(prepared):
    gen = tasks.read_split("cogs", "gen", prepared["cogs"])
    with pytest.raises(UserError, match=r"example '.*' is \d+ tokens .* context of 256"):
        tasks.check_fits(gen, 256, 50257, "cogs gen")
    with pytest.raises(UserError, match="vocabulary"):
        tasks.check_fits(gen, 1024, 32128, "cogs gen")


def test_cached_and_cache_free_decoding_agree_on_a_trained_model(prepared, tmp_path):
    import finetune
    out = tmp_path / "ft"
    finetune.main(["--task", "cogs", "--data_dir", str(prepared["cogs"]), "--from_scratch", "--n_layer", "1",
                   "--max_iters", "60", "--eval_interval", "60", "--eval_examples", "4", "--batch_size", "16",
                   "--learning_rate", "3e-3", "--warmup_iters", "5", "--out_dir", str(out), "--quiet"])
    from checkpoint import load_model
    model, _ = load_model(out / "ckpt.pt")
    dev = tasks.read_split("cogs", "dev", prepared["cogs"], tasks.Vocab.of(model.config))[:24]
    fast = tasks.decode_examples(model, dev, batch_size=8)
    slow = tasks.decode_examples(model, dev, batch_size=8, use_cache=False)
    assert fast == slow
    assert len(set(fast)) > 1 and any(len(p.split()) > 3 for p in fast)  # a trained model, not a constant
    r = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--ckpt", str(out), "--task", "cogs",
                        "--data_dir", str(prepared["cogs"]), "--limit", "16", "--split", "gen",
                        "--out", str(tmp_path / "new" / "e.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # --out in a folder not there yet: made, as the file is written
    report = json.loads((tmp_path / "new" / "e.json").read_text())
    assert report["results"][0]["n"] == 16 and len(report["results"][0]["predictions"]) == 16
    assert report["code_version"] and report["results"][0]["sha256"] and report["seed"] == 0


@pytest.mark.parametrize("args,needle", [
    (["--task", "nope"], "argument --task: invalid choice: 'nope'"),
    (["--task", "cogs", "--split", "validation"], "no split 'validation'; choose one of train, dev"),
])
def test_evaluate_bad_input(args, needle, tmp_path):
    cfg = GPTConfig(n_layer=1, n_head=1, d_model=8, d_ff=8, block_size=32)
    torch.save({"format": "nanodepth-1", "kind": "pretrain", "model": GPT(cfg).state_dict(),
                "model_config": cfg.__dict__}, tmp_path / "ckpt.pt")
    r = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--ckpt", str(tmp_path), *args],
                       capture_output=True, text=True)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


@pytest.mark.data
def test_evaluate_refuses_a_model_fine_tuned_on_another_task_unless_told(tmp_path):
    cfg = GPTConfig(n_layer=1, n_head=1, d_model=8, d_ff=8, block_size=128)
    torch.save({"format": "nanodepth-1", "kind": "finetune", "model": GPT(cfg).state_dict(),
                "model_config": cfg.__dict__, "data": {"task": "cogs_vf"}}, tmp_path / "ckpt.pt")
    cmd = [sys.executable, str(ROOT / "evaluate.py"), "--ckpt", str(tmp_path), "--task", "cogs", "--split", "dev",
           "--limit", "2", "--out", str(tmp_path / "e.json")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "was fine-tuned on cogs_vf, not cogs" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "e.json").exists()
    r = subprocess.run(cmd + ["--transfer"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["transfer"] and report["trained_on"] == "cogs_vf" and report["results"][0]["n"] == 2


def test_a_damaged_prepared_split_is_refused_and_names_the_fix(prepared, tmp_path):
    import shutil
    d = tmp_path / "cogs_vf"
    shutil.copytree(prepared["cogs_vf"], d)
    assert json.loads((d / "meta.json").read_text())["files"]["dev.tsv"]["bytes"] == (d / "dev.tsv").stat().st_size
    lines = (d / "dev.tsv").read_text().splitlines(keepends=True)
    (d / "dev.tsv").write_text("".join(lines[:len(lines) // 2]))  # whole lines gone: it would parse
    with pytest.raises(UserError, match=r"dev.tsv holds .* bytes where its preparation wrote .*cut short.*"
                                         r"data/cogs_vf/prepare.py"):
        tasks.read_split("cogs_vf", "dev", d)
    (d / "test.tsv").write_text((d / "test.tsv").read_text().replace("cat", "dog", 1))  # same size
    with pytest.raises(UserError, match="changed since"):
        tasks.split_sha256("cogs_vf", "test", d)


def test_a_task_read_from_another_tasks_folder_is_refused(prepared):
    # COGS and COGS-vf name their splits alike: without the check one trains on the other's data
    with pytest.raises(UserError, match=r"holds cogs_vf, not cogs: .*data/cogs/prepare.py wrote \(or --task cogs_vf\)"):
        tasks.read_split("cogs", "train", prepared["cogs_vf"])


def test_reading_a_split_never_prepares_it(tmp_path, monkeypatch):
    # preparing (a download, online) is the job's explicit step, corpus.ensure_prepared; a read only reads
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    with pytest.raises(UserError, match=r"dev.tsv not found; prepare it with data/cogs/prepare.py"):
        tasks.read_pairs("cogs", "dev")
    assert not (tmp_path / "data").exists()
