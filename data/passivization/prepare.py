"""English passivization (Mueller et al. 2022): an active sentence and a task token (`decl`:
copy it, `passiv`: passivize it). gen holds passives of subjects with a prepositional phrase,
a structure never passivized in training. The category of each example is its task token.

    python data/passivization/prepare.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, prepare_pairs, task_main, task_token_fields  # noqa: E402

URL = ("https://raw.githubusercontent.com/sebschu/multilingual-transformations/"
       "e848833f2df7674022ef02e2b649482d23ade7a7/data/passiv_en_nps/")
FILES = {  # split: (file, sha256 of the upstream file at that commit)
    "train": ("passiv_en_nps.train", "45ade8e0bea11b064c709a65bc9f195a9719751e9f7a67e349a75a49d3e9936a"),
    "dev": ("passiv_en_nps.dev", "e2024b0c6030957df2049329d42e9fc3dce8d8c9d0d7bca22a0940b19c747db7"),
    "test": ("passiv_en_nps.test", "3d51ce92e274c4745eab84ba4f21391f8a6f88fcf2ab63d14ec765455f5bf4d9"),
    "gen": ("passiv_en_nps.gen", "f3bae2fa6349038179828515be30eb8778e6de0a93ae443c0b4c220ecd71c902"),
}


def prepare(out_dir=DATA / "passivization"):
    return prepare_pairs("passivization", URL, FILES, task_token_fields(("decl", "passiv")), out_dir)


if __name__ == "__main__":
    task_main(__doc__, "passivization", prepare)
