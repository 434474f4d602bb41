"""
Pretrain a causal language model of one depth in a size class (model.py matches its parameters).

    python train.py --n_layer 4                       # tiny class on TinyStories, CPU-sized
    python train.py --model_class 41M --n_layer 4 --dataset c4 --block_size 1024
    torchrun --standalone --nproc_per_node=2 train.py --n_layer 4   # DDP across processes

Writes out_dir/ckpt.pt (atomic, resumable with --resume), out_dir/snapshots/ (every
--snapshot_interval steps, for the perplexity-matched control), out_dir/log.jsonl (every eval)
and out_dir/summary.json.
"""
import argparse
import gc
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common import (CKPT_FORMAT, ROOT, UserError, autocast, code_version, keep_freed_memory, load_checkpoint,
                    load_prepare, main_guard, parse_with_recipe, pick_device, pick_dtype, rng_state, save_atomic,
                    set_rng_state)
from model import GPT, GPTConfig, INITS, MODEL_CLASSES, REL_BIAS, config_for, count_params

PREPARABLE = ("tinystories", "tinyshakespeare", "c4", "gutenberg_children")
OPTIMIZERS = ("adamw", "adafactor")
RESUME_MAY_CHANGE = ("max_iters", "eval_interval", "snapshot_interval", "out_dir", "data_dir", "device",
                     "compile", "quiet", "max_minutes", "learning_rate", "min_lr", "grad_clip", "dtype")


def explicit_flags(argv):
    """Names of the flags given on the command line (not left at their defaults)."""
    argv = sys.argv[1:] if argv is None else argv
    return {a[2:].split("=")[0] for a in argv if a.startswith("--")}


