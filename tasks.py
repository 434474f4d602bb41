"""
The fine-tuning tasks, defined once for finetune.py, evaluate.py and sweep.py: where each task's
splits live, which split is in-distribution and which tests generalization, each example's
category, and how a (source, target) pair becomes a causal-LM sequence.

A pair becomes   source tokens, SEP, target tokens, EOT   (minGPT's adder, as a prompt):
source and target are each encoded with a leading space, so that a word is one and the same
token wherever it stands (as with T5's SentencePiece, which the paper used). Plain GPT-2 BPE
gives "Paula" at the start of a text as [12041, 64] and " Paula" after a space as [36025]: in
COGS the subject opens the source and reappears after "= " in the target, so a name seen only
as an object in training could never be copied into the subject role.
the loss is on the target and EOT only, and the model answers a prompt `source SEP` by greedy
decoding until EOT. Exact match compares the decoded answer with the target, whitespace-normalized.
"""
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common import ROOT, UserError, gpt2_encoder, sha256_file
from corpus import prepare_on_first_use

SEP = "\n"  # one GPT-2 token (198) between source and target

COGS_STRUCTURAL = ("cp_recursion", "pp_recursion", "obj_pp_to_subj_pp")


@dataclass
class Task:
    name: str
    folder: str                  # data/<folder>/, made by data/<folder>/prepare.py
    files: dict                  # split name -> file under the folder
    id_split: str = ""           # in-distribution test split ("" if the task has none)
    gen_split: str = ""          # generalization split
    dev_split: str = ""          # watched during fine-tuning (else id_split, else a train sample)
    structural: tuple = field(default_factory=tuple)  # categories aggregated as structural

    @property
    def splits(self):
        return list(self.files)


def _four(folder, structural=()):
    return Task(folder, folder, {s: f"{s}.tsv" for s in ("train", "dev", "test", "gen")}, "test", "gen", "dev",
                structural)


TASKS = {
    "cogs": _four("cogs", COGS_STRUCTURAL),
    "cogs_vf": _four("cogs_vf", COGS_STRUCTURAL),
    # GeoQuery: Shaw et al.'s standard split is i.i.d.; template, TMCD and length are compositional
    "geoquery": Task("geoquery", "geoquery", {"train": "standard/train.tsv", "test": "standard/test.tsv"},
                     "test", "test"),
    **{f"geoquery_{fam}": Task(f"geoquery_{fam}", "geoquery",
                               {"train": f"{fam}/train.tsv", "test": f"{fam}/test.tsv"}, "", "test")
       for fam in ("template", "tmcd", "length")},
    "passivization": _four("passivization"),
    "question_formation": _four("question_formation"),
    **{f"scan_{s}": Task(f"scan_{s}", "scan", {"train": f"{s}_train.tsv", "test": f"{s}_test.tsv"}, "", "test")
       for s in ("simple", "length", "addprim_jump", "addprim_turn_left", "template_around_right")},
}


def get_task(name):
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


# --- reading ---------------------------------------------------------------------------------------

@dataclass
class Example:
    source: str
    target: str
    category: str
    prompt: list     # token ids of source + SEP
    answer: list     # token ids of target + EOT


def split_path(task, split, data_dir=None):
    task = get_task(task) if isinstance(task, str) else task
    if split not in task.files:
        raise UserError(f"task {task.name} has no split {split!r}; choose one of {', '.join(task.splits)}")
    return (Path(data_dir) if data_dir else ROOT / "data" / task.folder) / task.files[split]


def split_sha256(task, split, data_dir=None):
    """sha256 of the prepared split file, for result files."""
    return sha256_file(split_path(task, split, data_dir))


def read_split(task, split, data_dir=None):
    """The examples of one split, tokenized. Prepares the task's data on first use."""
    task = get_task(task) if isinstance(task, str) else task
    path = split_path(task, split, data_dir)
    folder = Path(data_dir) if data_dir else ROOT / "data" / task.folder
    if not path.is_file():
        if data_dir:
            raise UserError(f"{path} not found; prepare it with data/{task.folder}/prepare.py --out_dir {folder}")
        prepare_on_first_use(task.folder, folder)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        f = line.split("\t")
        if len(f) not in (2, 3) or not f[0].strip() or not f[1].strip():
            raise UserError(f"{path} line {n}: expected source<TAB>target[<TAB>category]; "
                            f"re-run data/{task.folder}/prepare.py")
        rows.append((f[0], f[1], f[2] if len(f) == 3 else task.name))
    enc = gpt2_encoder()
    sep = enc.encode_ordinary(SEP)
    srcs = enc.encode_ordinary_batch([with_space(r[0]) for r in rows])
    tgts = enc.encode_ordinary_batch([with_space(r[1]) for r in rows])
    return [Example(s, t, c, p + sep, a + [enc.eot_token]) for (s, t, c), p, a in zip(rows, srcs, tgts)]


