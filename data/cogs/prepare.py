"""COGS (Kim & Linzen 2020): sentence -> logical form, 21 generalization categories in gen.

    python data/cogs/prepare.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, prepare_pairs, task_main, tsv_fields  # noqa: E402

URL = "https://raw.githubusercontent.com/najoungkim/COGS/165a7b669eade971fa47bf568a2e51925360fed8/data/"
FILES = {  # split: (file, sha256 of the upstream file at that commit)
    "train": ("train.tsv", "220b3804b562c0156ee986eff1bdd15c27e52142549362a64f57baf86e304c78"),
    "dev": ("dev.tsv", "ab66388a309c7ac1ad210c781a6a0ce12281a9ef24619a12422a752cef61bc21"),
    "test": ("test.tsv", "68f8e51e9f6d9cd22d64efe68dd21d7ea5ba327e9a2359481030161aea757035"),
    "gen": ("gen.tsv", "d013d9eee0bafc153f8decc85f42814ac97260f84964d980e1e2b84577b82361"),
}


def prepare(out_dir=DATA / "cogs"):
    return prepare_pairs("cogs", URL, FILES, tsv_fields(3), out_dir)


if __name__ == "__main__":
    task_main(__doc__, "cogs", prepare)
