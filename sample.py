"""
Sample text from a pretrained checkpoint, to see what the model learned.

    python sample.py --out_dir out --prompt "Once upon a time" --num_samples 3
"""
import argparse

import torch

from checkpoint import load_model
from tasks import Vocab, generate
from common import (DTYPES, Parser, UserError, autocast, gpt2_encoder, integer, main_guard, pick_device, pick_dtype,
                    real)


def main(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default="out", help="run folder holding ckpt.pt")
    p.add_argument("--ckpt", default="", help="a checkpoint file (overrides --out_dir)")
    p.add_argument("--prompt", default="Once upon a time", help="text to continue")
    p.add_argument("--num_samples", type=integer(1), default=3, help="how many continuations")
    p.add_argument("--max_new_tokens", type=integer(1), default=100, help="tokens per continuation")
    p.add_argument("--temperature", type=real(lo=0), default=0.8, help="0 for greedy; higher is more random")
    p.add_argument("--top_k", type=integer(0), default=200, help="sample from the k likeliest tokens (0: all)")
    p.add_argument("--seed", type=integer(0), default=1337, help="sampling seed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="auto, float32 or bfloat16")
    a = p.parse_args(argv)
    device = pick_device(a.device)
    dtype = pick_dtype(a.dtype, device)
    model, _ = load_model(a.ckpt or a.out_dir, device)
    vocab = Vocab.of(model.config)  # a task model's own tokens; GPT-2's for a pretrained one
    if vocab.kind == "gpt2":
        ids = vocab.from_gpt2(gpt2_encoder().encode(a.prompt, allowed_special={"<|endoftext|>"})) or [vocab.eot]
    else:  # a fine-tuning prompt: the source, then SEP, as the task presents it
        ids = vocab.encode_texts([a.prompt], "--prompt")[0] + [vocab.sep]
    if len(ids) >= model.config.block_size:
        raise UserError(f"the prompt is {len(ids)} tokens; the model's context is {model.config.block_size}")
    gen = torch.Generator(device=device).manual_seed(a.seed)
    x = torch.tensor([ids] * a.num_samples, device=device)
    with autocast(device, dtype):
        outs = generate(model, x, a.max_new_tokens, eos_id=vocab.eot, temperature=a.temperature,
                       top_k=a.top_k or None, generator=gen)
    for o in outs:
        print(a.prompt + ("" if vocab.kind == "gpt2" else "\n") + vocab.decode(o))
        print("-" * 40)


if __name__ == "__main__":
    main_guard(main)
