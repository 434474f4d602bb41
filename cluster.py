"""
What keeps a run alive where machines fail, kept out of the training loop's path: trainer.py calls
each of these with one line. torchrun's processes and restarts, DDP's wrapper and teardown, the
decision that every process stops together on a non-finite loss, the tests' fault injection (the
deterministic stand-in for what clusters do to runs), and resuming a run with its own settings.
A single-process run on one machine passes through all of it unchanged.
"""
import gc
import os
import signal
from contextlib import nullcontext
from pathlib import Path

import torch

from checkpoint import load_for_resume, rng_state
from common import UserError, pick_device

# what a resumed run may change when the command line gives it; everything else is the run's own
RESUME_MAY_CHANGE = ("max_iters", "eval_interval", "snapshot_interval", "snapshot_steps", "out_dir", "data_dir",
                     "device", "compile", "quiet", "max_minutes", "learning_rate", "min_lr", "grad_clip", "dtype",
                     "new_data")


# --- processes ----------------------------------------------------------------------------------

def setup_processes(device_flag):
    """Rank, world size and device; torchrun sets RANK and WORLD_SIZE."""
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if ddp else (0, 1)
    device = pick_device(device_flag)
    if ddp:
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            torch.distributed.init_process_group(backend, store=life_store(world), rank=rank, world_size=world)
        else:
            torch.distributed.init_process_group(backend)
    return rank, world, device


def life_store(world):
    """torchrun's store, under a key prefix of its own for each life of the workers. The store
    outlives a restart (--max-restarts), and without the prefix a restarted worker can read the
    address a dead one published there and fail to connect to it ("Gloo connectFullMesh failed
    ... Connection refused"; pytorch/pytorch#167288)."""
    store = torch.distributed.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                                       is_master=False)
    return torch.distributed.PrefixStore(f"nanodepth/life{restarts()}", store)


def restarts():
    """How often torchrun has restarted this run's workers (--max-restarts)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def wrap(model, world, device):
    """The model the loop trains through: DDP's wrapper when there are several processes."""
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)


def no_sync(train_model, skip):
    """DDP all-reduces the gradients once per step: on the step's last micro-batch only."""
    ddp = isinstance(train_model, torch.nn.parallel.DistributedDataParallel)
    return train_model.no_sync() if skip and ddp else nullcontext()


def rng_states(gen, world):
    """Every process's data-order generator state, for ckpt.pt (each resumes its own stream)."""
    state = rng_state(gen)
    if world == 1:
        return [state]
    states = [None] * world
    torch.distributed.all_gather_object(states, state)
    return states


def barrier(world):
    if world > 1:
        torch.distributed.barrier()


def close(run):
    """Tear the process group down. The DDP wrapper (which holds the group) is freed first: left to
    interpreter shutdown, gloo's threads can die unjoined and abort the process after a good run."""
    if run.world > 1:
        del run.train_model
        gc.collect()
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


# --- faults ---------------------------------------------------------------------------------------

def stop_unless_finite(loss, norm, run):
    """The step is applied by every process, or by none: the gradient norm is the same everywhere
    (DDP has averaged the gradients) and the loss is all-reduced. A non-finite one stops the run
    with the last good checkpoint intact."""
    if run.step_n + 1 == fault("NAN_AT_STEP", run.rank):
        loss = float("nan")
    health = torch.stack([torch.tensor(loss, device=norm.device), norm.float()])
    if run.world > 1:
        torch.distributed.all_reduce(health)
    if torch.isfinite(health).all():
        return
    barrier(run.world)  # every process has decided; they stop together
    kept = f"the last good checkpoint {run.ckpt_path} (step {run.saved_step}) is kept" \
        if run.saved_step is not None else "no checkpoint had been written yet"
    raise UserError(f"the loss or gradient became non-finite at step {run.step_n + 1} (loss {loss}, "
                    f"gradient norm {norm.item()}, all processes); the step was not applied; {kept}; "
                    "resume it with --resume and a lower --learning_rate (or --dtype float32)")


def fault(name, rank):
    """Fault injection for the tests: NANODEPTH_KILL_AT_STEP=N (SIGKILL right after step N) and
    NANODEPTH_NAN_AT_STEP=N (a NaN loss at step N), on the rank NANODEPTH_FAULT_RANK (default: every
    rank), in a run's first life only (not after a torchrun restart). 0: no fault."""
    only = os.environ.get("NANODEPTH_FAULT_RANK")
    if restarts() or (only is not None and int(only) != rank):
        return 0
    return int(os.environ.get(f"NANODEPTH_{name}", "0"))


def kill_if_asked(step, rank):
    """NANODEPTH_KILL_AT_STEP: the process dies here as a preempted node's would, mid-run."""
    if step == fault("KILL_AT_STEP", rank):
        os.kill(os.getpid(), signal.SIGKILL)


# --- resuming ---------------------------------------------------------------------------------------

def settle_settings(args, kind):
    """The checkpoint to resume (or None). A resumed run continues with the settings it was
    started with, except those in RESUME_MAY_CHANGE that this command line gave."""
    ckpt_path = Path(args.out_dir) / "ckpt.pt"
    if restarts() and ckpt_path.exists():  # torchrun restarted the workers: continue the run
        args.resume, args.overwrite = True, False
    if not args.resume:
        if ckpt_path.exists() and not args.overwrite:
            raise UserError(f"{ckpt_path} exists; pass --resume to continue that run or --overwrite to replace it")
        return None
    resume = load_for_resume(ckpt_path, kind)
    given = set(getattr(args, "given_flags", ()))
    keep = {k: getattr(args, k) for k in RESUME_MAY_CHANGE if k in given}
    keep.update(resume=args.resume, overwrite=args.overwrite, given_flags=sorted(given))
    vars(args).update({**resume["run_config"], **keep})
    return resume


def check_same_data(before, now, allowed, ckpt_path):
    """A resume goes on with the data the run started with (the dataset or task and every file's
    sha256); other data only with --new_data, and then the earlier record stays in the new one."""
    if not before:  # a checkpoint from before runs recorded their data
        return
    ident = lambda d: {k: v for k, v in d.items() if k in ("name", "task") or k.endswith("sha256")}  # noqa: E731
    changed = sorted(k for k in ident(before).keys() | ident(now).keys() if before.get(k) != now.get(k))
    if not changed:
        return
    if not allowed:
        raise UserError(f"{ckpt_path} was trained on other data than this resume reads ({', '.join(changed)} "
                        "differ); resume with the run's own data, or pass --new_data to go on with this")
    now["resumed_from_data"] = before
