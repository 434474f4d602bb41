"""
Data for the jobs: preparing a dataset, the explicit first step of a job (ensure_prepared, through
its own data/<name>/prepare.py), verifying prepared files against their preparation's record,
pretraining corpora as token memmaps with random training windows and fixed evaluation windows,
and the mean loss over a set of batches (pretraining windows or masked fine-tuning examples).
"""
import functools
import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from common import ROOT, UserError, gpt2_encoder, gpt2_prefix, sha256_file, write_atomic

PREPARABLE = ("tinystories", "tinyshakespeare", "c4", "gutenberg_children")


def load_prepare(folder):
    """data/<folder>/prepare.py as a module (the data folders hold scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"prepare_{folder}", ROOT / "data" / folder / "prepare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ensure_prepared(name, data_dir=""):
    """The explicit step before any job reads dataset `name`: its folder, which is data/<name>/
    unless --data_dir names another. The default folder is prepared here (data/<name>/prepare.py,
    from upstream or $NANODEPTH_MIRROR) when it holds no finished preparation (meta.json is written
    last); a folder the user names is read as it is."""
    folder = Path(data_dir) if data_dir else ROOT / "data" / name
    if folder.is_file():
        raise UserError(f"--data_dir {folder} is a file; give the folder of a prepared dataset")
    if not data_dir and not (folder / "meta.json").is_file():
        if not (ROOT / "data" / name / "prepare.py").is_file():
            raise UserError(f"no prepared corpus at {folder} and no data/{name}/prepare.py; choose --dataset "
                            f"from {', '.join(PREPARABLE)}, or prepare your own with data/text/prepare.py "
                            f"--name {name} --train FILE --val FILE")
        print(f"{name} is not prepared yet; preparing it with data/{name}/prepare.py")
        load_prepare(name).prepare(folder)
    return folder


def prepared_sha256(path):
    """The sha256 of a prepared data file, checked against what its preparation recorded in the
    dataset's meta.json (size first, then hash): a file cut short or changed since is refused in
    one line that says how to prepare it again. Hashes are cached by size and mtime in the
    dataset's .sha256.json, so a large corpus is hashed once, not at every run. A file with no
    record (a folder prepared by hand, or by an older nanodepth) is hashed as it is read."""
    path = Path(path)
    folder = next((d for d in (path.parent, path.parent.parent) if (d / "meta.json").is_file()), path.parent)
    meta = read_meta(folder)
    rel = path.relative_to(folder).as_posix()
    rec = meta.get("files", {}).get(rel)
    if rec is None and f"{path.stem}_sha256" in meta:  # corpora prepared before meta.json had "files"
        rec = {"bytes": 2 * meta.get(f"{path.stem}_tokens", 0), "sha256": meta[f"{path.stem}_sha256"]}
    name = meta.get("name", folder.name)
    script = f"data/{name}/prepare.py" if (ROOT / "data" / name / "prepare.py").is_file() else "data/text/prepare.py"
    again = f"prepare it again with {script} --out_dir {folder}"
    size = path.stat().st_size
    if rec and size != rec["bytes"]:
        raise UserError(f"{path} holds {size:,} bytes where its preparation wrote {rec['bytes']:,} (cut short "
                        f"or changed since); {again}")
    cache_path = folder / ".sha256.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    key = [size, path.stat().st_mtime_ns]
    if isinstance(cache.get(rel), list) and cache[rel][:2] == key:
        sha = cache[rel][2]
    else:
        sha = sha256_file(path)
        try:
            write_atomic(cache_path, json.dumps({**cache, rel: key + [sha]}, indent=1) + "\n")
        except OSError:  # a read-only data folder: hash again next time
            pass
    if rec and sha != rec["sha256"]:
        raise UserError(f"{path} has sha256 {sha[:12]}... where its preparation wrote {rec['sha256'][:12]}... "
                        f"(changed since); {again}")
    return sha


def read_meta(folder):
    """A dataset's meta.json ({} if it has none); a damaged one is refused in one line."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        meta = None
    if not isinstance(meta, dict):
        raise UserError(f"{path} is not a dataset's meta.json (damaged?); prepare the dataset again")
    return meta


# --- pretraining corpora ---------------------------------------------------------------------------

def load_corpus(dataset, data_dir="", block_size=1, vocab_size=0):
    """train and val token memmaps (uint16) and meta.json of a prepared corpus; with a vocab_size
    below GPT-2's, in that prefix of GPT-2's BPE (converted once, kept beside the GPT-2 files)."""
    data_dir = Path(data_dir) if data_dir else ROOT / "data" / dataset
    if data_dir.is_file():
        raise UserError(f"--data_dir {data_dir} is a file; give the folder holding train.bin and val.bin")
    if not (data_dir / "train.bin").is_file():
        raise UserError(f"no prepared corpus at {data_dir}; prepare one with data/{dataset}/prepare.py "
                        f"--out_dir {data_dir}, or your own with data/text/prepare.py")
    meta = read_meta(data_dir)
    for split in ("train", "val"):  # provenance is what was read, verified against what was written
        path = data_dir / f"{split}.bin"
        if not path.is_file():
            raise UserError(f"{path} not found; prepare the corpus again")
        meta[f"{split}_sha256"] = prepared_sha256(path)
        if path.stat().st_size % 2:
            raise UserError(f"{path} holds an odd number of bytes, not uint16 tokens; prepare the corpus again")
    train, val = (in_prefix(data_dir / f"{split}.bin", vocab_size) for split in ("train", "val"))
    for split, arr in (("train", train), ("val", val)):
        if len(arr) <= block_size + 1:
            raise UserError(f"{data_dir}/{split}.bin has {len(arr)} tokens, fewer than --block_size + 2")
    return train, val, meta


