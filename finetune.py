"""
Fine-tune a pretrained model (or a fresh one, the no-pretraining baseline) on one task: the
source and target joined into one causal sequence, the loss on the target only.

    python finetune.py --task cogs --init_from out/ckpt.pt --out_dir out/cogs
    python finetune.py --task cogs --from_scratch --model_class tiny --n_layer 2 --out_dir out/cogs0

Every --eval_interval steps: the loss and greedy exact match on --eval_examples examples of the
task's dev split, a checkpoint (atomic; --resume continues exactly). Score the result with
evaluate.py.
"""
import argparse
import random

import tasks
from checkpoint import load_model, resolve, stretch_context
from common import Parser, UserError, integer, main_guard, parse_with_recipe
from corpus import ensure_prepared, mean_loss
from trainer import Job, add_model_flags, add_training_flags, build_config, fit


def get_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--task", default="cogs", choices=tuple(tasks.TASKS), help=f"one of: {', '.join(tasks.TASKS)}")
    a("--data_dir", default="", help="folder with the task's prepared files (default: data/<task folder>)")
    a("--init_from", default="", help="pretrained checkpoint (a file, or a run folder holding ckpt.pt)")
    a("--from_scratch", action="store_true", help="start from random weights (give the model flags)")
    a("--eval_examples", type=integer(1), default=200, help="dev examples decoded for exact match at each eval")
    a("--vocab", default="", choices=("",) + tasks.VOCABS, help="from scratch: task (GPT-2's BPE cut to the "
      "task's tokens, the default), word (one token per word) or gpt2 (all 50,257); --init_from: the "
      "checkpoint's own")
    a("--batching", default="packed", choices=tasks.BATCHINGS, help="packed (any examples, laid end to end in "
      "rows with a block-diagonal mask: random batches, little padding), random (padded to the longest) or "
      "bucketed (examples of similar length together: little padding, but less learned per step)")
    add_model_flags(p)
    # T5X's fine-tuning recipe: Adafactor at a constant 1e-3 (its relative step), dropout 0.1
    add_training_flags(p, max_iters=10000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=0,
                       batch_size=32, eval_interval=500, out_dir="out-finetune")
    p.set_defaults(dropout=0.1)
    return parse_with_recipe(p, argv, "finetune")


def starting_point(args, rows, resumed_cfg):
    """(pretrained model or None, its checkpoint or None, the vocabulary): a resumed run's own, a
    pretrained model's own, or for a model from random weights one built over every split, as
    the from-scratch anchors built theirs."""
    if resumed_cfg is not None:
        return None, None, tasks.Vocab.of(resumed_cfg)
    if not args.init_from:
        return None, None, tasks.Vocab.build(args.vocab or "task", [r for split in rows.values() for r in split])
    pretrained, ck = load_model(args.init_from, dropout=args.dropout)
    vocab = tasks.Vocab.of(pretrained.config)
    if args.vocab and args.vocab != vocab.kind:
        raise UserError(f"--vocab {args.vocab}: {args.init_from} was trained with the {vocab.kind} vocabulary, "
                        "and a pretrained model keeps its own; drop --vocab")
    return pretrained, ck, vocab


def make_job(args, rank, world, resumed_cfg=None):
    """Fine-tuning: batches of the task's training pairs, the loss on the answer only; at each
    eval the masked dev loss and greedy exact match on a fixed sample of the dev split."""
    task = tasks.get_task(args.task)
    if bool(args.init_from) == bool(args.from_scratch) and not args.resume:
        raise UserError("give either --init_from CHECKPOINT or --from_scratch")
    if args.from_scratch and resumed_cfg is None:
        build_config(args, block_size=1)  # bad model flags fail before any data is read
    if args.init_from and resumed_cfg is None and not resolve(args.init_from).is_file():
        raise UserError(f"no checkpoint at {resolve(args.init_from)}")
    ensure_prepared(task.folder, args.data_dir)
    rows = {s: tasks.read_pairs(task, s, args.data_dir or None) for s in task.splits}
    pretrained, ck, vocab = starting_point(args, rows, resumed_cfg)
    every = {s: tasks.encode_rows(r, vocab, f"{task.name} {s}") for s, r in rows.items()}
    need = max(tasks.longest(ex)[1] for ex in every.values())
    if resumed_cfg is not None:
        cfg = resumed_cfg
    elif pretrained is not None:
        cfg = pretrained.config
    else:
        cfg = build_config(args, block_size=need, vocab=vocab)
    cfg = stretch_context(cfg, need)
    for split, ex in every.items():
        tasks.check_fits(ex, cfg.block_size, cfg.vocab_size, f"{task.name} {split}")
    if args.batching == "packed" and cfg.pos != "t5":
        raise UserError(f"--batching packed needs T5 relative positions; this model's are {cfg.pos}: "
                        "use --batching bucketed or random")

    dev_split = task.dev_split or task.id_split
    dev = every[dev_split or "train"]
    dev = random.Random(0).sample(dev, min(args.eval_examples, len(dev)))  # the same subset every eval
    # DDP: each process draws from its own part of the examples
    batches = tasks.Batches(every["train"][rank::world], args.batch_size, vocab.eot, args.batching)
    dev_batches = [tasks.train_batch(dev[s:s + args.batch_size], vocab.eot)
                   for s in range(0, len(dev), args.batch_size)]

    def batch(gen, rank, world):
        return batches(gen)

    def evaluate(model):
        preds = tasks.decode_examples(model, dev, batch_size=max(args.batch_size, 64))
        em = sum(tasks.is_exact_match(p, e) for p, e in zip(preds, dev)) / len(dev)
        return {"val_loss": mean_loss(model, dev_batches), f"{dev_split or 'train'}_exact_match": em}

    data = {"task": task.name, "train_examples": len(every["train"]), **vocab.describe(every["train"]),
            **{f"{s}_sha256": tasks.split_sha256(task, s, args.data_dir or None) for s in task.splits}}
    if pretrained is not None:
        data["init_from"] = {"path": str(resolve(args.init_from)), "step": ck.get("step"),
                             "val_loss": ck.get("val_loss"), "data": ck.get("data"),
                             "code_version": ck.get("code_version")}
    init = (lambda model: model.load_state_dict(pretrained.state_dict())) if pretrained is not None else None
    return Job(config=cfg, batch=batch, evaluate=evaluate, data=data, init=init,
               describe=f"{task.name}: " + ("from scratch " if pretrained is None else f"from {args.init_from} ")
               + f"vocab={vocab.kind}:{vocab.size} ")


def main(argv=None):
    return fit(get_args(argv), "finetune", make_job)


if __name__ == "__main__":
    main_guard(main)
