"""
Score a checkpoint.

Exact match (greedy decoding with the KV cache, batched) on a task's splits, with per-category
tables (COGS: the 21 generalization categories and their lexical / structural aggregates):

    python evaluate.py --ckpt out-finetune/ckpt.pt --task cogs               # test and gen
    python evaluate.py --ckpt out-finetune/ckpt.pt --task cogs --split gen --limit 500

Perplexity of a pretrained checkpoint on a corpus's validation split:

    python evaluate.py --ckpt out/ckpt.pt --dataset tinystories

Each run writes a JSON file (every prediction, the scores, the config, seed, code version and
the data's sha256) and prints a table.
"""
import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

import tasks
from checkpoint import load_checkpoint, load_model, model_from, resolve
from common import (DTYPES, Parser, UserError, autocast, code_version, folder_to_write, integer, main_guard,
                    pick_device, pick_dtype, write_atomic)
from corpus import bits_per_byte, ensure_prepared, eval_windows, load_corpus, mean_loss
from model import GPTConfig


def get_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--ckpt", required=True, help="checkpoint file, or a run folder holding ckpt.pt")
    a("--task", default="", choices=("",) + tuple(tasks.TASKS),
      help=f"score exact match on a task: {', '.join(tasks.TASKS)}")
    a("--split", default="", help="split(s) to score, comma-separated (default: in-distribution and generalization)")
    a("--data_dir", default="", help="folder with the task's prepared files (default: data/<task folder>)")
    a("--limit", type=integer(0), default=0, help="score only the first N examples of each split; with "
      "--dataset, N windows spread over the validation split (0: all)")
    a("--sample", action="store_true", help="with --limit: a seeded random N instead of the first N")
    a("--batch_size", type=integer(1), default=128, help="examples decoded together")
    a("--no_cache", action="store_true", help="decode without the KV cache (slow; the reference)")
    a("--dataset", default="", help="measure perplexity on this corpus's validation split instead")
    a("--block_size", type=integer(0), default=0, help="perplexity: window length (default: the model's)")
    a("--out", default="", help="JSON file for the results (default: next to the checkpoint)")
    a("--device", default="auto", help="auto, cpu, cuda or mps")
    a("--dtype", default="float32", choices=DTYPES, help="float32 or bfloat16 (auto: as train.py)")
    a("--seed", type=integer(0), default=0, help="seed for --sample")
    a("--transfer", action="store_true", help="score a model fine-tuned on another task on --task "
      "deliberately (recorded in the result)")
    return p.parse_args(argv)


def provenance(ck, ckpt_path):
    return {"checkpoint": str(ckpt_path), "model_config": ck["model_config"], "step": ck.get("step"),
            "seed": ck.get("run_config", {}).get("seed"), "train_run_config": ck.get("run_config"),
            "train_data": ck.get("data"), "code_version": code_version()}


