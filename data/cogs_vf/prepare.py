"""COGS, variable-free logical forms (Qiu et al. 2022), as converted upstream in ReCOGS's
variable_free/ folder: the same sentences and categories as COGS, nested-call targets; the 143
`primitive` training rows get the word itself as target, as Qiu et al.'s own preprocessing does.

    python data/cogs_vf/prepare.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch import DATA, prepare_pairs, task_main, tsv_fields  # noqa: E402

URL = "https://raw.githubusercontent.com/frankaging/ReCOGS/1b6eca8ff4dca5fd2fb284a7d470998af5083beb/variable_free/"
FILES = {  # split: (file, sha256 of the upstream file at that commit)
    "train": ("train.tsv", "0d8429b2db4c9fd216ce2a80ca6ee20861f331f9d4ce6086b565dcbde7c2791d"),
    "dev": ("dev.tsv", "8fe6a76e2a3b0ebf26aff1e899076956c16f87396374a729dad439669b05b429"),
    "test": ("test.tsv", "b312353b6f40fcd870dc2c75b70da8ea25bf32134884e9da2c9c98306e17b9d1"),
    "gen": ("gen.tsv", "ce0be5c1e70139301b7cc77e6b94e7b23af0ae3db921ce935d2524fe68070159"),
}


def qiu_fields(line):
    """Qiu et al.'s preprocessing: a `primitive` training row (a lone word) has the word itself as
    its target. The ReCOGS files keep COGS's LAMBDA form there, which is not a variable-free form
    and leaves the five prim_to_* generalization categories without the exposure they test."""
    src, tgt, cat = tsv_fields(3)(line)
    return src, (src if cat == "primitive" else tgt), cat


def prepare(out_dir=DATA / "cogs_vf"):
    return prepare_pairs("cogs_vf", URL, FILES, qiu_fields, out_dir)


if __name__ == "__main__":
    task_main(__doc__, "cogs_vf", prepare)
