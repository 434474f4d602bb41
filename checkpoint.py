"""
Checkpoints: plain dicts of tensors and primitives that load with torch.load(weights_only=True).

    {"format": "nanodepth-1", "kind": "pretrain" | "finetune", "model_config": {...}, "model": state_dict,
     "step", "val_loss", "metrics", "run_config", "code_version", "data",
     # full checkpoints only (what resuming needs; snapshots keep the weights alone):
     "optimizer", "rng", "best_val_loss", "tokens"}

A run folder holds ckpt.pt (the latest full checkpoint) and snapshots/step_NNNNNNN.pt.
"""
from pathlib import Path

import torch

from common import UserError
from fused_loss import build_model
from model import GPTConfig

CKPT_FORMAT = "nanodepth-1"


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
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT or "model" not in ck:
        raise UserError(f"{path} is not a nanodepth checkpoint (format {CKPT_FORMAT})")
    if kind is not None and ck.get("kind") != kind:
        raise UserError(f"{path} is a {ck.get('kind')} checkpoint, expected {kind}")
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
    cfg = stretch_context(GPTConfig(**{**ck["model_config"], **overrides}), context)
    model = build_model(cfg)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise UserError(f"{resolve(path)} does not load into its own model ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), ck


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
