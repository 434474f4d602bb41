"""English question formation (Mueller et al. 2022, after McCoy et al. 2020): a declarative and
a task token (`decl`: copy, `quest`: form the yes/no question). gen holds sentences whose subject
has a relative clause, where moving the first auxiliary is wrong (not in the paper; an extra).

    python data/question_formation/prepare.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, prepare_pairs, task_main, task_token_fields  # noqa: E402

URL = ("https://raw.githubusercontent.com/sebschu/multilingual-transformations/"
       "e848833f2df7674022ef02e2b649482d23ade7a7/data/question_have-havent_en/")
FILES = {  # split: (file, sha256 of the upstream file at that commit)
    "train": ("question_have.train", "06d95e7ae0f43ec612bc84c89b9c8bfea789d57d28ce844d5adf85f6efc4833a"),
    "dev": ("question_have.dev", "86377cfb304710c81832c0e5edf632a4c28177537498dee3cdc951d8d8341529"),
    "test": ("question_have.test", "4fc309dab2542dff7f0117b3e3d255eec963e4f86161c60e3eddbe8200505193"),
    "gen": ("question_have.gen", "550b5df65ae27a2a1c5ea4b191a015180788fe0ce30da7df1e63cd327044a93a"),
}


def prepare(out_dir=DATA / "question_formation"):
    return prepare_pairs("question_formation", URL, FILES, task_token_fields(("decl", "quest")), out_dir)


if __name__ == "__main__":
    task_main(__doc__, "question_formation", prepare)
