import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
# Offline: tiktoken's GPT-2 files and the data mirror live in ../shared (see README).
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken_cache"))
os.environ.setdefault("NANODEPTH_MIRROR", str(SHARED / "data"))


def load_prepare(folder):
    """data/<folder>/prepare.py as a module (the folders are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"prep_{folder}", ROOT / "data" / folder / "prepare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """TinyStories sample from the mirror, prepared once into a temp folder."""
    d = tmp_path_factory.mktemp("tinystories")
    meta = load_prepare("tinystories").prepare(d)
    assert meta["train_tokens"] > 400_000 and meta["sources"][0]["sha256"]
    return d
