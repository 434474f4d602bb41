"""
Checkpoints: plain dicts of tensors and primitives that load with torch.load(weights_only=True).

    {"format": "nanodepth-2", "kind": "pretrain" | "finetune", "model_config": {...}, "model": state_dict,
     "step", "val_loss", "metrics", "run_config", "code_version", "data",
     # full checkpoints only (what resuming needs; snapshots keep the weights alone):
     "optimizer", "rng", "best_val_loss", "tokens",
     "checksum": sha256 over every other entry, tensors by dtype, shape and bytes}

A run folder holds ckpt.pt (the latest full checkpoint), ckpt.prev.pt (the one before it) and
snapshots/step_NNNNNNN.pt. Every load verifies the checksum; a resumed run whose ckpt.pt fails
falls back to ckpt.prev.pt. Checkpoints of format nanodepth-1 (before checksums) still load, unverified.
"""
import hashlib
import os
import sys
from pathlib import Path

import torch

from common import UserError
from model import GPT, GPTConfig

CKPT_FORMAT = "nanodepth-2"
LEGACY_FORMATS = ("nanodepth-1",)  # written before checksums: loaded without verification


def checksum(obj, h=None):
    """sha256 of a checkpoint's contents in a fixed order: dict keys sorted, tensors by dtype, shape
    and raw bytes, primitives by repr. The same contents give the same digest after any save/load."""
    top = h is None
    h = hashlib.sha256() if top else h
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            checksum(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            checksum(v, h)
    else:
        h.update(repr(obj).encode())
    return h.hexdigest() if top else None


def snapshots(run):
    """{step: path} of a run folder's weight snapshots (snapshots/step_NNNNNNN.pt)."""
    return {int(p.stem.split("_")[1]): p for p in sorted(Path(run, "snapshots").glob("step_*.pt"))}


def save_checkpoint(ck, path, keep_previous=False):
    """Write ck with its checksum, atomically; keep_previous renames the file it replaces to
    <name>.prev.pt first, so the last two full checkpoints are on disk. A failed write leaves
    what was there untouched."""
    path = Path(path)
    ck = {**ck, "format": CKPT_FORMAT}
    ck["checksum"] = checksum(ck)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    written = False
    try:
        torch.save(ck, tmp)
        written = True
        if keep_previous and path.exists():
            os.replace(path, previous(path))
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not write {path} ({str(e).splitlines()[0]}); the checkpoints already there "
                        "are intact: free some space and resume with --resume") from None
    except BaseException:  # Ctrl-C (or SIGTERM, which the training jobs turn into an exit) mid-write
        if written and tmp.exists() and not path.exists():
            os.replace(tmp, path)  # stopped between the two renames: the new file is whole, finish the swap
        tmp.unlink(missing_ok=True)
        raise


def previous(path):
    """ckpt.pt -> ckpt.prev.pt: the full checkpoint before the latest."""
    path = Path(path)
    return path.with_name(path.stem + ".prev" + path.suffix)


def resolve(path):
    """A checkpoint file, or a run folder meaning the ckpt.pt inside it."""
    path = Path(path)
    return path / "ckpt.pt" if path.is_dir() else path


def load_checkpoint(path, kind=None):
    """Load a nanodepth checkpoint (a file or a run folder); refuse corrupt or foreign files."""
    path = resolve(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding code objects
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}); "
                        "use another file or start afresh with --overwrite") from None
    if not isinstance(ck, dict) or ck.get("format") not in (CKPT_FORMAT, *LEGACY_FORMATS) or "model" not in ck:
        raise UserError(f"{path} is not a nanodepth checkpoint (format {CKPT_FORMAT})")
    if ck["format"] == CKPT_FORMAT:
        want = ck.pop("checksum", None)
        if want is None or checksum(ck) != want:
            raise UserError(f"{path} fails verification: its contents do not match its checksum (a damaged "
                            "file); use another checkpoint")
    if kind is not None and ck.get("kind") != kind:
        raise UserError(f"{path} is a {ck.get('kind')} checkpoint, expected {kind}")
    return ck


def load_for_resume(path, kind):
    """The newest full checkpoint of a run that verifies: ckpt.pt, else ckpt.prev.pt (saying so)."""
    try:
        return load_checkpoint(path, kind)
    except UserError as newest:
        if not previous(path).is_file():
            raise
        ck = load_checkpoint(previous(path), kind)
        print(f"warning: {newest}; resuming from the previous checkpoint {previous(path)} (step {ck['step']})",
              file=sys.stderr)
        return ck


def stretch_context(cfg, need):
    """The config with room for `need` tokens. Relative (T5) and rotary positions extend to any
    length; learned absolute ones cannot, and keep their size (tasks.check_fits then refuses)."""
    if cfg.pos != "learned" and need > cfg.block_size:
        return GPTConfig(**{**vars(cfg), "block_size": need})
    return cfg


def load_model(path, device="cpu", context=0, **overrides):
    """A model from any nanodepth checkpoint (pretrain, snapshot or fine-tune), in eval mode, with
    room for `context` tokens where its positions allow. overrides: config fields to change
    (fine-tuning sets its dropout). Returns (model, checkpoint dict)."""
    ck = load_checkpoint(path)
    return model_from(ck, resolve(path), device, context, **overrides), ck


def model_from(ck, path, device="cpu", context=0, **overrides):
    """The model of a loaded checkpoint `ck` (read from `path`), as load_model makes it."""
    cfg = stretch_context(GPTConfig(**{**ck["model_config"], **overrides}), context)
    model = GPT(cfg)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise UserError(f"{path} does not load into its own model ({str(e).splitlines()[0]})") from None
    return model.to(device).eval()


def rng_state(generator=None):
    """Every random stream a run draws from, to resume it bitwise."""
    s = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        s["data"] = generator.get_state()
    return s


def set_rng_state(s, generator=None):
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    if generator is not None:
        generator.set_state(s["data"])
