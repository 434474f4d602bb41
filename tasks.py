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

from common import ROOT, UserError, gpt2_encoder, gpt2_prefix
from corpus import prepared_sha256, read_meta

SEP = "\n"  # one GPT-2 token between source and target
GPT2_SEP = 198

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
    """sha256 of the prepared split file, verified against its preparation's record, for result files."""
    return prepared_sha256(split_path(task, split, data_dir))


def read_pairs(task, split, data_dir=None):
    """The (source, target, category) rows of one split of prepared data (corpus.ensure_prepared)."""
    task = get_task(task) if isinstance(task, str) else task
    path = split_path(task, split, data_dir)
    folder = Path(data_dir) if data_dir else ROOT / "data" / task.folder
    if not path.is_file():
        raise UserError(f"{path} not found; prepare it with data/{task.folder}/prepare.py --out_dir {folder}")
    made_for = read_meta(folder).get("name", task.folder)
    if made_for != task.folder:  # the split files of the tasks share names (train.tsv, ...)
        hint = f" (or --task {made_for})" if made_for in TASKS else ""
        raise UserError(f"{folder} holds {made_for}, not {task.folder}: give the folder that "
                        f"data/{task.folder}/prepare.py wrote{hint}")
    prepared_sha256(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; re-run data/{task.folder}/prepare.py") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        f = line.split("\t")
        if len(f) not in (2, 3) or not f[0].strip() or not f[1].strip():
            raise UserError(f"{path} line {n}: expected source<TAB>target[<TAB>category]; "
                            f"re-run data/{task.folder}/prepare.py")
        rows.append((f[0], f[1], f[2] if len(f) == 3 else task.name))
    return rows


def read_split(task, split, data_dir=None, vocab=None):
    """The examples of one split, tokenized in `vocab` (default: GPT-2's)."""
    task = get_task(task) if isinstance(task, str) else task
    return encode_rows(read_pairs(task, split, data_dir), vocab or Vocab(), f"{task.name} {split}")


def encode_rows(rows, vocab, where):
    """Examples of (source, target, category) rows: prompt = source SEP, answer = target EOT."""
    srcs = vocab.encode_texts([r[0] for r in rows], where)
    tgts = vocab.encode_texts([r[1] for r in rows], where)
    return [Example(s, t, c, p + [vocab.sep], a + [vocab.eot]) for (s, t, c), p, a in zip(rows, srcs, tgts)]


# --- vocabularies ----------------------------------------------------------------------------------

VOCABS = ("gpt2", "task", "word")
WORD_SPECIALS = ("<eot>", "<sep>")  # the word vocabulary's own EOT and SEP


class Vocab:
    """What a model's token ids stand for, stored in its config (GPTConfig.vocab and .tokens).
    gpt2: GPT-2's BPE ids as they are, 50,257 rows (pretrained models); with a smaller size, GPT-2's
          BPE kept to its first size - 1 merge ranks plus EOT (common.gpt2_prefix): a vocabulary
          sized to a small class, ids below EOT still GPT-2's own.
    task: GPT-2's BPE, cut to the ids that occur in the task's splits and renumbered 0..n-1: the
          embedding and output head hold n rows (COGS-vf: 895) instead of 50,257, which were most
          of a tiny model's FLOPs; the layers and the class's parameter matching are untouched.
    word: one id per whitespace-separated word of the task's splits: the vocabulary of the
          from-scratch anchors (Kim & Linzen 2020, Csordas et al. 2021, Wu et al. 2023).
    task and word are built over every split, as the anchors built theirs; a token that occurs only
    outside training keeps its random input embedding (no gradient reaches it)."""

    def __init__(self, kind="gpt2", tokens=(), size=0):
        if kind not in VOCABS:
            raise UserError(f"unknown vocabulary {kind!r}; choose one of {', '.join(VOCABS)}")
        enc = gpt2_encoder()
        self.kind, self.tokens = kind, list(tokens)
        if kind == "gpt2":
            self.size = size or enc.n_vocab
            self.eot, self.sep = self.size - 1, GPT2_SEP  # EOT is the last id, in GPT-2 and in its prefixes
            self.prefix = gpt2_prefix(self.size) if self.size < enc.n_vocab else None
            return
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.size = len(self.tokens)
        eot, sep = WORD_SPECIALS if kind == "word" else (enc.eot_token, GPT2_SEP)
        if eot not in self.index or sep not in self.index:
            raise UserError(f"a {kind} vocabulary must hold its EOT and SEP tokens; this one does not")
        self.eot, self.sep = self.index[eot], self.index[sep]

    @classmethod
    def of(cls, cfg):
        """The vocabulary of a model config."""
        return cls(cfg.vocab, cfg.tokens, cfg.vocab_size)

    @classmethod
    def build(cls, kind, rows):
        """The `kind` vocabulary of (source, target, category) rows (gpt2: GPT-2's whole one)."""
        texts = [t for r in rows for t in r[:2]]
        if kind == "word":
            return cls("word", list(WORD_SPECIALS) + sorted({w for t in texts for w in t.split()}))
        if kind == "task":
            enc = gpt2_encoder()
            ids = {i for seq in enc.encode_ordinary_batch([with_space(t) for t in texts]) for i in seq}
            return cls("task", sorted(ids | {enc.eot_token, GPT2_SEP}))
        return cls(kind)

    def encode_texts(self, texts, where):
        """Token ids of each text; a token this vocabulary lacks is refused in one line."""
        if self.kind == "word":
            seqs = [t.split() for t in texts]
        else:
            seqs = gpt2_encoder().encode_ordinary_batch([with_space(t) for t in texts])
            if self.kind == "gpt2":
                return [self.from_gpt2(s) for s in seqs]
        out = []
        for text, seq in zip(texts, seqs):
            try:
                out.append([self.index[t] for t in seq])
            except KeyError as e:
                shown = repr(e.args[0]) if self.kind == "word" else repr(gpt2_encoder().decode([e.args[0]]))
                raise UserError(f"{where}: {text!r} has the token {shown}, which the model's {self.kind} vocabulary "
                                f"of {self.size} tokens lacks (it holds the tokens of the data it was built "
                                "for); train a model for this data") from None
        return out

    def from_gpt2(self, ids):
        """GPT-2 ids in this (gpt2-kind) vocabulary: themselves, or their pieces in a prefix."""
        return ids if self.prefix is None else [j for i in ids for j in self.prefix[i]]

    def decode(self, ids):
        if self.kind == "word":
            return " ".join(self.tokens[i] for i in ids)
        if self.kind == "task":
            return gpt2_encoder().decode([self.tokens[i] for i in ids])
        eot = gpt2_encoder().eot_token
        return gpt2_encoder().decode([eot if i == self.eot else i for i in ids])

    def describe(self, train):
        """Size, and how many tokens occur only outside the training examples, for result files."""
        seen = {t for e in train for t in e.prompt + e.answer}
        return {"vocab": self.kind, "vocab_size": self.size,
                "tokens_only_outside_train": self.size - len(seen | {self.eot, self.sep})}


def with_space(text):
    """The text with exactly one leading space: every word then has its ' word' token."""
    return " " + text.lstrip(" ")


def longest(examples):
    """The example with the most tokens, and that count."""
    ex = max(examples, key=lambda e: len(e.prompt) + len(e.answer))
    return ex, len(ex.prompt) + len(ex.answer)


def check_fits(examples, block_size, vocab_size, where):
    """Refuse a model whose vocabulary or context cannot hold the task."""
    top = max(max(e.prompt + e.answer) for e in examples)
    if top >= vocab_size:
        raise UserError(f"the model's vocabulary has {vocab_size} entries; {where} has token id {top} "
                        f"(GPT-2's vocabulary has {gpt2_encoder().n_vocab})")
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


BATCHINGS = ("random", "bucketed", "packed")


class Batches:
    """Training batches of `size` examples at random, every example equally likely at every step.
    random:   any `size` examples (with replacement), padded to the longest: about half the
              positions of a COGS batch are then padding (32 a batch: 47%, 128: 55%).
    bucketed: the examples sorted by length and cut into buckets of 8 x size; a step picks a
              bucket with probability proportional to its size and draws `size` distinct examples
              from it, so each example keeps probability 1/N per draw while a batch pads to within
              a few tokens (COGS-vf, 128 a batch: 4% padding). Its batches hold sentences of one
              length, so of one shape: on a fixed seed it learned less per step than random.
    packed:   any `size` examples, as random, packed end to end into as few rows as the longest
              allows (packed_batch); a block-diagonal mask keeps each example to itself.
    All are stateless: the data generator alone decides, so a resumed run draws the same batches."""

    def __init__(self, examples, size, pad_id, how="random"):
        if how not in BATCHINGS:
            raise UserError(f"unknown batching {how!r}; choose one of {', '.join(BATCHINGS)}")
        self.examples, self.size, self.pad_id, self.how = examples, size, pad_id, how
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt) + len(examples[i].answer)) \
            if how == "bucketed" else list(range(len(examples)))  # only bucketed draws from buckets
        width = 8 * size
        self.buckets = [order[s:s + width] for s in range(0, len(order), width)]
        if len(self.buckets) > 1 and len(self.buckets[-1]) < width // 2:  # no small bucket of the longest
            self.buckets[-2:] = [self.buckets[-2] + self.buckets[-1]]
        self.weights = torch.tensor([len(b) for b in self.buckets], dtype=torch.float)

    def __call__(self, gen):
        if self.how in ("random", "packed"):
            idx = torch.randint(len(self.examples), (self.size,), generator=gen).tolist()
            if self.how == "packed":
                return packed_batch([self.examples[i] for i in idx], self.pad_id)
        else:
            bucket = self.buckets[torch.multinomial(self.weights, 1, generator=gen).item()]
            if len(bucket) >= self.size:
                pick = torch.randperm(len(bucket), generator=gen)[:self.size].tolist()
            else:  # a task smaller than one batch
                pick = torch.randint(len(bucket), (self.size,), generator=gen).tolist()
            idx = [bucket[i] for i in pick]
        return train_batch([self.examples[i] for i in idx], self.pad_id)


