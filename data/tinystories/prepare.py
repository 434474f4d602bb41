"""TinyStories (Eldan & Li 2023), the default pretraining corpus: simple English whose vocabulary
overlaps COGS's. Downloads the first --max_mb of the upstream train file (the whole file is
2.2 GB) and the validation file, and writes GPT-2 token memmaps.

    python data/tinystories/prepare.py [--max_mb 200]

Offline: NANODEPTH_MIRROR=DIR reads DIR/tinystories/ (upstream names, or train.txt + valid.txt).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, Parser, Source, folder_to_write, main_guard, mirror_plain_text, real, split_docs, write_corpus  # noqa: E402,E501

BASE = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
# Upstream publishes no checksums and none could be fetched where this script was written
# (offline): meta.json records the sha256 of exactly what was read instead.
FILES = {"train": "TinyStoriesV2-GPT4-train.txt", "val": "TinyStoriesV2-GPT4-valid.txt"}


def prepare(out_dir=DATA / "tinystories", max_mb=200):
    sources = mirror_plain_text("tinystories")
    if sources is None:
        sources = tuple(Source("tinystories", FILES[s], BASE + FILES[s]) for s in ("train", "val"))
    splits, records = {}, []
    for split, src, cap in zip(("train", "val"), sources, (max_mb, None)):
        raw, rec = src.read_all(max_bytes=int(cap * 2**20) if cap else None)
        text = raw.decode("utf-8", errors="replace")
        if not rec["complete"]:  # drop the story cut in half by the size cap
            text = text[:text.rfind("<|endoftext|>")] if "<|endoftext|>" in text else text[:text.rfind("\n\n")]
        splits[split] = split_docs(text)
        records.append(rec)
    return write_corpus(out_dir, "tinystories", splits, records, max_mb=max_mb)


def main():
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default=str(DATA / "tinystories"), help="where train.bin, val.bin, meta.json go")
    p.add_argument("--max_mb", type=real(above=0), default=200, help="read at most this many MB of the train file")
    a = p.parse_args()
    folder_to_write(a.out_dir, "--out_dir")
    prepare(a.out_dir, a.max_mb)


if __name__ == "__main__":
    main_guard(main)