def perplexity(model, dataset, data_dir, block_size, device, dtype, limit=0):
    """Loss, perplexity and bits per byte over the whole validation split (or limit windows spread
    over it), in non-overlapping windows, in the model's own vocabulary."""
    block_size = block_size or min(model.config.block_size, 1024)
    _, val, meta = load_corpus(dataset, ensure_prepared(dataset, data_dir), block_size, model.config.vocab_size)
    batches = eval_windows(val, block_size, limit or (len(val) - 1) // block_size, 16)
    with torch.no_grad(), autocast(device, dtype):
        loss = mean_loss(model, batches)
    return {"dataset": dataset, "val_sha256": meta.get("val_sha256"),
            "tokens": sum(int(x.numel()) for x, _ in batches), "block_size": block_size,
            "vocab_size": model.config.vocab_size, "val_loss": loss, "perplexity": math.exp(loss),
            "bits_per_byte": bits_per_byte(loss, batches, model.config.vocab_size)}


def score_split(model, task, split, examples, args):
    tasks.check_fits(examples, model.config.block_size, model.config.vocab_size, f"{task.name} {split}")
    if args.limit:
        examples = (random.Random(args.seed).sample(examples, min(args.limit, len(examples))) if args.sample
                    else examples[:args.limit])
    t0 = time.time()
    preds = tasks.decode_examples(model, examples, args.batch_size, use_cache=not args.no_cache)
    seconds = time.time() - t0
    result, hits = tasks.score(examples, preds, task)
    result.update(split=split, seconds=seconds, examples_per_s=len(examples) / seconds,
                  sha256=tasks.split_sha256(task, split, args.data_dir or None),
                  predictions=[{"source": e.source, "target": e.target, "prediction": p, "category": e.category,
                                "correct": h} for e, p, h in zip(examples, preds, hits)])
    return result


def print_table(task, results):
    print(f"\n{task.name}: exact match (%)")
    for r in results:
        print(f"  {r['split']:<8} {100 * r['exact_match']:6.2f}  (n={r['n']}, {r['examples_per_s']:.1f} examples/s)")
        for group in ("lexical", "structural"):
            if group in r:
                print(f"    {group:<48} {100 * r[group]['exact_match']:6.2f}  (n={r[group]['n']})")
        if len(r["categories"]) > 1:
            for c, v in r["categories"].items():
                mark = " *" if c in task.structural else ""
                print(f"    {c + mark:<48} {100 * v['exact_match']:6.2f}  (n={v['n']})")


def main(argv=None):
    args = get_args(argv)
    if bool(args.task) == bool(args.dataset):
        raise UserError("give --task (exact match) or --dataset (perplexity), one of them")
    ckpt_path = resolve(args.ckpt)
    if args.out and Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; give a JSON file name")
    if not ckpt_path.is_file():  # before any data is read or prepared
        raise UserError(f"no checkpoint at {ckpt_path}")
    folder_to_write(Path(args.out).parent if args.out else ckpt_path.parent, "--out")
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    if args.dataset:
        model, ck = load_model(ckpt_path, device)
        report = provenance(ck, ckpt_path)
        report["perplexity"] = perplexity(model, args.dataset, args.data_dir, args.block_size, device, dtype,
                                          args.limit)
        p = report["perplexity"]
        print(f"{args.dataset} validation: loss {p['val_loss']:.4f}, perplexity {p['perplexity']:.2f}, "
              f"{p['bits_per_byte']:.4f} bits per byte over {p['tokens']:,} tokens")
        name = f"ppl_{args.dataset}"
    else:
        task = tasks.get_task(args.task)
        default = [s for s in dict.fromkeys((task.id_split, task.gen_split)) if s]
        splits = args.split.split(",") if args.split else default
        for s in splits:
            tasks.split_path(task, s)  # an unknown split fails before any split is read or prepared
        ck = load_checkpoint(ckpt_path)
        trained = (ck.get("data") or {}).get("task") if ck.get("kind") == "finetune" else None
        if trained and trained != task.name and not args.transfer:
            raise UserError(f"{ckpt_path} was fine-tuned on {trained}, not {task.name}; score it with --task "
                            f"{trained}, or pass --transfer to score it on {task.name} deliberately")
        vocab = tasks.Vocab.of(GPTConfig(**ck["model_config"]))  # the examples in the model's own tokens
        ensure_prepared(task.folder, args.data_dir)
        every = {s: tasks.read_split(task, s, args.data_dir or None, vocab) for s in splits}
        need = max(tasks.longest(ex)[1] for ex in every.values())
        model = model_from(ck, ckpt_path, device, context=need)
        report = provenance(ck, ckpt_path)
        with autocast(device, dtype):
            results = [score_split(model, task, s, every[s], args) for s in splits]
        report.update(task=task.name, trained_on=trained, transfer=bool(trained and trained != task.name),
                      limit=args.limit, cache=not args.no_cache, results=results)
        print_table(task, results)
        name = f"eval_{task.name}" + (f"_limit{args.limit}" if args.limit else "")
    out = Path(args.out) if args.out else ckpt_path.parent / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)  # checked writable before the scoring began
    write_atomic(out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main_guard(main)
