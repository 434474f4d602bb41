"""What every data/<name>/prepare.py shares: fetch upstream files (or read them from the offline
mirror in $NANODEPTH_MIRROR/<name>/), hash what was read, and write token memmaps or splits."""
import hashlib
import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from common import (Parser, UserError, code_version, folder_to_write, gpt2_encoder, integer, main_guard,  # noqa: E402,F401
                    real, write_atomic)

DATA = ROOT / "data"


def write_recorded(path, data, files, folder):
    """Write a prepared file atomically and note its size and sha256 in files (keyed by its path
    under folder), for meta.json: every job that reads the file checks it against this record."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    write_atomic(path, raw)
    files[path.relative_to(folder).as_posix()] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def mirror_dir(name):
    m = os.environ.get("NANODEPTH_MIRROR")
    return Path(m) / name if m else None


class Source:
    """A readable upstream file: from the mirror when NANODEPTH_MIRROR is set, else from its URL.
    Reading it hashes the bytes and shows a progress bar."""

    def __init__(self, name, filename, url, sha256=None):
        self.name, self.filename, self.url, self.expected = name, filename, url, sha256
        mirror = mirror_dir(name)
        if mirror is not None:
            self.origin = mirror / filename
            if not self.origin.is_file():
                raise UserError(f"{self.origin} not found: NANODEPTH_MIRROR is set, so {name} "
                                f"is read from there; put {filename} there or unset it to download")
        else:
            self.origin = url

    def open(self):
        self.hash = hashlib.sha256()
        self.nbytes = 0
        if isinstance(self.origin, Path):
            f, total = open(self.origin, "rb"), self.origin.stat().st_size
        else:
            try:
                f = urllib.request.urlopen(self.url, timeout=60)
            except OSError as e:
                raise UserError(f"cannot download {self.url} ({e}); on a machine without internet set "
                                f"NANODEPTH_MIRROR to a folder holding {self.name}/{self.filename}") from None
            total = int(f.headers.get("Content-Length") or 0) or None
        self._f = f
        self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=self.filename, leave=False)
        return self

    def read(self, n=-1):
        b = self._f.read(n)
        self.hash.update(b)
        self.nbytes += len(b)
        self._bar.update(len(b))
        return b

    def close(self, complete=True):
        self._f.close()
        self._bar.close()
        digest = self.hash.hexdigest()
        if complete and self.expected and digest != self.expected:
            raise UserError(f"{self.filename}: sha256 {digest} does not match the expected "
                            f"{self.expected}; the download is corrupt or upstream changed")
        return {"file": self.filename, "from": str(self.origin), "bytes": self.nbytes,
                "sha256": digest, "complete": complete,
                "sha256_expected": self.expected if complete else None}

    def read_all(self, max_bytes=None):
        """Whole file (or its first max_bytes) as bytes, and its provenance record."""
        self.open()
        chunks, n = [], 0
        while (max_bytes is None or n < max_bytes) and (b := self.read(1 << 20)):
            chunks.append(b)
            n += len(b)
        complete = not self._f.read(1) if max_bytes else True
        return b"".join(chunks), self.close(complete=complete)


def split_docs(text):
    """Documents separated by <|endoftext|> if the text has them, else by blank lines."""
    parts = text.split("<|endoftext|>") if "<|endoftext|>" in text else text.split("\n\n")
    return [p.strip() for p in parts if p.strip()]


def tokenize(docs, batch=4096):
    """GPT-2 BPE ids as uint16, an end-of-text token after each document."""
    enc = gpt2_encoder()
    out = []
    for i in tqdm(range(0, len(docs), batch), desc="tokenizing", leave=False, unit="batch"):
        for ids in enc.encode_ordinary_batch(docs[i:i + batch], num_threads=os.cpu_count() or 1):
            ids.append(enc.eot_token)
            out.append(np.asarray(ids, dtype=np.uint16))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint16)


def write_corpus(out_dir, name, splits, sources, **extra):
    """splits: {"train": docs, "val": docs}. Writes train.bin, val.bin (uint16) and meta.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "tokenizer": "tiktoken gpt2", "vocab_size": 50257, "eot": 50256,
            "sources": sources, "code_version": code_version(), **extra, "files": {}}
    for split, docs in splits.items():
        ids = tokenize(docs)
        if len(ids) == 0:
            raise UserError(f"{name}: the {split} split is empty")
        write_recorded(out_dir / f"{split}.bin", ids.tobytes(), meta["files"], out_dir)
        meta[f"{split}_tokens"] = int(len(ids))
        meta[f"{split}_documents"] = len(docs)
        meta[f"{split}_sha256"] = meta["files"][f"{split}.bin"]["sha256"]
    write_atomic(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    print(f"{name}: " + ", ".join(f"{s} {meta[f'{s}_tokens']:,} tokens" for s in splits) + f" -> {out_dir}")
    return meta


def mirror_plain_text(name):
    """A mirror may hold a local copy or subset as plain train.txt and valid.txt."""
    m = mirror_dir(name)
    if m is not None and (m / "train.txt").is_file() and (m / "valid.txt").is_file():
        return Source(name, "train.txt", None), Source(name, "valid.txt", None)
    return None


# --- sequence-to-sequence tasks -------------------------------------------------------------------

def tsv_fields(n):
    """A parser for lines of exactly n tab-separated fields."""
    def parse(line):
        f = line.split("\t")
        if len(f) != n:
            raise ValueError(f"expected {n} tab-separated fields, found {len(f)}")
        return f
    return parse


def task_token_fields(tokens):
    """A parser for `source<TAB>target` lines whose source ends in a task token (one of
    `tokens`); the token becomes the example's category."""
    def parse(line):
        src, tgt = tsv_fields(2)(line)
        token = src.rsplit(" ", 1)[-1]
        if token not in tokens:
            raise ValueError(f"the source does not end in a task token ({', '.join(tokens)})")
        return src, tgt, token
    return parse


def prepare_pairs(task, base_url, files, parse, out_dir):
    """files: {split: (upstream path under base_url, sha256)}. parse(line) -> [source, target, category]
    or raises ValueError; a bad line stops everything with its file and line number.
    Writes out_dir/<split>.tsv (source, target, category) and meta.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, counts, written = [], {}, {}
    for split, (name, sha) in files.items():
        raw, rec = Source(task, name, base_url + name, sha).read_all()
        rows = []
        for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
            try:
                src, tgt, cat = parse(line)
            except ValueError as e:
                raise UserError(f"{name} line {n}: {e}") from None
            if not src.strip() or not tgt.strip():
                raise UserError(f"{name} line {n}: empty source or target")
            rows.append(f"{src}\t{tgt}\t{cat}\n")
        write_recorded(out_dir / f"{split}.tsv", "".join(rows), written, out_dir)
        records.append({**rec, "split": split})
        counts[split] = len(rows)
    meta = {"name": task, "sources": records, "examples": counts, "files": written, "code_version": code_version()}
    write_atomic(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    print(f"{task}: " + ", ".join(f"{s} {n:,}" for s, n in counts.items()) + f" -> {out_dir}")
    return counts


def task_main(doc, task, prepare):
    """The command line every task's prepare.py shares (and corpora with no options of their own)."""
    import argparse
    p = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default=str(DATA / task), help="where the prepared files go")

    def run():
        out_dir = p.parse_args().out_dir
        folder_to_write(out_dir, "--out_dir")
        prepare(out_dir)
    main_guard(run)
