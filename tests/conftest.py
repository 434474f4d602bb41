"""Shared test fixtures.

Data: the tests read upstream files through each data/<name>/prepare.py, from the offline mirror
when NANODEPTH_MIRROR is set (CI sets it to ../shared/data) and from the internet otherwise; a
test that needs data skips, saying why, when it has neither. tiktoken's GPT-2 files: offline,
set TIKTOKEN_CACHE_DIR (tiktoken's own convention)."""
import os
import socket
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from corpus import load_prepare  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402


@lru_cache(maxsize=None)
def data_unavailable():
    """Why data tests cannot run here, or "" when they can (a mirror, or the network)."""
    if os.environ.get("NANODEPTH_MIRROR"):
        return ""
    try:
        socket.create_connection(("raw.githubusercontent.com", 443), timeout=3).close()
        return ""
    except OSError:
        return "needs data: set NANODEPTH_MIRROR to a mirror (e.g. ../shared/data) or go online"


def pytest_runtest_setup(item):
    if item.get_closest_marker("data") and data_unavailable():
        pytest.skip(data_unavailable())


def small_model(block="paper", pos="", vocab=101, **kw):
    """A two-layer model small enough for exact comparisons, the same weights every call, built as
    the jobs build it (with the fused loss, loss_chunk=-1, unless told loss_chunk=0)."""
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, d_model=32, d_ff=40, vocab_size=vocab, block_size=64,
                         block=block, pos=pos, **kw))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """TinyStories sample, prepared once into a temp folder."""
    if data_unavailable():
        pytest.skip(data_unavailable())
    d = tmp_path_factory.mktemp("tinystories")
    meta = load_prepare("tinystories").prepare(d)
    assert meta["train_tokens"] > 400_000 and meta["sources"][0]["sha256"]
    return d
