"""
Speed and memory, measured (never asserted by tests).

By depth, for one class (the paper's practical claim: latency grows about linearly with depth):
    python bench.py --model_class tiny --depths 1,2,4,6
  training tokens/s, forward FLOPs per token, MFU, decode latency per token at batch 1 and at
  --decode_batch, peak memory.

Training against peers at the same shapes, interleaved in one process:
    python bench.py --train [--n_layer 4 --batch_size 8 --block_size 256]
  this machine's matmul peak (fp32, bf16), then tokens/s, MFU and peak memory of nanodepth
  (train.py's defaults, fp32 and bf16), nanodepth's gpt2 block trained as nanoGPT trains its
  model (whole logits, then cross-entropy, fp32: nanoGPT's model and loss in nanodepth's code,
  not nanoGPT itself), and transformers' GPT2LMHeadModel (fp32, AdamW) when transformers is installed.

Fine-tuning, the study's recipe on COGS-vf, interleaved in one process:
    python bench.py --finetune [--depths 1,2,6 --batch_size 128]
  examples/s of the old path (GPT-2's 50,257-token vocabulary, random padded batches, fp32) and
  of the new ones (the task's vocabulary, length-bucketed or packed batches) in each --dtypes, the
  padding each path's batches carry, and the check that the cut model computes the same loss
  (the full model's logits restricted to the task's tokens); ends `finetune speedup at depth 2`.

Evaluation decoding, with and without the KV cache, on COGS gen:
    python bench.py --eval --ckpt out-finetune/ckpt.pt --limit 500

Each mode prints a table and writes a JSON file (--out).
"""
import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

import torch

from common import (Parser, UserError, autocast, code_version, cpu_bf16, integer, keep_freed_memory, main_guard,
                    parse_int_list, pick_device, save_figure, write_atomic)
import tasks
from corpus import ensure_prepared, eval_windows, get_batch, load_corpus
from model import BLOCKS, GPT, MODEL_CLASSES, GPTConfig, config_for, count_params
from trainer import lr_at, make_optimizer


def get_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--train", action="store_true", help="compare training speed with nanodepth's gpt2 block and whole-logits "
      "loss, and transformers' GPT2LMHeadModel")
    a("--eval", action="store_true", help="decoding speed with and without the KV cache on COGS gen")
    a("--finetune", action="store_true", help="fine-tuning examples/s, the old path against the new defaults")
    a("--model_class", default="tiny", choices=tuple(MODEL_CLASSES), help="size class")
    a("--depths", default="1,2,4,6", help="depths for the by-depth table")
    a("--n_layer", type=integer(1), default=4, help="depth for --train")
    a("--block", default="paper", choices=BLOCKS, help="paper or gpt2")
    a("--batch_size", type=integer(0), default=0, help="sequences per training step (0: 8, --finetune 128)")
    a("--block_size", type=integer(2), default=256, help="context length")
    a("--vocab_size", type=integer(257), default=50257, help="by-depth table: a prefix of GPT-2's BPE of this "
      "many tokens (train.py --vocab_size)")
    a("--steps", type=integer(1), default=10, help="timed training steps per measurement (after 3 warm-up steps)")
    a("--rounds", type=integer(0), default=3, help="--train: interleaved rounds; the median is reported "
      "(0 with --curve: the loss curves only)")
    a("--decode_batch", type=integer(1), default=64, help="the large batch for decode latency")
    a("--decode_tokens", type=integer(1), default=64, help="tokens generated per decode measurement")
    a("--dtypes", default="float32,bfloat16", help="precisions to measure")
    a("--curve", type=integer(0), default=0, help="--train: also train nanodepth and the peers for N steps on "
      "TinyStories with the same batches and schedule, and compare their loss curves")
    a("--no_peers", action="store_true", help="--train: measure nanodepth only")
    a("--nanogpt", default="", help="--train: also nanoGPT's own model.py, from this path (a checkout of "
      "karpathy/nanoGPT)")
    a("--ckpt", default="", help="--eval: a fine-tuned checkpoint (default: a random tiny model)")
    a("--limit", type=integer(1), default=500, help="--eval: COGS gen examples")
    a("--device", default="auto", help="auto, cpu or cuda")
    a("--compile", action="store_true", help="also measure with torch.compile")
    a("--out", default="", help="JSON file for the results (default: bench_<mode>.json)")
    return p.parse_args(argv)


# --- measuring tools ---------------------------------------------------------------------------------