@functools.lru_cache(maxsize=None)
def corpus_words(data_dir):
    """The words of a prepared corpus's training split (runs of letters, lower-cased), read back
    from its GPT-2 tokens: which of a task's words pretraining ever showed a model."""
    ids = np.memmap(Path(data_dir) / "train.bin", dtype=np.uint16, mode="r")
    words, rest, chunk = set(), "", 1 << 20
    for s in range(0, len(ids), chunk):
        piece = np.array(ids[s:s + chunk])
        piece[piece == gpt2_encoder().eot_token] = NEWLINE  # documents' boundaries, not a word
        text = rest + gpt2_encoder().decode(piece.tolist())
        cut = len(text.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
        text, rest = text[:cut], text[cut:]  # a word across the chunk's edge goes on to the next
        words.update(w.lower() for w in WORD.findall(text))
    return frozenset(words | {rest.lower()} - {""})


WORD = re.compile(r"[A-Za-z]+")
NEWLINE = 198  # GPT-2's id of "\n"


def in_prefix(path, vocab_size):
    """A .bin of GPT-2 ids as a memmap, in the prefix of GPT-2's BPE of vocab_size tokens (0: as it
    is). Each GPT-2 id becomes its pieces (common.gpt2_prefix), so no text is tokenized again."""
    if not vocab_size or vocab_size == gpt2_encoder().n_vocab:
        return np.memmap(path, dtype=np.uint16, mode="r")
    out = path.with_name(f"{path.stem}.v{vocab_size}.bin")
    if not out.is_file():
        table = gpt2_prefix(vocab_size)
        lengths = np.array([len(t) for t in table])
        flat = np.array([j for t in table for j in t], dtype=np.uint16)
        starts = np.cumsum(lengths) - lengths
        ids, parts = np.memmap(path, dtype=np.uint16, mode="r"), []
        for lo in range(0, len(ids), 1 << 22):  # in chunks: the index arrays are 8 bytes a token
            chunk = ids[lo:lo + (1 << 22)].astype(np.int64)
            n = lengths[chunk]  # pieces per GPT-2 token; each token's pieces sit at starts[token]
            offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            parts.append(flat[np.repeat(starts[chunk], n) + offset])
        write_atomic(out, np.concatenate(parts).tobytes())
    return np.memmap(out, dtype=np.uint16, mode="r")


def bits_per_byte(loss, batches, vocab_size):
    """Bits per byte of text from a mean loss in nats per target token over these (x, y) batches:
    comparable across vocabularies, as per-token perplexity is not. EOT counts no bytes (every
    vocabulary predicts the same EOTs)."""
    targets = np.concatenate([y[y != -1].numpy() for _, y in batches])
    nbytes = token_bytes(vocab_size or gpt2_encoder().n_vocab)[targets].sum()
    return float(loss * len(targets) / (math.log(2) * nbytes))


@functools.cache
def token_bytes(vocab_size):
    """Bytes of text each id of GPT-2's BPE (or its prefix of vocab_size) stands for; EOT none."""
    enc = gpt2_encoder()
    return np.array([len(enc.decode_single_token_bytes(i)) for i in range(vocab_size - 1)] + [0])


def get_batch(data, batch_size, block_size, gen, rank=0, world=1):
    """Random windows from this process's share of the tokens (DDP: one contiguous part each)."""
    part = len(data) // world
    lo = rank * part
    ix = torch.randint(part - block_size - 1, (batch_size,), generator=gen) + lo
    x = torch.from_numpy(np.stack([data[i:i + block_size] for i in ix.tolist()]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[i + 1:i + 1 + block_size] for i in ix.tolist()]).astype(np.int64))
    return x, y


def eval_windows(data, block_size, n, batch_size):
    """The same n non-overlapping windows every eval, in batches: losses are then comparable
    across steps and depths."""
    n = min(n, (len(data) - 1) // block_size)
    starts = np.linspace(0, len(data) - block_size - 1, n).astype(np.int64)
    x = torch.from_numpy(np.stack([data[s:s + block_size] for s in starts]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[s + 1:s + 1 + block_size] for s in starts]).astype(np.int64))
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


@torch.no_grad()
def mean_loss(model, batches):
    """Mean loss per target token (targets of -1 carry none) over (x, y) batches; the caller
    sets eval mode and precision."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for x, y in batches:
        k = int((y != -1).sum())
        total += model(x.to(device), targets=y.to(device)).item() * k
        count += k
    return total / max(count, 1)
