"""
The training loop of both training jobs: train.py pretrains, finetune.py fine-tunes, and they
differ only in the Job they hand to fit(): where the batches and the evals come from.

Read it top to bottom: the flags, the optimizer and its schedule (lr_at), the Run (model,
optimizer, counters; evaluate, save, finish), then fit() and train(), the loop itself. What only
clusters need (torchrun's processes and restarts, DDP, the all-process non-finite decision, the
tests' fault injection, resuming with the run's own settings) is in cluster.py, one call each.
"""
import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

import cluster
from checkpoint import save_checkpoint, set_rng_state, snapshots
from common import (DTYPES, UserError, autocast, code_version, folder_to_write, hold_folder, integer, sigterm_exits,
                    keep_freed_memory, pick_device, pick_dtype, real, remove_stale_temporaries, write_atomic)
from model import (BLOCKS, GPT, INITS, MATCHES, MODEL_CLASSES, POSITIONS, REL_BIAS, GPTConfig, config_for,
                   count_params)

OPTIMIZERS = ("adamw", "adafactor")
# --- flags ------------------------------------------------------------------------------------------

def add_training_flags(p, **defaults):
    """Flags of the training loop; pretraining and fine-tuning pass their own defaults."""
    d = {"max_iters": 2000, "optimizer": "adafactor", "learning_rate": 1e-2, "lr_schedule": "constant",
         "min_lr": 1e-3, "warmup_iters": 0, "batch_size": 8, "eval_interval": 200, "out_dir": "out",
         "z_loss": 1e-4, **defaults}
    a = p.add_argument
    a("--batch_size", type=integer(1), default=d["batch_size"], help="sequences per micro-batch (per process)")
    a("--gradient_accumulation_steps", type=integer(1), default=1, help="micro-batches per optimizer step")
    a("--max_iters", type=integer(1), default=d["max_iters"], help="optimizer steps")
    a("--max_minutes", type=real(lo=0), default=0, help="stop after this much training time, a cosine learning rate "
      "decaying over it (0: no limit; a timed run is not bitwise reproducible)")
    a("--optimizer", default=d["optimizer"], choices=OPTIMIZERS, help="adamw, or adafactor as T5X ran it "
      "(factored second moments, update clipping, steps relative to each parameter's RMS, "
      "torch.optim.Adafactor)")
    a("--learning_rate", type=real(above=0), default=d["learning_rate"], help="peak learning rate (adafactor: "
      "its relative step, applied as min(lr, 1/sqrt(step)); T5X: 1e-2 pretraining, 1e-3 fine-tuning)")
    a("--lr_schedule", default=d["lr_schedule"], choices=("cosine", "constant"), help="cosine: warmup, then "
      "cosine decay to min_lr; constant: warmup, then learning_rate (with adafactor T5X's schedule)")
    a("--min_lr", type=real(lo=0), default=d["min_lr"], help="learning rate at the end of the cosine decay")
    a("--warmup_iters", type=integer(0), default=d["warmup_iters"], help="linear warmup steps")
    a("--weight_decay", type=real(lo=0), default=0.1, help="AdamW weight decay on matrices and embeddings")
    a("--z_loss", type=real(lo=0), default=d["z_loss"], help="weight of T5X's auxiliary log(Z)^2 loss (T5X: 1e-4)")
    a("--beta1", type=real(lo=0, hi=0.9999), default=0.9, help="AdamW beta1")
    a("--beta2", type=real(lo=0, hi=0.9999), default=0.95, help="AdamW beta2")
    a("--grad_clip", type=real(lo=0), default=1.0, help="clip the gradient norm to this (0: off)")
    a("--seed", type=integer(0), default=0, help="seed for initialisation and data order")
    a("--eval_interval", type=integer(1), default=d["eval_interval"], help="steps between evals and checkpoints")
    a("--snapshot_interval", type=integer(0), default=0, help="keep a weights snapshot every K steps (0: off)")
    a("--snapshot_steps", type=step_list, default="", help="also keep snapshots at these steps, comma-separated "
      "(log-spaced ones give a training-length curve: curve.py)")
    a("--out_dir", default=d["out_dir"], help="where checkpoints and logs go")
    a("--resume", action="store_true", help="continue the run in out_dir from ckpt.pt")
    a("--overwrite", action="store_true", help="start afresh even if out_dir holds a checkpoint")
    a("--new_data", action="store_true", help="with --resume: go on with data other than the run's own (another "
      "dataset or task, or changed files); refused without it, recorded with it")
    a("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    a("--dtype", default="auto", choices=DTYPES, help="auto (bf16 on CUDA, on AMX CPUs, and on AVX512-BF16 "
      "CPUs where a quick matmul finds it faster; else fp32), float32, bfloat16")
    a("--compile", action="store_true", help="torch.compile the model")
    a("--quiet", action="store_true", help="no progress bar")
    a("--check", action="store_true", help="check the flags and the recipe, then exit without training "
      "(sweep.py does this before hours of work)")


def add_model_flags(p):
    """Flags that choose a fresh model of one depth in a size class."""
    a = p.add_argument
    a("--model_class", default="tiny", choices=tuple(MODEL_CLASSES), help=f"size class: {', '.join(MODEL_CLASSES)}")
    a("--n_layer", type=integer(1), default=2, help="depth; d_ff is solved so every depth has the class's size")
    a("--n_unique", type=integer(0), default=0, help="looped: this many distinct blocks, applied in order and cycled "
      "for n_layer applications (0: n_layer, no sharing)")
    a("--match", default="params", choices=MATCHES, help="a looped model's d_ff: that of an unlooped "
      "depth-n_unique model (params: the class's parameter count) or of depth n_layer (compute: its FLOPs)")
    a("--block", default="paper", choices=BLOCKS, help="paper (T5X decoder-only) or gpt2 (nanoGPT's block)")
    a("--pos", default="", choices=("",) + POSITIONS,
      help="position scheme: t5, learned or rope (default: the block's own)")
    a("--dropout", type=real(lo=0, hi=0.99), default=0.0, help="dropout on residual branches (the paper: 0 in "
      "pretraining, 0.1 in fine-tuning)")
    a("--rel_bias", default="per_layer", choices=REL_BIAS, help="T5 bias tables: one per layer (T5X at "
      "the paper's time) or one shared by all layers")
    a("--init", default="", choices=("",) + INITS, help="initialisation: t5x (fan-in) or gpt2 "
      "(N(0, 0.02)); default: the block's own")
    a("--tie_embeddings", type=int, default=-1, choices=(-1, 0, 1), help="1: the output head is the "
      "input embedding; 0: untied (the paper); -1: the block's own")
    a("--loss_chunk", type=integer(-1), default=-1,
      help="tokens per chunk of the fused output head + loss (0: the plain loss; -1: 256 on CPU, 8192 on GPU)")


def step_list(text):
    """An argparse type: comma-separated positive steps, kept as text (run configs hold primitives)."""
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated steps like 100,1000; got {text!r}") from None
    if any(s < 1 for s in steps):
        raise argparse.ArgumentTypeError(f"steps must be at least 1, got {text!r}")
    return ",".join(map(str, sorted(set(steps))))


def build_config(args, block_size, vocab=None):
    """The config of a fresh model from the model flags (model.config_for checks them); vocab: a
    tasks.Vocab whose tokens the embedding and head hold (default: GPT-2's)."""
    kw = {} if vocab is None else {"vocab": vocab.kind, "tokens": vocab.tokens, "vocab_size": vocab.size}
    try:
        return config_for(args.model_class, args.n_layer, n_unique=args.n_unique, match=args.match, **kw,
                          block=args.block, pos=args.pos,
                          block_size=block_size, dropout=args.dropout, loss_chunk=args.loss_chunk,
                          rel_bias=args.rel_bias, init=args.init, tie_embeddings=args.tie_embeddings)
    except ValueError as e:
        raise UserError(str(e)) from None


def check_args(args):
    for name in ("n_layer", "block_size", "batch_size", "gradient_accumulation_steps", "max_iters",
                 "eval_interval", "eval_iters", "eval_examples"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; choose one")


# --- optimisation -------------------------------------------------------------------------------

def lr_at(it, learning_rate, min_lr, warmup_iters, max_iters, schedule="cosine", time_frac=0.0):
    """Linear warmup, then cosine decay to min_lr at max_iters (or at the end of --max_minutes,
    whichever comes first: time_frac), or constant."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / warmup_iters
    if schedule == "constant":
        return learning_rate
    frac = min(1.0, max(time_frac, (it - warmup_iters) / max(1, max_iters - warmup_iters)))
    return min_lr + 0.5 * (1 + math.cos(math.pi * frac)) * (learning_rate - min_lr)


def schedule_of(args):
    """lr_at's settings from a run's flags."""
    return dict(learning_rate=args.learning_rate, min_lr=args.min_lr, warmup_iters=args.warmup_iters,
                max_iters=args.max_iters, schedule=args.lr_schedule)


def make_optimizer(model, device, optimizer="adamw", learning_rate=1e-3, weight_decay=0.1, betas=(0.9, 0.95)):
    """AdamW (matrices and embeddings decay, norms and biases do not; fused on CUDA, foreach on CPU),
    or Adafactor as T5X ran it: torch's takes steps of min(lr, 1/sqrt(t)) * max(1e-3, RMS(param)),
    T5X's rule (decay exponent 0.8, update clipping 1, no momentum, no weight decay)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adafactor":
        return torch.optim.Adafactor(params, lr=learning_rate, beta2_decay=-0.8, d=1.0,
                                     weight_decay=0.0, foreach=not device.startswith("mps"))
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fast = {"fused": True} if device.startswith("cuda") else {"foreach": True}
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **fast)


# --- the run ------------------------------------------------------------------------------------

class Job:
    """What a kind of training supplies to fit(), made once the run's settings are final.
    config: GPTConfig for a fresh run; init(model): load starting weights (fresh runs only);
    batch(gen, rank, world) -> (x, y) with y = -1 where no loss; evaluate(model) -> dict with
    val_loss; data: provenance (name and sha256) for every result file."""

    def __init__(self, config, batch, evaluate, data, init=None, describe=""):
        self.config, self.batch, self.evaluate, self.data = config, batch, evaluate, data
        self.init, self.describe = init, describe


# --- the run: what the loop works on ------------------------------------------------------------

class Run:
    """The run's settings (a resumed run keeps its own), processes, model, optimizer and counters,
    and the three things the loop does besides stepping: evaluate, save, finish."""

    def __init__(self, args, kind, make_job):
        self.args, self.kind = args, kind
        resume = cluster.settle_settings(args, kind)
        self.out = Path(args.out_dir)
        self.ckpt_path = self.out / "ckpt.pt"
        self.rank, self.world, self.device = cluster.setup_processes(args.device)
        if self.device == "cpu":
            keep_freed_memory()
        self.master = self.rank == 0
        self.dtype = pick_dtype(args.dtype, self.device)
        resumed_cfg = GPTConfig(**resume["model_config"]) if resume else None
        self.job = make_job(args, self.rank, self.world, resumed_cfg)
        self.cfg = resumed_cfg or self.job.config
        if resume:
            cluster.check_same_data(resume.get("data"), self.job.data, args.new_data, self.ckpt_path)

        torch.manual_seed(args.seed)
        self.model = GPT(self.cfg)
        if self.job.init and not resume:
            self.job.init(self.model)
        self.model.to(self.device)
        self.optimizer = make_optimizer(self.model, self.device, args.optimizer, args.learning_rate,
                                        args.weight_decay, (args.beta1, args.beta2))
        self.gen = torch.Generator().manual_seed(args.seed * 1000 + self.rank)  # this process's data order
        self.step_n, self.best, self.tokens = 0, float("inf"), 0
        self.saved_step = None  # the step of the checkpoint on disk, for the NaN message
        self.seconds_before = 0.0  # training time of the run's earlier processes (resumed runs)
        self.elapsed, self.resumed_metrics = 0.0, None  # training time at the last eval; a resumed run's last metrics
        if resume:
            self.restore(resume)
        self.train_model = cluster.wrap(torch.compile(self.model) if args.compile else self.model,
                                        self.world, self.device)
        self.info = {"kind": kind, "run_config": vars(args), "model_config": asdict(self.cfg),
                     "params": count_params(self.cfg, self.cfg.block_size), "seed": args.seed,
                     "code_version": code_version(), "data": self.job.data, "device": self.device,
                     "dtype": self.dtype, "world_size": self.world}
        if self.master:
            self.announce(fresh=resume is None)

    def restore(self, resume):
        try:
            self.model.load_state_dict(resume["model"])
            self.optimizer.load_state_dict(resume["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"{self.ckpt_path} does not fit this model ({str(e).splitlines()[0]})") from None
        self.step_n, self.best = resume["step"], resume.get("best_val_loss", self.best)
        self.tokens, self.saved_step = resume.get("tokens", 0), resume["step"]
        # a resumed run's clock, its --max_minutes budget and time-based schedule go on from the checkpoint
        self.seconds_before = float(resume.get("elapsed_s", 0.0))
        self.resumed_metrics = resume.get("metrics")
        rngs = resume["rng"]
        set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0], self.gen)

    def announce(self, fresh):
        self.out.mkdir(parents=True, exist_ok=True)
        for name in remove_stale_temporaries(self.out):  # writes cut off by a killed process
            print(f"removed {self.out / name}, left by a write its process never finished")
        log = self.out / "log.jsonl"
        if fresh:  # (--overwrite) what the replaced run wrote must not be read as this run's (curve.py)
            old = [f for f in (log, self.out / "summary.json") if f.exists()] + \
                list(snapshots(self.out).values()) + sorted((self.out / "curve").glob("step_*.json"))
            for f in old:
                f.unlink()
            if old:
                print(f"removed {len(old)} files of the run this one replaces (its log, summary, snapshots and scores)")
        else:  # a killed process may have logged evals and kept snapshots after its checkpoint: they rerun
            if log.exists():
                lines = log.read_text().splitlines(keepends=True)
                kept = [x for x in lines if logged_step(x) <= self.step_n]
                if kept != lines:
                    write_atomic(log, "".join(kept))
            ahead = [p for s, p in snapshots(self.out).items() if s > self.step_n]
            for f in ahead:
                f.unlink()
            if ahead:
                print(f"removed {len(ahead)} snapshots past the checkpoint (step {self.step_n}); "
                      "the run makes them again")
        c, n = self.cfg, self.info["params"]
        print(f"{self.job.describe}n_layer={c.n_layer} d_model={c.d_model} d_ff={c.d_ff} "
              f"params={n['total']:,} (non-embedding {n['non_embedding']:,}) device={self.device} "
              f"dtype={self.dtype}" + (f" processes={self.world}" if self.world > 1 else ""), flush=True)

    def evaluate(self, train_loss, lr, elapsed):
        """The job's evaluation (eval mode, no gradients), appended to log.jsonl."""
        self.elapsed = elapsed  # saved with the checkpoint, so a resumed run's clock goes on from it
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.dtype):
            metrics = self.job.evaluate(self.model)
        self.model.train()
        self.best = min(self.best, metrics["val_loss"])
        rec = {"step": self.step_n, "train_loss": train_loss, **metrics, "val_ppl": math.exp(metrics["val_loss"]),
               "lr": lr, "tokens": self.tokens, "elapsed_s": elapsed}
        if self.master:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
        return metrics

    def save(self, metrics, full=True):
        """ckpt.pt (what resuming needs: weights, optimizer, data order, counters), or a snapshot of
        the weights alone."""
        ck = {"kind": self.kind, "model_config": asdict(self.cfg),
              "model": self.model.state_dict(), "step": self.step_n, "val_loss": metrics["val_loss"],
              "metrics": metrics, "elapsed_s": self.elapsed, "run_config": vars(self.args),
              "code_version": self.info["code_version"], "data": self.job.data}
        if full:
            ck.update(optimizer=self.optimizer.state_dict(), rng=cluster.rng_states(self.gen, self.world),
                      best_val_loss=self.best, tokens=self.tokens)
            self.saved_step = self.step_n
        if self.master and full:
            save_checkpoint(ck, self.ckpt_path, keep_previous=True)
        elif self.master:
            (self.out / "snapshots").mkdir(exist_ok=True)
            save_checkpoint(ck, self.out / "snapshots" / f"step_{self.step_n:07d}.pt")
        if full:  # no process runs ahead of a checkpoint that is not yet on disk
            cluster.barrier(self.world)

    def finish(self, metrics, seconds, tok_s):
        summary = {**self.info, "step": self.step_n, **(metrics or {}),
                   "val_ppl": math.exp(metrics["val_loss"]) if metrics else None,
                   "best_val_loss": self.best, "train_seconds": seconds, "tokens_per_s_last": tok_s}
        if self.master:
            write_atomic(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        cluster.close(self)
        return summary


def logged_step(line):
    """The step of one log.jsonl record; a line cut off by a killed write counts as after any step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError):
        return float("inf")


class Progress:
    """The progress bar with the training loss and tokens per second (over the last ~2 seconds)."""

    def __init__(self, args, run):
        self.run, self.tok_s = run, 0.0
        self.bar = tqdm(total=args.max_iters, initial=run.step_n, disable=args.quiet or not run.master,
                        unit="step", dynamic_ncols=True)
        self.t, self.tokens = time.time(), run.tokens

    def update(self, train_loss, metrics, final):
        if time.time() - self.t > 2.0 or final:
            self.tok_s = (self.run.tokens - self.tokens) / (time.time() - self.t)
            self.t, self.tokens = time.time(), self.run.tokens
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{self.tok_s:,.0f}",
                             val=f"{metrics['val_loss']:.3f}" if metrics else "-")

    def saved(self, train_loss, metrics):
        if self.run.master:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            tqdm.write(f"step {self.run.step_n}: train loss {train_loss:.4f}, {shown}, saved {self.run.ckpt_path}")
            sys.stdout.flush()


# --- the loop ------------------------------------------------------------------------------------

def fit(args, kind, make_job):
    """Train to args.max_iters (or --max_minutes); make_job(args, rank, world, resumed_config or
    None) -> Job. The run's folder is held against a second process for the whole run."""
    check_args(args)
    pick_device(args.device)  # a device this machine lacks is refused before anything is read
    folder_to_write(args.out_dir, "--out_dir")
    if args.check:
        return None
    rank0 = int(os.environ.get("RANK", "0")) == 0  # rank 0 holds the folder for all of torchrun's ranks
    with hold_folder(args.out_dir) if rank0 else nullcontext(), sigterm_exits():
        return train(Run(args, kind, make_job), args)


def train(run, args):
    """Each step: the learning rate from the schedule, forward and backward over the step's
    micro-batches (GPT.loss: the cross-entropy over the targets that are not -1), the gradient
    clipped, the optimizer stepped. Every eval_interval steps (and at the end): evaluate and write
    ckpt.pt; snapshots of the weights where asked."""
    if run.step_n >= args.max_iters and (run.out / "summary.json").exists():  # resumed after the end
        if run.master:
            print(f"{run.out} finished at step {run.step_n} (max_iters {args.max_iters}); nothing to do")
        cluster.close(run)
        return json.loads((run.out / "summary.json").read_text())
    model, optimizer, accum = run.model, run.optimizer, args.gradient_accumulation_steps
    snap_steps = {int(s) for s in (args.snapshot_steps or "").split(",") if s}
    t0, budget_s = time.time() - run.seconds_before, args.max_minutes * 60
    progress, train_loss, metrics = Progress(args, run), float("nan"), None
    lr = lr_at(run.step_n, **schedule_of(args))
    model.train()
    while run.step_n < args.max_iters:
        time_frac = (time.time() - t0) / budget_s if budget_s else 0.0  # --max_minutes: the clock ends the run
        if time_frac >= 1.0:
            break
        lr = lr_at(run.step_n, **schedule_of(args), time_frac=time_frac)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loss = 0.0
        for micro in range(accum):
            x, y, *packed = (t.to(run.device, non_blocking=True) for t in run.job.batch(run.gen, run.rank, run.world))
            with cluster.no_sync(run.train_model, micro < accum - 1), autocast(run.device, run.dtype):
                loss = run.train_model(x, targets=y, z_loss=args.z_loss, segments=packed[0] if packed else None) / accum
            loss.backward()
            train_loss += loss.item()
            run.tokens += x.numel() * run.world
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip or float("inf"))
        cluster.stop_unless_finite(train_loss, norm, run)  # on every process together, the step not applied
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        run.step_n += 1
        cluster.kill_if_asked(run.step_n, run.rank)  # the tests' stand-in for a preempted node
        last = run.step_n == args.max_iters or bool(budget_s and time.time() - t0 >= budget_s)
        progress.update(train_loss, metrics, last)
        snap = (args.snapshot_interval and run.step_n % args.snapshot_interval == 0) or run.step_n in snap_steps
        due = run.step_n % args.eval_interval == 0 or last
        if snap or due:
            metrics = run.evaluate(train_loss, lr, time.time() - t0)
            if snap:
                run.save(metrics, full=False)
            if due:
                run.save(metrics)
                progress.saved(train_loss, metrics)
    progress.bar.close()
    return run.finish(metrics or run.resumed_metrics, time.time() - t0, progress.tok_s)
