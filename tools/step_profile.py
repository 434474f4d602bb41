"""Where a 41M training step spends its GPU time: tokens/s for loss-chunk sizes, position schemes
and batch sizes (eager, bf16), then the profiler's top kernels for the default configuration.
Run from the repo root on a GPU: python tools/step_profile.py [--device cuda] [--model_class 41M]"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import nanodepth_step, train_steps  # noqa: E402
from model import config_for  # noqa: E402

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--device", default="cuda", help="cuda (or cpu for a dry run)")
p.add_argument("--model_class", default="41M", help="size class")
p.add_argument("--n_layer", type=int, default=2, help="depth")
p.add_argument("--block_size", type=int, default=1024, help="context")
p.add_argument("--batch_size", type=int, default=32, help="sequences per step")
p.add_argument("--steps", type=int, default=10, help="timed steps per variant")
a = p.parse_args()
dtype = "bfloat16"


def speed(batch_size=a.batch_size, compiled=False, **cfg_kw):
    cfg = config_for(a.model_class, a.n_layer, quiet=True, block_size=a.block_size, **cfg_kw)
    args = argparse.Namespace(batch_size=batch_size, block_size=a.block_size)
    tps = train_steps(nanodepth_step(cfg, args, a.device, dtype, compiled), a.steps, batch_size * a.block_size,
                      a.device)
    print(f"batch {batch_size:>3} {'compiled ' if compiled else ''}{cfg_kw}: {tps:,.0f} tokens/s", flush=True)


for chunk in (-1, 256, 0):  # -1: the default (8192 rows on a GPU)
    speed(loss_chunk=chunk)
speed(pos="rope")
speed(batch_size=2 * a.batch_size)
speed(compiled=True)

from torch.profiler import ProfilerActivity, profile  # noqa: E402
cfg = config_for(a.model_class, a.n_layer, quiet=True, block_size=a.block_size)
step = nanodepth_step(cfg, argparse.Namespace(batch_size=a.batch_size, block_size=a.block_size), a.device, dtype)
for _ in range(3):
    step()
acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device.startswith("cuda") else [])
with profile(activities=acts) as prof:
    for _ in range(3):
        step()
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
key = "cuda_time_total" if a.device.startswith("cuda") else "cpu_time_total"
print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))
