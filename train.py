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

from common import Parser, integer, main_guard, parse_with_recipe
from corpus import PREPARABLE, bits_per_byte, ensure_prepared, eval_windows, get_batch, load_corpus, mean_loss
from model import GPT2_VOCAB
from tasks import Vocab
from trainer import Job, add_model_flags, add_training_flags, build_config, fit


# The vocabulary a class pretrains with unless --vocab_size says otherwise: the tiny class takes
# GPT-2's BPE kept to 8,192 merge ranks + EOT, which at equal pretraining time reached lower bits
# per byte than 4k, 16k and GPT-2's whole 50,257 (results/class_vocab_tiny); the rest keep GPT-2's.
CLASS_VOCAB = {"tiny": 8193}


def get_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(p)
    a = p.add_argument
    a("--dataset", default="tinystories", help=f"corpus under data/: {', '.join(PREPARABLE)}, "
      "or a name prepared with data/text/prepare.py")
    a("--data_dir", default="", help="folder with train.bin/val.bin (default: data/DATASET)")
    a("--block_size", type=integer(2), default=256, help="context length in tokens")
    own = ", ".join(f"{k}: {v}" for k, v in CLASS_VOCAB.items())
    a("--vocab_size", type=vocab_size, default=0, help="GPT-2's BPE kept to its first vocab_size - 1 merge "
      f"ranks, plus EOT (50257: all of it); 0: the class's own ({own}; the others {GPT2_VOCAB}); "
      "the corpus is converted once")
    a("--eval_iters", type=integer(1), default=20, help="validation batches per eval (fixed windows)")
    add_training_flags(p)
    return parse_with_recipe(p, argv, "pretrain")


def vocab_size(text):
    """An argparse type: 0 (the class's own) or a size GPT-2's BPE can be cut to."""
    v = integer(0, GPT2_VOCAB)(text)
    if 0 < v < 257:
        raise argparse.ArgumentTypeError(f"must be 0 (the class's own) or 257 to {GPT2_VOCAB}, got {v}")
    return v


def make_job(args, rank, world, resumed_cfg):
    """Pretraining: random windows of the corpus; validation loss on fixed windows."""
    size = args.vocab_size or CLASS_VOCAB.get(args.model_class, GPT2_VOCAB)
    vocab = Vocab("gpt2", size=resumed_cfg.vocab_size if resumed_cfg else size)
    config = None if resumed_cfg else build_config(args, args.block_size, vocab)  # bad model flags fail first
    folder = ensure_prepared(args.dataset, args.data_dir)
    train, val, meta = load_corpus(args.dataset, folder, args.block_size, vocab.size)
    val_batches = eval_windows(val, args.block_size, args.eval_iters * args.batch_size, args.batch_size)

    def evaluate(model):
        loss = mean_loss(model, val_batches)
        return {"val_loss": loss, "val_bpb": bits_per_byte(loss, val_batches, vocab.size)}
    return Job(config=config,
               batch=lambda gen, rank, world: get_batch(train, args.batch_size, args.block_size, gen, rank, world),
               evaluate=evaluate,
               data={"name": args.dataset, "train_sha256": meta.get("train_sha256"),
                     "val_sha256": meta.get("val_sha256"), "vocab_size": vocab.size},
               describe=f"{args.model_class} ")


def main(argv=None):
    return fit(get_args(argv), "pretrain", make_job)


if __name__ == "__main__":
    main_guard(main)
