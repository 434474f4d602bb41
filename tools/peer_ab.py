"""Paired A/B of nanodepth's plain path (GPT(cfg) with the gpt2 block and loss_chunk 0) against
nanoGPT's own model.py, step by step, alternating which goes first: each pair's speed ratio is
taken over a few seconds, so a machine whose speed drifts (other jobs on the cores) moves both
alike. bench.py --train measures whole rounds, which such drift blurs. Run from the repo root:
    python tools/peer_ab.py --nanogpt path/to/nanoGPT/model.py [--pairs 30]"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench  # noqa: E402

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--nanogpt", required=True, help="nanoGPT's model.py (a checkout of karpathy/nanoGPT)")
p.add_argument("--pairs", type=int, default=30, help="timed step pairs")
p.add_argument("--n_layer", type=int, default=4, help="depth")
p.add_argument("--batch_size", type=int, default=8, help="sequences per step")
p.add_argument("--block_size", type=int, default=256, help="context")
p.add_argument("--device", default="cpu", help="cpu or cuda")
a = p.parse_args()
ours, _ = bench.nanogpt_step(a, a.device)
theirs = bench.nanogpt_own_step(a, a.device)
for _ in range(3):
    ours(), theirs()
times = {"nanodepth": [], "nanoGPT": []}
for i in range(a.pairs):
    for name, step in (("nanodepth", ours), ("nanoGPT", theirs))[::1 if i % 2 == 0 else -1]:
        bench.sync(a.device)
        t = time.perf_counter()
        step()
        bench.sync(a.device)
        times[name].append(time.perf_counter() - t)
ratio = [b / o for o, b in zip(times["nanodepth"], times["nanoGPT"])]  # > 1: nanodepth faster
q = statistics.quantiles(ratio, n=4)
tokens = a.batch_size * a.block_size
print(f"nanodepth plain {tokens / statistics.median(times['nanodepth']):,.0f} tokens/s, nanoGPT "
      f"{tokens / statistics.median(times['nanoGPT']):,.0f}; speed ratio nanodepth/nanoGPT, median of "
      f"{a.pairs} pairs: {statistics.median(ratio):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f})")