def packed_batch(examples, pad_id):
    """(x, y, segments): the examples laid end to end in rows as long as the longest one, first
    fit by decreasing length (COGS-vf, 128 examples: 4% padding); segments numbers the examples
    of a row (-1: padding), so the model's mask keeps attention inside each example. T5's
    relative positions need nothing more: within an example, index differences are distances."""
    order = sorted(examples, key=lambda e: -(len(e.prompt) + len(e.answer)))
    T = len(order[0].prompt) + len(order[0].answer) - 1
    rows = []  # [tokens used, examples]
    for e in order:
        n = len(e.prompt) + len(e.answer) - 1
        row = next((r for r in rows if r[0] + n <= T), None)
        if row is None:
            rows.append([n, [e]])
        else:
            row[0] += n
            row[1].append(e)
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), -1, dtype=torch.long)
    segments = torch.full((len(rows), T), -1, dtype=torch.long)
    for i, (_, row) in enumerate(rows):
        at = 0
        for j, e in enumerate(row):
            seq = e.prompt + e.answer
            n = len(seq) - 1
            x[i, at:at + n] = torch.tensor(seq[:-1])
            y[i, at + len(e.prompt) - 1:at + n] = torch.tensor(e.answer)
            segments[i, at:at + n] = j
            at += n
    return x, y, segments


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
def generate(model, idx, max_new_tokens, eos_id, valid=None, use_cache=True, temperature=0.0,
             top_k=None, generator=None):
    """Decode a batch of left-padded prompts; greedy unless temperature > 0 (then sampled,
    from the top_k tokens if given). Each row stops at its own eos_id. Returns a list of
    token lists (eos excluded). use_cache=False re-reads the whole sequence every step:
    slow, and the reference that the cached path must equal."""
    B = idx.size(0)
    valid = torch.ones_like(idx, dtype=torch.bool) if valid is None else valid.bool()
    max_new_tokens = min(max_new_tokens, model.config.block_size - idx.size(1))
    out = torch.full((B, max(max_new_tokens, 0)), eos_id, dtype=torch.long, device=idx.device)
    done = torch.zeros(B, dtype=torch.bool, device=idx.device)
    cache = [[] for _ in range(model.config.n_layer)] if use_cache else None  # one per application
    seq, step_in = idx, idx
    for t in range(max_new_tokens):
        logits = model(step_in if use_cache else seq, valid=valid, cache=cache)[:, -1]
        if temperature > 0:
            logits = logits.float() / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
        else:
            nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
        out[:, t] = nxt
        done |= nxt == eos_id
        if done.all():
            break
        valid = torch.cat((valid, torch.ones(B, 1, dtype=torch.bool, device=idx.device)), 1)
        step_in = nxt[:, None]
        seq = torch.cat((seq, step_in), 1)
    result = []
    for row in out.tolist():
        result.append(row[:row.index(eos_id)] if eos_id in row else row)
    return result


@torch.no_grad()
def decode_examples(model, examples, batch_size=64, use_cache=True):
    """Greedy answers for examples, batched by similar prompt length to waste little on padding.
    Each batch stops at EOT or one token past its longest gold answer: a longer output can
    never be an exact match, so the cap changes no score. Returns texts in input order."""
    vocab = Vocab.of(model.config)
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].prompt), len(examples[i].answer)))
    out = [None] * len(examples)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        batch = [examples[i] for i in idx]
        x, valid = prompt_batch(batch, vocab.eot)
        cap = max(len(e.answer) for e in batch) + 1
        ids = generate(model, x.to(device), cap, eos_id=vocab.eot, valid=valid.to(device), use_cache=use_cache)
        for i, toks in zip(idx, ids):
            out[i] = vocab.decode(toks)
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
