"""C4 English (Raffel et al. 2020), the paper's pretraining corpus, streamed shard by shard
(each train shard is about 300 MB of gzipped JSON lines; the whole corpus is 1024 of them).

    python data/c4/prepare.py --train_shards 2 --val_shards 1

Offline: NANODEPTH_MIRROR=DIR reads the same file names from DIR/c4/.
"""
import argparse
import gzip
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, Parser, Source, UserError, folder_to_write, integer, main_guard, write_corpus  # noqa: E402

BASE = "https://huggingface.co/datasets/allenai/c4/resolve/main/en/"
# No per-shard checksums could be had offline where this was written; meta.json records the
# sha256 of each shard as read.


def shard_name(split, i):
    return f"c4-train.{i:05d}-of-01024.json.gz" if split == "train" else f"c4-validation.{i:05d}-of-00008.json.gz"


def read_shard(src):
    """Documents of one .json.gz shard, decompressed as it streams in."""
    docs = []
    with gzip.GzipFile(fileobj=src.open()) as gz:
        for n, line in enumerate(io.TextIOWrapper(gz, encoding="utf-8"), 1):
            try:
                docs.append(json.loads(line)["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{src.filename} line {n}: not a JSON object with a 'text' field") from None
    return docs, src.close()


def prepare(out_dir=DATA / "c4", train_shards=1, val_shards=1):
    if not (1 <= train_shards <= 1024 and 1 <= val_shards <= 8):
        raise UserError("--train_shards must be 1-1024 and --val_shards 1-8")
    splits, recs = {}, []
    for split, n in (("train", train_shards), ("val", val_shards)):
        splits[split] = []
        for i in range(n):
            name = shard_name(split, i)
            docs, rec = read_shard(Source("c4", name, BASE + name))
            splits[split] += docs
            recs.append(rec)
    return write_corpus(out_dir, "c4", splits, recs)


def main():
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default=str(DATA / "c4"), help="where the .bin files go")
    p.add_argument("--train_shards", type=integer(1, 1024), default=1, help="how many of the 1024 train shards")
    p.add_argument("--val_shards", type=integer(1, 8), default=1, help="how many of the 8 validation shards")
    a = p.parse_args()
    folder_to_write(a.out_dir, "--out_dir")
    prepare(a.out_dir, a.train_shards, a.val_shards)


if __name__ == "__main__":
    main_guard(main)
