"""Children's books from Project Gutenberg (219 public-domain books, 13.8M GPT-2 tokens for
training, 0.9M in 12 held-out whole books): 28 times the TinyStories sample, with most of COGS's
vocabulary (1,051 of its 1,110 GPT-2 ids appear in train.txt).

    NANODEPTH_MIRROR=DIR python data/gutenberg_children/prepare.py

The corpus is a cleaned selection, not a file that exists upstream: each book comes from the
GitHub repository rcdm-uga/Gutenberg_Text (commit a0b16d35a9851168ce9ac649851c17b7ab08d48e), named
with the sha1 of its git blob in books.tsv, and the cleaning (headers and footers cut, paragraphs
joined, near-duplicate editions dropped, whole books held out) is described step by step in the
corpus's SOURCE.md. This script reads the cleaned train.txt and valid.txt from a mirror and checks
them against the sha256 below; it does not rebuild them from the upstream books, so without
NANODEPTH_MIRROR it stops and says so.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, Source, UserError, mirror_dir, split_docs, task_main, write_corpus  # noqa: E402

FILES = {  # split: (file, sha256 of the cleaned file, as listed in the corpus's SHA256SUMS)
    "train": ("train.txt", "6c3786708a02ef1290fecb838ac86c9d12c3fa4ca2ca9b5606a6c486c9f34f87"),
    "val": ("valid.txt", "33dfbe531ec74794ed648d109cb991a63e6c73df2acc7c9c69a715074e0a9cd2"),
}


def prepare(out_dir=DATA / "gutenberg_children"):
    if mirror_dir("gutenberg_children") is None:
        raise UserError("gutenberg_children has no single upstream file to download; set NANODEPTH_MIRROR to "
                        "a folder holding gutenberg_children/train.txt and valid.txt (see this script's docstring)")
    splits, records = {}, []
    for split, (name, sha) in FILES.items():
        raw, rec = Source("gutenberg_children", name, None, sha).read_all()
        splits[split] = split_docs(raw.decode("utf-8"))  # one book per blank-line-separated block
        records.append(rec)
    return write_corpus(out_dir, "gutenberg_children", splits, records)


if __name__ == "__main__":
    task_main(__doc__, "gutenberg_children", prepare)
