import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
# Offline: tiktoken's GPT-2 files and the data mirror live in ../shared (see README).
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken_cache"))
os.environ.setdefault("NANODEPTH_MIRROR", str(SHARED / "data"))
