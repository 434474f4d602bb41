"""A/B training speed of this model.py against another version of it, interleaved in one process
(same GPU, same warm state). Run from the repo root:
    python tools/ab.py --old path/to/old_model.py [--depths 1,2,4,7] [--compile_depth 2]"""
import argparse
import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench  # noqa: E402
import model as new  # noqa: E402
from common import parse_int_list  # noqa: E402

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--old", required=True, help="the other model.py")
p.add_argument("--model_class", default="41M", help="size class")
p.add_argument("--depths", default="1,2,4,7", help="depths, eager")
p.add_argument("--compile_depth", type=int, default=2, help="one depth also measured compiled (0: none)")
p.add_argument("--batch_size", type=int, default=32, help="sequences per step")
p.add_argument("--block_size", type=int, default=1024, help="context")
p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (the best is kept)")
p.add_argument("--device", default="cuda", help="cuda (or cpu for a dry run)")
a = p.parse_args()
spec = importlib.util.spec_from_file_location("model_old", a.old)
old = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old)
args = argparse.Namespace(batch_size=a.batch_size, block_size=a.block_size)
dt = "bfloat16" if a.device.startswith("cuda") else "float32"


def tps(mod, n, compiled=False):
    bench.GPT = mod.GPT  # bench builds whatever GPT it is given
    cfg = mod.config_for(a.model_class, n, quiet=True, block_size=a.block_size)
    return bench.train_steps(bench.nanodepth_step(cfg, args, a.device, dt, compiled), a.steps,
                             a.batch_size * a.block_size, a.device)


cases = [(n, False) for n in parse_int_list(a.depths, "--depths")]
if a.compile_depth:
    cases.append((a.compile_depth, True))
for n, compiled in cases:
    best = {"old": 0.0, "new": 0.0}
    for _ in range(a.rounds if not compiled else 1):
        for name, mod in (("old", old), ("new", new)):
            best[name] = max(best[name], tps(mod, n, compiled))
    print(f"n_layer {n}{' compiled' if compiled else ''}: old {best['old']:,.0f}  new {best['new']:,.0f} "
          f"tokens/s  ({best['new'] / best['old']:.2f}x)", flush=True)