def add_training_flags(p, **defaults):
    """Flags of the shared training loop (fit); pretraining and fine-tuning pass their defaults."""
    d = {"max_iters": 2000, "optimizer": "adafactor", "learning_rate": 1e-2, "lr_schedule": "constant",
         "min_lr": 1e-3, "warmup_iters": 0, "batch_size": 8, "eval_interval": 200, "out_dir": "out",
         "z_loss": 1e-4, **defaults}
    a = p.add_argument
    a("--batch_size", type=int, default=d["batch_size"], help="sequences per micro-batch (per process)")
    a("--gradient_accumulation_steps", type=int, default=1, help="micro-batches per optimizer step")
    a("--max_iters", type=int, default=d["max_iters"], help="optimizer steps")
    a("--max_minutes", type=float, default=0, help="stop after this much training time, a cosine learning rate "
      "decaying over it (0: no limit; a timed run is not bitwise reproducible)")
    a("--optimizer", default=d["optimizer"], choices=OPTIMIZERS, help="adamw, or adafactor as T5X ran it "
      "(factored second moments, update clipping, steps relative to each parameter's RMS, "
      "torch.optim.Adafactor)")
    a("--learning_rate", type=float, default=d["learning_rate"], help="peak learning rate (adafactor: "
      "its relative step, applied as min(lr, 1/sqrt(step)); T5X: 1e-2 pretraining, 1e-3 fine-tuning)")
    a("--lr_schedule", default=d["lr_schedule"], choices=("cosine", "constant"), help="cosine: warmup, then "
      "cosine decay to min_lr; constant: warmup, then learning_rate (with adafactor T5X's schedule)")
    a("--min_lr", type=float, default=d["min_lr"], help="learning rate at the end of the cosine decay")
    a("--warmup_iters", type=int, default=d["warmup_iters"], help="linear warmup steps")
    a("--weight_decay", type=float, default=0.1, help="AdamW weight decay on matrices and embeddings")
    a("--z_loss", type=float, default=d["z_loss"], help="weight of T5X's auxiliary log(Z)^2 loss (T5X: 1e-4)")
    a("--beta1", type=float, default=0.9, help="AdamW beta1")
    a("--beta2", type=float, default=0.95, help="AdamW beta2")
    a("--grad_clip", type=float, default=1.0, help="clip the gradient norm to this (0: off)")
    a("--seed", type=int, default=0, help="seed for initialisation and data order")
    a("--eval_interval", type=int, default=d["eval_interval"], help="steps between evals and checkpoints")
    a("--snapshot_interval", type=int, default=0, help="keep a weights snapshot every K steps (0: off)")
    a("--out_dir", default=d["out_dir"], help="where checkpoints and logs go")
    a("--resume", action="store_true", help="continue the run in out_dir from ckpt.pt")
    a("--overwrite", action="store_true", help="start afresh even if out_dir holds a checkpoint")
    a("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    a("--dtype", default="auto", help="auto (bf16 on CUDA and on AMX CPUs, else fp32), float32, bfloat16")
    a("--compile", action="store_true", help="torch.compile the model")
    a("--quiet", action="store_true", help="no progress bar")


def add_model_flags(p):
    """Flags that choose a fresh model of one depth in a size class."""
    a = p.add_argument
    a("--model_class", default="tiny", help=f"size class: {', '.join(MODEL_CLASSES)}")
    a("--n_layer", type=int, default=2, help="depth; d_ff is solved so every depth has the class's size")
    a("--block", default="paper", help="paper (T5X decoder-only) or gpt2 (nanoGPT's block)")
    a("--pos", default="", help="position scheme: t5, learned or rope (default: the block's own)")
    a("--dropout", type=float, default=0.0, help="dropout on residual branches (the paper: 0 in "
      "pretraining, 0.1 in fine-tuning)")
    a("--rel_bias", default="per_layer", choices=REL_BIAS, help="T5 bias tables: one per layer (T5X at "
      "the paper's time) or one shared by all layers")
    a("--init", default="", choices=("",) + INITS, help="initialisation: t5x (fan-in) or gpt2 "
      "(N(0, 0.02)); default: the block's own")
    a("--tie_embeddings", type=int, default=-1, choices=(-1, 0, 1), help="1: the output head is the "
      "input embedding; 0: untied (the paper); -1: the block's own")
    a("--loss_chunk", type=int, default=-1,
      help="tokens per chunk of the output head + loss (0: whole logits; -1: 256 on CPU, 8192 on GPU)")


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(p)
    a = p.add_argument
    a("--dataset", default="tinystories", help="corpus under data/: tinystories, tinyshakespeare, c4, "
      "or a name prepared with data/text/prepare.py")
    a("--data_dir", default="", help="folder with train.bin/val.bin (default: data/DATASET)")
    a("--block_size", type=int, default=256, help="context length in tokens")
    a("--eval_iters", type=int, default=20, help="validation batches per eval (fixed windows)")
    add_training_flags(p)
    return parse_with_recipe(p, argv, "pretrain")


# --- data ---------------------------------------------------------------------------------------

def prepare_corpus(name, data_dir):
    """Prepare a known corpus on first use, through its own data/<name>/prepare.py."""
    print(f"{name} is not prepared yet; preparing it with data/{name}/prepare.py")
    load_prepare(name).prepare(data_dir)


def load_corpus(args):
    data_dir = Path(args.data_dir) if args.data_dir else ROOT / "data" / args.dataset
    if not (data_dir / "train.bin").is_file():
        if args.data_dir or args.dataset not in PREPARABLE:
            raise UserError(f"no prepared corpus at {data_dir}; choose --dataset from "
                            f"{', '.join(PREPARABLE)}, or prepare your own with "
                            f"data/text/prepare.py --name {args.dataset} --train FILE --val FILE")
        prepare_corpus(args.dataset, data_dir)
    meta = json.loads((data_dir / "meta.json").read_text()) if (data_dir / "meta.json").is_file() else {}
    train = np.memmap(data_dir / "train.bin", dtype=np.uint16, mode="r")
    val = np.memmap(data_dir / "val.bin", dtype=np.uint16, mode="r")
    for split, arr in (("train", train), ("val", val)):
        if len(arr) <= args.block_size + 1:
            raise UserError(f"{data_dir}/{split}.bin has {len(arr)} tokens, fewer than --block_size + 2")
    return train, val, meta


def get_batch(data, batch_size, block_size, gen, rank=0, world=1):
    """Random windows from this process's share of the tokens (DDP: one contiguous part each)."""
    part = len(data) // world
    lo = rank * part
    ix = torch.randint(part - block_size - 1, (batch_size,), generator=gen) + lo
    x = torch.from_numpy(np.stack([data[i:i + block_size] for i in ix.tolist()]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[i + 1:i + 1 + block_size] for i in ix.tolist()]).astype(np.int64))
    return x, y


