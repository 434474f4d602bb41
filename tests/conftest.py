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

import torch  # noqa: E402

from common import load_prepare  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402


def small_model(block="paper", pos="", vocab=101, **kw):
    """A two-layer model small enough for exact comparisons, the same weights every call."""
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, d_model=32, d_ff=40, vocab_size=vocab, block_size=64,
                         block=block, pos=pos, **kw))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """TinyStories sample from the mirror, prepared once into a temp folder."""
    d = tmp_path_factory.mktemp("tinystories")
    meta = load_prepare("tinystories").prepare(d)
    assert meta["train_tokens"] > 400_000 and meta["sources"][0]["sha256"]
    return d
