"""Tiny Shakespeare (char-rnn's input.txt): the first 90% of characters for train, the rest val.

    python data/tinyshakespeare/prepare.py
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, Parser, Source, folder_to_write, main_guard, write_corpus  # noqa: E402

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def prepare(out_dir=DATA / "tinyshakespeare"):
    raw, rec = Source("tinyshakespeare", "input.txt", URL, SHA256).read_all()
    text = raw.decode("utf-8")
    cut = int(len(text) * 0.9)
    return write_corpus(out_dir, "tinyshakespeare", {"train": [text[:cut]], "val": [text[cut:]]}, [rec])


def main():
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default=str(DATA / "tinyshakespeare"), help="where the .bin files go")
    out_dir = p.parse_args().out_dir
    folder_to_write(out_dir, "--out_dir")
    prepare(out_dir)


if __name__ == "__main__":
    main_guard(main)