def eval_windows(data, block_size, n):
    """The same n non-overlapping windows every eval, so losses are comparable across steps and depths."""
    n = min(n, (len(data) - 1) // block_size)
    starts = np.linspace(0, len(data) - block_size - 1, n).astype(np.int64)
    x = np.stack([data[s:s + block_size] for s in starts]).astype(np.int64)
    y = np.stack([data[s + 1:s + 1 + block_size] for s in starts]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


@torch.no_grad()
def evaluate_loss(model, x, y, batch_size):
    """Mean loss over fixed windows (the caller sets eval mode and precision)."""
    device = next(model.parameters()).device
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        total += model(xb, targets=yb).item() * len(xb)
    return total / len(x)


# --- optimisation -------------------------------------------------------------------------------

def lr_at(it, args, time_frac=0.0):
    """Linear warmup, then cosine decay to min_lr at max_iters (or at the end of --max_minutes,
    whichever comes first), or constant."""
    if it < args.warmup_iters:
        return args.learning_rate * (it + 1) / args.warmup_iters
    if args.lr_schedule == "constant":
        return args.learning_rate
    frac = min(1.0, max(time_frac, (it - args.warmup_iters) / max(1, args.max_iters - args.warmup_iters)))
    return args.min_lr + 0.5 * (1 + math.cos(math.pi * frac)) * (args.learning_rate - args.min_lr)


def make_optimizer(model, args, device):
    """AdamW (matrices and embeddings decay, norms and biases do not; fused on CUDA, foreach on CPU),
    or Adafactor as T5X ran it: torch's takes steps of min(lr, 1/sqrt(t)) * max(1e-3, RMS(param)),
    T5X's rule (decay exponent 0.8, update clipping 1, no momentum, no weight decay)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "adafactor":
        return torch.optim.Adafactor(params, lr=args.learning_rate, beta2_decay=-0.8, d=1.0,
                                     weight_decay=0.0, foreach=not device.startswith("mps"))
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fast = {"fused": True} if device.startswith("cuda") else {"foreach": True}
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.beta1, args.beta2), **fast)


# --- the run ------------------------------------------------------------------------------------

def check_args(args):
    for name in ("n_layer", "block_size", "batch_size", "gradient_accumulation_steps", "max_iters",
                 "eval_interval", "eval_iters", "eval_examples"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; choose one")


def build_config(args, block_size=None):
    try:
        return config_for(args.model_class, args.n_layer, block=args.block, pos=args.pos,
                          block_size=block_size or args.block_size, dropout=args.dropout,
                          loss_chunk=args.loss_chunk, rel_bias=args.rel_bias, init=args.init,
                          tie_embeddings=args.tie_embeddings)
    except ValueError as e:
        raise UserError(str(e)) from None


class Job:
    """What a kind of training supplies to fit(): made once the run's settings are final.
    config: GPTConfig for a fresh run; init(model): load starting weights (fresh runs only);
    batch(gen, rank, world) -> (x, y) with y = -1 where no loss; evaluate(model) -> dict with
    val_loss; data: provenance (name and sha256) for every result file."""

    def __init__(self, config, batch, evaluate, data, init=None, describe=""):
        self.config, self.batch, self.evaluate, self.data = config, batch, evaluate, data
        self.init, self.describe = init, describe


def setup_processes(args):
    """Rank, world size and device; torchrun sets RANK and WORLD_SIZE."""
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if ddp else (0, 1)
    device = pick_device(args.device)
    if ddp:
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return rank, world, device


def fit(args, argv, kind, make_job):
    """The training loop shared by pretraining and fine-tuning: checkpoints, exact resume,
    snapshots, evals, NaN guard, DDP. make_job(args, rank, world, resumed_config or None) -> Job."""
    check_args(args)
    out = Path(args.out_dir)
    ckpt_path = out / "ckpt.pt"
    resume = None
    if args.resume:
        resume = load_checkpoint(ckpt_path, kind=kind)
        # the run continues with the settings it was started with, except these when given
        given = explicit_flags(argv)
        keep = {k: getattr(args, k) for k in RESUME_MAY_CHANGE if k in given or k in ("resume", "overwrite")}
        vars(args).update({**resume["run_config"], **keep})
    elif ckpt_path.exists() and not args.overwrite:
        raise UserError(f"{ckpt_path} exists; pass --resume to continue that run or --overwrite to replace it")
    rank, world, device = setup_processes(args)
    if device == "cpu":
        keep_freed_memory()
    ddp, master = world > 1, rank == 0
    dtype = pick_dtype(args.dtype, device)
    resumed_cfg = GPTConfig(**resume["model_config"]) if resume else None
    job = make_job(args, rank, world, resumed_cfg)
    cfg = resumed_cfg or job.config

    torch.manual_seed(args.seed)
    model = GPT(cfg)
    if job.init and not resume:
        job.init(model)
    model.to(device)
    optimizer = make_optimizer(model, args, device)
    gen = torch.Generator().manual_seed(args.seed * 1000 + rank)
    step, best = 0, float("inf")
    if resume:
        try:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"{ckpt_path} does not fit this model ({str(e).splitlines()[0]})") from None
        step, best = resume["step"], resume.get("best_val_loss", best)
        set_rng_state(resume["rng"][rank] if rank < len(resume["rng"]) else resume["rng"][0], gen)
    train_model = torch.compile(model) if args.compile else model
    if ddp:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device] if device.startswith("cuda") else None)

    counts = count_params(cfg, cfg.block_size)
    run_info = {"kind": kind, "run_config": vars(args), "model_config": asdict(cfg), "params": counts,
                "seed": args.seed, "code_version": code_version(), "data": job.data, "device": device,
                "dtype": dtype, "world_size": world}
    if master:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and (out / "log.jsonl").exists():
            (out / "log.jsonl").unlink()
        print(f"{job.describe}n_layer={cfg.n_layer} d_model={cfg.d_model} d_ff={cfg.d_ff} "
              f"params={counts['total']:,} (non-embedding {counts['non_embedding']:,}) "
              f"device={device} dtype={dtype}" + (f" processes={world}" if ddp else ""), flush=True)

    def gathered_rng():
        state = rng_state(gen)
        if not ddp:
            return [state]
        states = [None] * world
        torch.distributed.all_gather_object(states, state)
        return states

    def checkpoint(step, metrics, full=True):
        ck = {"format": CKPT_FORMAT, "kind": kind, "model_config": asdict(cfg), "model": model.state_dict(),
              "step": step, "val_loss": metrics["val_loss"], "metrics": metrics, "run_config": vars(args),
              "code_version": run_info["code_version"], "data": job.data}
        if full:  # what resuming needs; snapshots keep the weights only
            ck.update(optimizer=optimizer.state_dict(), rng=gathered_rng(), best_val_loss=best, tokens=tokens_seen)
        return ck

    def run_eval(step, train_loss, elapsed):
        nonlocal best
        was_training = model.training
        model.eval()
        with torch.no_grad(), autocast(device, dtype):
            metrics = job.evaluate(model)
        model.train(was_training)
        best = min(best, metrics["val_loss"])
        rec = {"step": step, "train_loss": train_loss, **metrics, "val_ppl": math.exp(metrics["val_loss"]),
               "lr": lr, "tokens": tokens_seen, "elapsed_s": elapsed}
        if master:
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
        return metrics

    model.train()
    t0 = time.time()
    budget_s = args.max_minutes * 60
    bar = tqdm(total=args.max_iters, initial=step, disable=args.quiet or not master, unit="step",
               dynamic_ncols=True)
    train_loss, tok_s, metrics, lr = float("nan"), 0.0, None, lr_at(step, args)
    saved_step = step if resume else None  # the step of the checkpoint on disk, for the NaN message
    tokens_seen = resume.get("tokens", 0) if resume else 0
    t_window, tok_window = time.time(), 0
    while step < args.max_iters:
        time_frac = (time.time() - t0) / budget_s if budget_s else 0.0
        if time_frac >= 1.0:
            break
        lr = lr_at(step, args, time_frac)
        for g in optimizer.param_groups:
            g["lr"] = lr
        loss_sum = 0.0
        for micro in range(args.gradient_accumulation_steps):
            x, y = job.batch(gen, rank, world)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync = not ddp or micro == args.gradient_accumulation_steps - 1
            ctx = nullcontext() if sync else train_model.no_sync()  # all-reduce once per step
            with ctx, autocast(device, dtype):
                loss = train_model(x, targets=y, z_loss=args.z_loss) / args.gradient_accumulation_steps
            loss.backward()
            loss_sum += loss.item()
            tok_window += x.numel() * world
            tokens_seen += x.numel() * world
        if not math.isfinite(loss_sum):
            kept = f"the last good checkpoint {ckpt_path} (step {saved_step}) is kept" \
                if saved_step is not None else "no checkpoint had been written yet"
            raise UserError(f"loss became {loss_sum} at step {step + 1}; {kept}; resume it with "
                            "--resume and a lower --learning_rate (or --dtype float32)")
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        train_loss = loss_sum
        if time.time() - t_window > 2.0 or step == args.max_iters:
            tok_s = tok_window / (time.time() - t_window)
            t_window, tok_window = time.time(), 0
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}",
                        val=f"{metrics['val_loss']:.3f}" if metrics else "-")
        last = step == args.max_iters or (budget_s and time.time() - t0 >= budget_s)
        snap = args.snapshot_interval and step % args.snapshot_interval == 0
        if snap or step % args.eval_interval == 0 or last:
            metrics = run_eval(step, train_loss, time.time() - t0)
            if snap and master:
                (out / "snapshots").mkdir(exist_ok=True)
                save_atomic(checkpoint(step, metrics, full=False), out / "snapshots" / f"step_{step:07d}.pt")
            if step % args.eval_interval == 0 or last:
                ck = checkpoint(step, metrics)
                saved_step = step
                if master:
                    save_atomic(ck, ckpt_path)
                    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
                    tqdm.write(f"step {step}: train loss {train_loss:.4f}, {shown}, saved {ckpt_path}")
                    sys.stdout.flush()
    bar.close()
    summary = {**run_info, "step": step, **(metrics or {}),
               "val_ppl": math.exp(metrics["val_loss"]) if metrics else None,
               "best_val_loss": best, "train_seconds": time.time() - t0, "tokens_per_s_last": tok_s}
    if master:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if ddp:
        # free the DDP wrapper (it holds the process group) before tearing the group down: left to
        # interpreter shutdown, gloo's threads can die unjoined and abort the process after a good run
        del train_model
        gc.collect()
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def main(argv=None):
    args = get_args(argv)

    def make_job(args, rank, world, resumed_cfg):
        train_data, val_data, meta = load_corpus(args)
        vx, vy = eval_windows(val_data, args.block_size, args.eval_iters * args.batch_size)
        return Job(config=build_config(args) if not args.resume else None,
                   batch=lambda gen, rank, world: get_batch(train_data, args.batch_size, args.block_size,
                                                            gen, rank, world),
                   evaluate=lambda model: {"val_loss": evaluate_loss(model, vx, vy, args.batch_size)},
                   data={"name": args.dataset, "train_sha256": meta.get("train_sha256"),
                         "val_sha256": meta.get("val_sha256")},
                   describe=f"{args.model_class} ")

    return fit(args, argv, "pretrain", make_job)


if __name__ == "__main__":
    main_guard(main)