def reset_peak(device):
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        try:  # Linux: writing 5 resets the process's peak resident set size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_mb(device):
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # whole process, on CPU
    return float("nan")


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device, dtype, reps=10):
    """Achieved FLOP/s of an n x n x n matmul: the machine's practical peak for MFU."""
    n = 8192 if device.startswith("cuda") else 2048
    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def train_steps(step, steps, tokens, device):
    """tokens/s of `steps` calls of step() after 3 warm-up calls."""
    for _ in range(3):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * tokens / (time.perf_counter() - t)


def nanodepth_step(cfg, args, device, dtype, compile_=False):
    model = GPT(cfg).to(device)
    opt = make_optimizer(model, device, "adamw", 1e-3)
    fwd = torch.compile(model) if compile_ else model
    x = torch.randint(0, cfg.vocab_size, (args.batch_size, args.block_size), device=device)
    y = torch.randint(0, cfg.vocab_size, (args.batch_size, args.block_size), device=device)

    def step():
        with autocast(device, dtype):
            loss = fwd(x, targets=y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


PEER_VOCAB = 50304  # nanoGPT's default: GPT-2's 50,257 padded to a multiple of 64


def nanogpt_step(args, device):
    """nanoGPT's model and loss in nanodepth's code: the gpt2 block, all logits, cross-entropy, fp32:
    GPT(cfg) on its plain path (loss_chunk 0), the path a student reads."""
    cfg = GPTConfig(n_layer=args.n_layer, n_head=2, d_model=128, d_ff=512, block="gpt2",
                    block_size=args.block_size, loss_chunk=0, vocab_size=PEER_VOCAB)
    model = GPT(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, cfg.vocab_size, (args.batch_size, args.block_size), device=device)

    def step():
        loss = model(x, targets=x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step, cfg


def nanogpt_own_step(args, device):
    """nanoGPT's own model.py (--nanogpt: a file from a checkout of karpathy/nanoGPT, read here and
    never copied into the project) at the same shapes, trained as its train.py trains it."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", args.nanogpt)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.GPT(mod.GPTConfig(block_size=args.block_size, vocab_size=PEER_VOCAB, n_layer=args.n_layer,
                                  n_head=2, n_embd=128, dropout=0.0, bias=True)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, PEER_VOCAB, (args.batch_size, args.block_size), device=device)

    def step():
        _, loss = model(x, targets=x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def hf_step(args, device):
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    cfg = GPT2Config(n_layer=args.n_layer, n_embd=128, n_head=2, n_positions=args.block_size, vocab_size=PEER_VOCAB)
    model = GPT2LMHeadModel(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, PEER_VOCAB, (args.batch_size, args.block_size), device=device)

    def step():
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


# --- modes -------------------------------------------------------------------------------------------

def bench_train(args, device):
    cfg = config_for(args.model_class, args.n_layer, block=args.block, block_size=args.block_size, quiet=True)
    if args.rounds == 0:  # loss curves only
        return {"curves": loss_curves(args, device, cfg)}
    tokens = args.batch_size * args.block_size
    dtypes = args.dtypes.split(",")
    peaks = {dt: matmul_peak(device, dt) for dt in dtypes}
    contenders = {f"nanodepth {dt}": (nanodepth_step(cfg, args, device, dt), cfg, dt) for dt in dtypes}
    if args.compile:
        contenders["nanodepth float32 compiled"] = (nanodepth_step(cfg, args, device, "float32", True), cfg,
                                                    "float32")
    if not args.no_peers:
        ng_step, ng_cfg = nanogpt_step(args, device)
        contenders["gpt2 block, whole logits float32"] = (ng_step, ng_cfg, "float32")
        if args.nanogpt:
            contenders["nanoGPT's own model.py float32"] = (nanogpt_own_step(args, device), ng_cfg, "float32")
        hf = hf_step(args, device)
        if hf is not None:
            contenders["transformers GPT2LMHeadModel float32"] = (hf, ng_cfg, "float32")
    speeds = {k: [] for k in contenders}
    mem = {}
    for _ in range(args.rounds):  # interleaved, so drift in the machine's speed hits all alike
        for k, (step, _, _) in contenders.items():
            reset_peak(device)
            speeds[k].append(train_steps(step, args.steps, tokens, device))
            mem[k] = max(mem.get(k, 0), peak_mb(device))
    rows = []
    for k, (_, c, dt) in contenders.items():
        tps = statistics.median(speeds[k])
        flops = 3 * count_params(c, args.block_size)["forward_flops_per_token"]  # forward + backward
        rows.append({"model": k, "d_ff": c.d_ff, "tokens_per_s": tps, "mfu": tps * flops / peaks[dt],
                     "mfu_against": dt, "peak_mem_mb": mem[k], "all_rounds": speeds[k]})
    base = [r for r in rows if r["model"].startswith(("transformers", "nanoGPT"))]
    print(f"matmul peak: " + ", ".join(f"{dt} {p / 1e9:.0f} GFLOP/s" for dt, p in peaks.items())
          + f" (CPU bf16: {cpu_bf16() or 'none'})")
    print(f"{'model':<40} {'d_ff':>5} {'tokens/s':>9} {'MFU':>6} {'peak MB':>8}" +
          "".join(f" {'x ' + b['model'].split()[0]:>14}" for b in base))
    for r in rows:
        print(f"{r['model']:<40} {r['d_ff']:>5} {r['tokens_per_s']:>9,.0f} {100 * r['mfu']:>5.1f}% "
              f"{r['peak_mem_mb']:>8,.0f}" + "".join(f" {r['tokens_per_s'] / b['tokens_per_s']:>14.2f}"
                                                     for b in base))
    result = {"matmul_peak_flops": peaks, "rows": rows}
    if args.curve:
        result["curves"] = loss_curves(args, device, cfg)
    return result


def loss_curves(args, device, cfg):
    """nanodepth (train.py's defaults) and transformers' GPT-2 (if installed) trained on the same
    TinyStories batches with the same AdamW schedule; train loss every 25 steps, val loss at the end."""
    train_data, val_data, _ = load_corpus("tinystories", ensure_prepared("tinystories"), args.block_size)
    val_batches = eval_windows(val_data, args.block_size, 160, 8)
    models = {"nanodepth": GPT(cfg).to(device)}
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
        models["transformers GPT2LMHeadModel"] = GPT2LMHeadModel(GPT2Config(
            n_layer=args.n_layer, n_embd=128, n_head=2, n_positions=args.block_size, vocab_size=50257)).to(device)
    except ImportError:
        pass

    def loss_of(name, m, x, y):
        if name == "nanodepth":
            return m(x, targets=y)
        return m(input_ids=x, labels=x).loss  # shifts inside: the same next-token targets

    curves = {}
    for name, m in models.items():
        opt = make_optimizer(m, device, "adamw", 2e-3)
        gen = torch.Generator().manual_seed(0)
        pts, t0 = [], time.perf_counter()
        for it in range(args.curve):
            for g in opt.param_groups:
                g["lr"] = lr_at(it, 2e-3, 2e-4, 100, args.curve)
            x, y = get_batch(train_data, args.batch_size, args.block_size, gen)
            loss = loss_of(name, m, x.to(device), y.to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if (it + 1) % 25 == 0:
                pts.append((it + 1, loss.item()))
        secs = time.perf_counter() - t0
        m.eval()
        with torch.no_grad():
            val = statistics.fmean(loss_of(name, m, x.to(device), y.to(device)).item() for x, y in val_batches)
        curves[name] = {"train_loss": pts, "val_loss": val, "seconds": secs}
        print(f"{name}: {args.curve} steps in {secs:.0f} s, final train loss {pts[-1][1]:.3f}, val loss {val:.3f}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, c in curves.items():
        ax.plot(*zip(*c["train_loss"]), label=f"{name} (val {c['val_loss']:.2f})")
    ax.set_xlabel(f"step ({args.batch_size} x {args.block_size} tokens)")
    ax.set_ylabel("train loss")
    ax.set_title("TinyStories, same batches and schedule")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, Path(args.out or "bench_train.json").with_suffix(".png"))
    return curves


def bench_depths(args, device):
    dtypes = args.dtypes.split(",")
    peaks = {dt: matmul_peak(device, dt) for dt in dtypes}
    rows = []
    for n in args.depth_list:
        cfg = config_for(args.model_class, n, block=args.block, block_size=args.block_size, quiet=True,
                         vocab_size=args.vocab_size)
        fl = count_params(cfg, args.block_size)["forward_flops_per_token"]
        row = {"n_layer": n, "d_ff": cfg.d_ff, "forward_flops_per_token": fl}
        for dt in dtypes:
            for compiled in (False, True) if args.compile else (False,):
                name = dt + ("_compiled" if compiled else "")
                reset_peak(device)
                tps = train_steps(nanodepth_step(cfg, args, device, dt, compiled), args.steps,
                                  args.batch_size * args.block_size, device)
                row[f"train_tokens_per_s_{name}"] = tps
                row[f"mfu_{name}"] = tps * 3 * fl / peaks[dt]
                row[f"train_peak_mem_mb_{name}"] = peak_mb(device)
                print(f"  n_layer {n} {name}: {tps:,.0f} tokens/s, MFU {row[f'mfu_{name}']:.1%}", flush=True)
        model = GPT(cfg).to(device).eval()
        for b in (1, args.decode_batch):
            prompt = torch.randint(0, cfg.vocab_size - 1, (b, 16), device=device)
            tasks.generate(model, prompt, 4, eos_id=-1)  # warm-up
            sync(device)
            t = time.perf_counter()
            tasks.generate(model, prompt, args.decode_tokens, eos_id=-1)
            sync(device)
            row[f"decode_ms_per_token_batch{b}"] = 1000 * (time.perf_counter() - t) / args.decode_tokens
        rows.append(row)
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(f"{r[k]:,.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys))
    return {"matmul_peak_flops": peaks, "rows": rows}


def finetune_paths(args):
    """COGS-vf's training examples and batches for the old path and the new defaults."""
    ensure_prepared("cogs_vf")
    rows = {s: tasks.read_pairs("cogs_vf", s) for s in ("train", "dev", "test", "gen")}
    paths = {}
    for name, kind, how in (("old: gpt2 vocab, random", "gpt2", "random"),
                            ("new: task vocab, bucketed", "task", "bucketed"),
                            ("new: task vocab, packed", "task", "packed")):
        vocab = tasks.Vocab.build(kind, [r for split in rows.values() for r in split])
        train = tasks.encode_rows(rows["train"], vocab, "cogs_vf train")
        paths[name] = (vocab, train, tasks.Batches(train, args.batch_size, vocab.eot, how))
    return paths


def finetune_step(cfg, batches, device, dtype):
    """One step of the study's fine-tuning recipe (Adafactor 1e-2, z-loss 1e-4, clip 1) on batches
    drawn as the run draws them; a fixed data seed, so every contender sees its own same batches."""
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    opt = make_optimizer(model, device, "adafactor", 1e-2)
    gen = torch.Generator().manual_seed(0)

    def step():
        x, y, *packed = (t.to(device) for t in batches(gen))
        with autocast(device, dtype):
            loss = model(x, targets=y, z_loss=1e-4, segments=packed[0] if packed else None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def same_loss(old_vocab, new_vocab, train, device):
    """The cut model is the full one restricted to the task's tokens: the full model's layers, its
    embedding and head rows of those tokens. Returns |its loss - the full model's cross-entropy over
    the same logits columns| on one batch (the same examples in either numbering)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    full = GPT(config_for("tiny", 2, block_size=128, tie_embeddings=0, loss_chunk=0, quiet=True)).eval()
    cut = GPT(config_for("tiny", 2, block_size=128, tie_embeddings=0, loss_chunk=0, quiet=True,
                                 vocab="task", tokens=new_vocab.tokens)).eval()
    state = full.state_dict()
    keep = torch.tensor(new_vocab.tokens)
    state["wte.weight"], state["lm_head.weight"] = state["wte.weight"][keep], state["lm_head.weight"][keep]
    cut.load_state_dict(state)
    rows = [(e.source, e.target, e.category) for e in train[:64]]
    x_old, y_old = tasks.train_batch(tasks.encode_rows(rows, old_vocab, "check"), old_vocab.eot)
    x_new, y_new = tasks.train_batch(tasks.encode_rows(rows, new_vocab, "check"), new_vocab.eot)
    with torch.no_grad():
        logits = full(x_old)[..., keep]  # the full model's logits, restricted to the task's tokens
        ref = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y_new.reshape(-1), ignore_index=-1)
        return abs(cut(x_new, targets=y_new).item() - ref.item())


def padding(batches, n=50):
    """Share of the positions of n drawn batches that are padding. x holds each sequence but its
    last token (EOT), so EOT in x is padding alone."""
    gen = torch.Generator().manual_seed(0)
    xs = [batches(gen)[0] for _ in range(n)]
    return sum((x == batches.pad_id).sum().item() for x in xs) / sum(x.numel() for x in xs)


def bench_finetune(args, device):
    paths = finetune_paths(args)
    old, new = list(paths.values())[:2]
    need = max(len(e.prompt) + len(e.answer) for _, train, _ in paths.values() for e in train)
    dtypes = args.dtypes.split(",")
    check = same_loss(old[0], new[0], new[1], device)
    contenders = {}
    for n in args.depth_list:
        for name, (vocab, _, batches) in paths.items():
            kw = {"vocab": "task", "tokens": vocab.tokens} if vocab.kind != "gpt2" else {}
            cfg = config_for(args.model_class, n, block_size=need + 8, tie_embeddings=0, quiet=True, **kw)
            for dt in (["float32"] if name.startswith("old") else dtypes):
                contenders[n, f"{name}, {dt}"] = finetune_step(cfg, batches, device, dt)
    speeds = {k: [] for k in contenders}
    for _ in range(max(args.rounds, 1)):  # interleaved, so drift in the machine's speed hits all alike
        for k, step in contenders.items():
            speeds[k].append(train_steps(step, args.steps, args.batch_size, device))
    rows = [{"n_layer": n, "path": name, "examples_per_s": statistics.median(speeds[n, name]),
             "all_rounds": speeds[n, name]} for n, name in contenders]
    base = {r["n_layer"]: r["examples_per_s"] for r in rows if r["path"].startswith("old")}
    for r in rows:
        r["speedup"] = r["examples_per_s"] / base[r["n_layer"]]
    pads = {name: padding(b) for name, (_, _, b) in paths.items()}
    print(f"COGS-vf fine-tuning, batch {args.batch_size}, {torch.get_num_threads()} thread(s), "
          f"CPU bf16: {cpu_bf16() or 'none'}; "
          f"vocabulary {old[0].size:,} -> {new[0].size:,} tokens; padding " +
          ", ".join(f"{k.split(', ')[-1]} {100 * v:.0f}%" for k, v in pads.items()))
    print(f"same loss: |cut model - full model over the task's logits| = {check:.2e} on 64 examples")
    print(f"{'depth':>5} {'path':<40} {'examples/s':>10} {'speedup':>8}")
    for r in rows:
        print(f"{r['n_layer']:>5} {r['path']:<40} {r['examples_per_s']:>10,.1f} {r['speedup']:>7.2f}x")
    best = {n: max(r["speedup"] for r in rows if r["n_layer"] == n and r["path"].startswith("new"))
            for n in args.depth_list}
    if 2 in best:
        print(f"finetune speedup at depth 2: {best[2]:.2f}x")
    return {"rows": rows, "padding": pads, "same_loss_abs_diff": check, "speedup": best,
            "vocab_sizes": {k: v[0].size for k, v in paths.items()}, "cpu_bf16": cpu_bf16()}


def bench_eval(args, device):
    import random

    from checkpoint import load_model
    ensure_prepared("cogs")
    gen = tasks.read_split("cogs", "gen")
    need = tasks.longest(gen)[1]
    if args.ckpt:
        model, _ = load_model(args.ckpt, device, context=need)
    else:
        model = GPT(config_for("tiny", 2, block_size=max(1024, need))).to(device).eval()
    examples = random.Random(0).sample(gen, min(args.limit, len(gen)))
    out = {}
    for cache in (True, False):
        t = time.perf_counter()
        preds = tasks.decode_examples(model, examples, batch_size=64, use_cache=cache)
        s = time.perf_counter() - t
        out["cache" if cache else "no_cache"] = {"seconds": s, "examples_per_s": len(examples) / s,
                                                 "predictions": preds}
    same = out["cache"]["predictions"] == out["no_cache"]["predictions"]
    speedup = out["no_cache"]["seconds"] / out["cache"]["seconds"]
    print(f"COGS gen, {len(examples)} examples: with KV cache {out['cache']['examples_per_s']:.1f} examples/s, "
          f"without {out['no_cache']['examples_per_s']:.1f} examples/s: {speedup:.1f}x; identical outputs: {same}")
    for v in out.values():
        del v["predictions"]
    return {"examples": len(examples), "speedup": speedup, "identical": same, **out}


def main(argv=None):
    args = get_args(argv)
    if args.train + args.eval + args.finetune > 1:
        raise UserError("choose one of --train, --eval and --finetune")
    try:  # every depth and the class checked before anything is measured
        args.depth_list = parse_int_list(args.depths, "--depths")
        for n in args.depth_list + [args.n_layer]:
            config_for(args.model_class, n, block=args.block, quiet=True)
    except ValueError as e:
        raise UserError(str(e)) from None
    device = pick_device(args.device)
    if device == "cpu":
        keep_freed_memory()  # as train.py does
    torch.manual_seed(0)
    mode = "train" if args.train else "eval" if args.eval else "finetune" if args.finetune else "depths"
    args.batch_size = args.batch_size or (128 if mode == "finetune" else 8)
    run = {"train": bench_train, "eval": bench_eval, "finetune": bench_finetune, "depths": bench_depths}[mode]
    result = run(args, device)
    result.update(config=vars(args), device=device, threads=torch.get_num_threads(), torch=torch.__version__,
                  code_version=code_version(), seed=0)
    if device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name()
    out = Path(args.out or f"bench_{mode}.json")
    write_atomic(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main_guard(main)
