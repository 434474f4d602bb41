"""Your own text files as a pretraining corpus. Documents are separated by <|endoftext|> if the
files have it, else by blank lines.

    python data/text/prepare.py --name mybooks --train a.txt b.txt --val c.txt
    python train.py --dataset mybooks
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, Parser, UserError, folder_to_write, main_guard, split_docs, write_corpus  # noqa: E402
from common import sha256_file  # noqa: E402


def read(files):
    docs, recs = [], []
    for f in files:
        f = Path(f)
        if not f.is_file():
            raise UserError(f"{f} not found; pass existing text files to --train and --val")
        docs += split_docs(f.read_text(encoding="utf-8", errors="replace"))
        recs.append({"file": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)})
    return docs, recs


def prepare(name, train, val, out_dir=None):
    if not name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"--name {name!r} must be letters, digits, '-' or '_'")
    (tr, r1), (va, r2) = read(train), read(val)
    return write_corpus(out_dir or DATA / name, name, {"train": tr, "val": va}, r1 + r2)


def main():
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="corpus name; train.py --dataset NAME uses it")
    p.add_argument("--train", nargs="+", required=True, help="text files for training")
    p.add_argument("--val", nargs="+", required=True, help="text files for validation")
    p.add_argument("--out_dir", default=None, help="default: data/NAME")
    a = p.parse_args()
    for f in a.train + a.val:
        if not Path(f).is_file():
            raise UserError(f"{f} is not a file; give text files to --train and --val")
    folder_to_write(a.out_dir or DATA / a.name, "--out_dir")
    prepare(a.name, a.train, a.val, a.out_dir)


if __name__ == "__main__":
    main_guard(main)