def with_space(text):
    """The text with exactly one leading space: every word then has its ' word' token."""
    return " " + text.lstrip(" ")


def longest(examples):
    """The example with the most tokens, and that count."""
    ex = max(examples, key=lambda e: len(e.prompt) + len(e.answer))
    return ex, len(ex.prompt) + len(ex.answer)


def check_fits(examples, block_size, vocab_size, where):
    """Refuse a model whose vocabulary or context cannot hold the task."""
    if vocab_size < gpt2_encoder().n_vocab:
        raise UserError(f"the model's vocabulary has {vocab_size} entries; {where} needs GPT-2's "
                        f"{gpt2_encoder().n_vocab}")
    ex, n = longest(examples)
    if n > block_size:
        raise UserError(f"{where}: the example {ex.source!r} is {n} tokens with its answer, longer than "
                        f"the model's context of {block_size}")


# --- batches -----------------------------------------------------------------------------------------

def train_batch(examples, pad_id):
    """Right-padded (x, y) for teacher forcing; y is -1 except on answer tokens."""
    T = max(len(e.prompt) + len(e.answer) for e in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), -1, dtype=torch.long)
    for i, e in enumerate(examples):
        seq = e.prompt + e.answer
        x[i, :len(seq) - 1] = torch.tensor(seq[:-1])
        y[i, len(e.prompt) - 1:len(seq) - 1] = torch.tensor(e.answer)
    return x, y


def prompt_batch(examples, pad_id):
    """Left-padded prompts and their validity mask, for batched decoding."""
    T = max(len(e.prompt) for e in examples)
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    valid = torch.zeros((len(examples), T), dtype=torch.bool)
    for i, e in enumerate(examples):
        x[i, T - len(e.prompt):] = torch.tensor(e.prompt)
        valid[i, T - len(e.prompt):] = True
    return x, valid


def normalize(text):
    return " ".join(text.split())


def is_exact_match(prediction, example):
    return normalize(prediction) == normalize(example.target)


@torch.no_grad()
def decode_examples(model, examples, batch_size=64, use_cache=True):
    """Greedy answers for examples, batched by similar prompt length to waste little on padding.
    Each batch stops at EOT or one token past its longest gold answer: a longer output can
    never be an exact match, so the cap changes no score. Returns texts in input order."""
    enc = gpt2_encoder()
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].prompt), len(examples[i].answer)))
    out = [None] * len(examples)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        batch = [examples[i] for i in idx]
        x, valid = prompt_batch(batch, enc.eot_token)
        cap = max(len(e.answer) for e in batch) + 1
        ids = model.generate(x.to(device), cap, eos_id=enc.eot_token, valid=valid.to(device),
                             use_cache=use_cache)
        for i, toks in zip(idx, ids):
            out[i] = enc.decode(toks)
    return out


def score(examples, predictions, task):
    """Exact match overall and per category, with COGS's lexical / structural aggregates."""
    task = get_task(task) if isinstance(task, str) else task
    hits = [is_exact_match(p, e) for p, e in zip(predictions, examples)]
    cats = {}
    for e, h in zip(examples, hits):
        c = cats.setdefault(e.category, [0, 0])
        c[0] += h
        c[1] += 1
    result = {"exact_match": sum(hits) / max(len(hits), 1), "n": len(hits),
              "categories": {c: {"exact_match": k / n, "n": n} for c, (k, n) in sorted(cats.items())}}
    if any(c in task.structural for c in cats):  # the generalization split: 18 lexical + 3 structural
        for group, member in (("structural", lambda c: c in task.structural),
                              ("lexical", lambda c: c not in task.structural)):
            k = sum(v[0] for c, v in cats.items() if member(c))
            n = sum(v[1] for c, v in cats.items() if member(c))
            if n:
                result[group] = {"exact_match": k / n, "n": n}
    return result, hits
