"""
The decoder-only transformer of Petty et al. (2024), written by hand, and the rule that trades
depth for feed-forward width at a fixed parameter count.

  block=paper: T5X decoder-only: pre-norm RMSNorm (scale only), no biases, gated-GELU FFN
               wo(gelu(wi_0 x) * wi_1 x), T5 relative position bias (one table per layer), untied
               head, T5X's fan-in initialisation. block=gpt2: nanoGPT's block (LayerNorm, biases,
               GELU MLP, learned positions, tied embeddings). pos (t5 | learned | rope) is its own dial.
Looping (n_unique < n_layer): n_unique distinct blocks cycled for n_layer applications (weight
sharing as in Universal Transformers): the parameters of n_unique layers, the compute of n_layer.

Run `python model.py --model_class 41M` for a class's depth/width table.
"""
import json
import math
import sys
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

GPT2_VOCAB = 50257


@dataclass
class GPTConfig:
    n_layer: int = 2                # block applications (depth)
    n_head: int = 2
    d_model: int = 128
    d_ff: int = 512
    vocab_size: int = GPT2_VOCAB
    vocab: str = "gpt2"             # what ids stand for (tasks.Vocab): gpt2 (or a prefix of it) | task | word
    tokens: list = field(default_factory=list)  # task/word: the GPT-2 id or word of each row
    block_size: int = 256           # longest sequence the model is asked to handle
    block: str = "paper"            # paper | gpt2
    pos: str = ""                   # t5 | learned | rope; "" = the block's own (t5 / learned)
    num_buckets: int = 32           # T5 relative position bias
    max_distance: int = 128
    rel_bias: str = "per_layer"     # T5 bias tables: per_layer (T5X at the paper's time) | shared
    init: str = ""                  # t5x | gpt2; "" = the block's own (paper: t5x, gpt2: gpt2)
    tie_embeddings: int = -1        # 1: output head = input embedding; 0: untied; -1: the block's own
    dropout: float = 0.0
    n_unique: int = 0               # distinct blocks, cycled over the n_layer applications; 0 = n_layer
    loss_chunk: int = -1            # GPT.loss's speed path: tokens per chunk; 0 = plain; -1 = the device's best

    def __post_init__(self):
        if self.tokens:  # a task or word vocabulary: one embedding row per token it holds
            self.vocab_size = len(self.tokens)
        check_choice("block", self.block, BLOCKS)
        paper = self.block == "paper"  # the placeholders take the block's own value
        self.pos, self.init = self.pos or ("t5" if paper else "learned"), self.init or ("t5x" if paper else "gpt2")
        self.tie_embeddings = int(not paper) if self.tie_embeddings < 0 else self.tie_embeddings
        self.n_unique = self.n_unique or self.n_layer
        for name, value, allowed in (("pos", self.pos, POSITIONS), ("rel_bias", self.rel_bias, REL_BIAS),
                                     ("init", self.init, INITS)):
            check_choice(name, value, allowed)
        check_loop(self.n_layer, self.n_unique)
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")

    @property
    def n_rel_tables(self):
        return (self.n_unique if self.rel_bias == "per_layer" else 1) if self.pos == "t5" else 0


BLOCKS = ("paper", "gpt2")
MATCHES = ("params", "compute")
POSITIONS = ("t5", "learned", "rope")
REL_BIAS = ("per_layer", "shared")
INITS = ("t5x", "gpt2")


def check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")


def check_loop(n_layer, n_unique):
    if n_layer < 1:
        raise ValueError(f"n_layer must be at least 1, got {n_layer}")
    if not 1 <= n_unique <= n_layer:
        raise ValueError(f"n_unique must be between 1 and n_layer ({n_layer}), got {n_unique}")

# ----------------------------------------------------------------------------------------------
# Parameter matching (Petty et al. 2024, section 3): depth is traded against d_ff alone. d_model,
# heads, vocabulary and embeddings are fixed within a class; a class is a reference depth L_ref
# and width d_ff_ref, whose layers hold P = L_ref * (4 d^2 + 2 d + 3 d d_ff_ref) parameters
# (QKVO, two norm scales, the gated FFN). Depth L gets d_ff(L) = round((P - L (4 d^2 + 2 d)) / (3 d L)),
# so every depth of a class has the same parameter count (41M class: P = 8,390,656).

# name: (d_model, reference depth, reference d_ff, default depths for tables and sweeps)
MODEL_CLASSES = {
    "tiny": (128, 2, 512, [1, 2, 3, 4, 5, 6, 7]),
    "small": (256, 2, 1024, [1, 2, 3, 4, 5, 6, 7]),
    "41M": (512, 2, 2048, [1, 2, 3, 4, 5, 6, 7]),
    "134M": (768, 12, 2048, [1, 2, 4, 6, 8, 12, 16, 21, 26, 32]),
    "374M": (1024, 24, 2816, [1, 2, 4, 6, 8, 12, 16, 24, 32]),
}
HEAD_DIM = 64


def layer_params(d, block):
    """Per-layer parameter count as (fixed, per unit of d_ff): layer = fixed + per_dff * d_ff."""
    if block == "paper":
        return 4 * d * d + 2 * d, 3 * d            # QKVO, two RMSNorm scales | wi_0, wi_1, wo
    # gpt2: QKVO + their biases, two LayerNorms (scale+bias), MLP biases on the output side
    return 4 * d * d + 4 * d + 4 * d + d, 2 * d + 1  # | c_fc, c_proj and c_fc's bias


def d_ff_for(model_class, n_layer, block="paper"):
    """The d_ff that gives `n_layer` layers the class's layer budget (0 or less: impossible)."""
    d, l_ref, dff_ref, _ = MODEL_CLASSES[model_class]
    fixed, per_dff = layer_params(d, block)
    budget = l_ref * (fixed + per_dff * dff_ref)
    return round((budget - n_layer * fixed) / (n_layer * per_dff))


def deepest(model_class, block="paper"):
    return next(n for n in range(1, 10**6) if d_ff_for(model_class, n + 1, block) < 1)


def config_for(model_class, n_layer, quiet=False, n_unique=0, match="params", **overrides):
    """GPTConfig for depth n_layer of a size class, its d_ff solved to keep the layer budget.
    Looped (0 < n_unique < n_layer), d_ff is that of an unlooped model of depth n_unique
    (match="params": the class's parameter count, the compute of n_layer applications) or of depth
    n_layer (match="compute": the depth-n_layer model's FLOPs, fewer parameters)."""
    block = overrides.get("block", "paper")
    for name, value, allowed in (("match", match, MATCHES), ("model class", model_class, MODEL_CLASSES),
                                 ("block", block, BLOCKS)):
        check_choice(name, value, allowed)
    check_loop(n_layer, n_unique or n_layer)
    looped = 0 < n_unique < n_layer
    d_ff = d_ff_for(model_class, n_unique if looped and match == "params" else n_layer, block)
    if d_ff < 1:
        raise ValueError(f"class {model_class} cannot hold {n_layer} layers (d_ff would be {d_ff}); "
                         f"the deepest possible is {deepest(model_class, block)}")
    d = MODEL_CLASSES[model_class][0]
    if d_ff < d and not quiet:
        print(f"warning: {model_class} at n_layer={n_layer} has d_ff={d_ff} < d_model={d}, the regime "
              "where the paper saw perplexity get worse", file=sys.stderr)
    return GPTConfig(n_layer=n_layer, n_unique=n_unique, n_head=d // HEAD_DIM, d_model=d, d_ff=d_ff,
                     **overrides)


def count_params(cfg, context=None):
    """Parameter counts (and forward FLOPs per token) from the config alone, without building."""
    d, V = cfg.d_model, cfg.vocab_size
    fixed, per_dff = layer_params(d, cfg.block)
    layers = cfg.n_unique * (fixed + per_dff * cfg.d_ff)  # shared blocks are counted once
    final_norm = d if cfg.block == "paper" else 2 * d
    pos = {"t5": cfg.num_buckets * cfg.n_head * cfg.n_rel_tables, "learned": cfg.block_size * d,
           "rope": 0}[cfg.pos]
    embedding = V * d * (1 if cfg.tie_embeddings else 2) + (pos if cfg.pos == "learned" else 0)
    non_embedding = layers + final_norm + (pos if cfg.pos == "t5" else 0)
    # Forward FLOPs per token (Kaplan et al. 2020): 2 per matmul weight, the head included, plus
    # 2 * n_layer * context * d for attention; a looped model pays for every application.
    matmul_weights = cfg.n_layer * (4 * d * d + (3 if cfg.block == "paper" else 2) * d * cfg.d_ff) + V * d
    ctx = context or cfg.block_size
    flops = 2 * matmul_weights + 2 * cfg.n_layer * ctx * d
    return {"total": embedding + non_embedding, "embedding": embedding,
            "non_embedding": non_embedding, "forward_flops_per_token": flops}


# ----------------------------------------------------------------------------------------------
# Building blocks

class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),), self.weight, eps=1e-6)


def t5_bucket(relative_position, num_buckets, max_distance):
    """T5's causal (unidirectional) bucketing of key_pos - query_pos: half the buckets are exact
    distances, the rest grow logarithmically up to max_distance; future keys fall in bucket 0."""
    n = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(n.float().clamp(min=1) / max_exact)
                         / math.log(max_distance / max_exact) * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return torch.where(n < max_exact, n, large)


def add_rel_bias(mask, table, buckets):
    """mask + the T5 bias of each (query, key) bucket, per head. Contiguous: a mask whose last
    dimension is strided sends GPU attention to the slow math kernel (seen on an H100)."""
    return (mask + table(buckets).permute(2, 0, 1)[None]).contiguous()


def rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)  # rotate each (x1, x2) pair of channels by its position's angle
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        bias = cfg.block == "gpt2"
        self.n_head = cfg.n_head
        if cfg.pos == "t5" and cfg.rel_bias == "per_layer":  # this layer's own T5 bias table
            self.rel_bias = nn.Embedding(cfg.num_buckets, cfg.n_head)
            self.rel_bias.rel_table = True
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=bias)
        self.o = nn.Linear(cfg.d_model, cfg.d_model, bias=bias)
        self.o.residual = True
        self.dropout = cfg.dropout

    def forward(self, x, mask, rot, cache, buckets=None):
        B, T, C = x.shape
        if buckets is not None:  # this layer's own bias table
            mask = add_rel_bias(mask, self.rel_bias, buckets)
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if rot is not None:
            q, k = rope(q, *rot), rope(k, *rot)
        if cache is not None:  # cache = [k, v] of this layer, or [] on the first call
            if cache:
                k, v = torch.cat((cache[0], k), 2), torch.cat((cache[1], v), 2)
            cache[:] = [k, v]
        # the mask carries causality, padding and the T5 bias as one additive float tensor.
        # (T5 folds 1/sqrt(head size) into its initialisation; here SDPA applies it as usual.)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype),
                                           is_causal=mask is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gated = cfg.block == "paper"
        if self.gated:  # gated GELU: wo(gelu(wi_0 x) * wi_1 x)
            self.wi = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)  # wi_0 and wi_1 stacked
        else:
            self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=True)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=not self.gated)
        self.wo.residual = True

    def forward(self, x):
        h = self.wi(x)
        if self.gated:
            gate, h = h.chunk(2, dim=-1)
            return self.wo(F.gelu(gate, approximate="tanh") * h)
        return self.wo(F.gelu(h, approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        Norm = RMSNorm if cfg.block == "paper" else nn.LayerNorm
        self.norm1, self.attn = Norm(cfg.d_model), Attention(cfg)
        self.norm2, self.ffn = Norm(cfg.d_model), FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, rot, cache=None, buckets=None):
        x = x + self.drop(self.attn(self.norm1(x), mask, rot, cache, buckets))
        return x + self.drop(self.ffn(self.norm2(x)))


# ----------------------------------------------------------------------------------------------
# The model

class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.pos == "learned":
            self.wpe = nn.Embedding(cfg.block_size, cfg.d_model)
        elif cfg.pos == "t5" and cfg.rel_bias == "shared":  # one table for all layers, as in T5
            self.rel_bias = nn.Embedding(cfg.num_buckets, cfg.n_head)
            self.rel_bias.rel_table = True
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_unique))
        self.norm_f = RMSNorm(cfg.d_model) if cfg.block == "paper" else nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_t5x if cfg.init == "t5x" else self._init_gpt2)

    def _init_t5x(self, module):
        # T5X: every dense kernel std 1/sqrt(fan_in), so an FFN of d_ff 97 writes into the residual
        # stream as strongly as one of d_ff 4779 (GPT-2's fixed 0.02 would leave deep, narrow models
        # with near-inert FFNs: a confound with depth). T5X's shrinking of q by sqrt(head_dim) is
        # SDPA's logit scaling here. Embeddings N(0, 1); bias tables variance_scaling(fan_avg).
        if isinstance(module, nn.Linear):  # T5X divides std by the truncation's shrinkage
            std = 1 / math.sqrt(module.weight.size(1)) / 0.87962566
            nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        elif getattr(module, "rel_table", False):
            limit = math.sqrt(3 / ((module.weight.size(0) + module.weight.size(1)) / 2))
            nn.init.uniform_(module.weight, -limit, limit)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0)

    def _init_gpt2(self, module):
        # GPT-2's scheme (as in nanoGPT): N(0, 0.02) everywhere, and the projections that write
        # into the residual stream scaled by 1/sqrt(2 * n_layer), so the residual stream's
        # variance at init does not grow with depth.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = 0.02 / (math.sqrt(2 * self.config.n_layer) if getattr(module, "residual", False) else 1)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def _attention_inputs(self, T, past, valid, device, segments=None):
        """Additive attention mask (with the T5 bias) and rotary angles for query positions
        past..past+T-1 against keys 0..past+T-1. `valid` (B, past+T) marks real tokens; padding
        is on the left, so for real tokens index differences are true distances."""
        cfg = self.config
        q_idx = torch.arange(past, past + T, device=device)
        k_idx = torch.arange(past + T, device=device)
        pos, rot, mask, buckets = None, None, None, None
        if cfg.pos != "t5":  # absolute positions count real tokens only
            pos = (valid.long().cumsum(1) - 1).clamp(min=0)[:, past:] if valid is not None else q_idx[None]
        if cfg.pos == "rope":
            hd = cfg.d_model // cfg.n_head
            inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=device).float() / hd))
            ang = pos.float()[:, None, :, None] * inv  # (B|1, 1, T, hd/2)
            rot = (ang.cos(), ang.sin())
        if cfg.pos == "t5" or valid is not None or past > 0 or segments is not None:
            allowed = (k_idx[None, :] <= q_idx[:, None])[None, None]  # causal, (1, 1, T, K)
            if segments is not None:  # packed examples: block-diagonal, each sees itself only
                allowed = allowed & (segments[:, None, :, None] == segments[:, None, None, :])
            if valid is not None:  # padding keys are hidden; the diagonal stays so no row is empty
                allowed = allowed & (valid[:, None, None, :] | (k_idx[None, :] == q_idx[:, None]))
            mask = torch.zeros(allowed.shape, device=device).masked_fill(~allowed, float("-inf"))
            if cfg.pos == "t5":
                buckets = t5_bucket(k_idx[None, :] - q_idx[:, None], cfg.num_buckets, cfg.max_distance)
                if cfg.rel_bias == "shared":  # added once here; per-layer tables in each Attention
                    mask, buckets = add_rel_bias(mask, self.rel_bias, buckets), None
        return mask, rot, pos, buckets

    def forward(self, idx, targets=None, valid=None, cache=None, z_loss=0.0, segments=None):
        """idx (B, T) token ids. targets (B, T): the loss is returned, mean over targets != -1.
        valid (B, T_past + T) bool: which tokens are real (left padding), for batched decoding.
        cache: a list of [k, v] lists, one per block application, filled and extended in place.
        z_loss: weight of T5X's auxiliary loss log(Z)^2, which keeps the softmax normalizer near 1.
        segments (B, T): packed examples (tasks.packed_batch), attention kept within each.
        Without targets, the logits (B, T, vocab) are returned."""
        B, T = idx.shape
        if segments is not None and self.config.pos != "t5":
            raise ValueError("packed examples need T5 relative positions (absolute ones would run across examples)")
        past = cache[0][0].size(2) if cache and cache[0] else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds block_size {self.config.block_size}")
        mask, rot, pos, buckets = self._attention_inputs(T, past, valid, idx.device, segments)
        x = self.wte(idx)
        if self.config.pos == "learned":
            x = x + self.wpe(pos)
        x = self.drop(x)
        for i in range(self.config.n_layer):  # blocks in order, cycling when looped
            block = self.blocks[i % self.config.n_unique]
            x = block(x, mask, rot, None if cache is None else cache[i], buckets)
        x = self.norm_f(x)
        if self.config.tie_embeddings and self.config.init == "t5x":
            x = x * self.config.d_model ** -0.5  # T5: a tied head over N(0, 1) embeddings is rescaled
        if targets is None:
            return self.lm_head(x)
        return self.loss(x, targets, z_loss)

    def loss(self, x, targets, z_loss=0.0):
        """The masked cross-entropy: mean over the positions whose target is not -1 (fine-tuning
        marks everything but the answer -1: minGPT's adder). z_loss adds T5X's z_loss * log(Z)^2.
        loss_chunk != 0 takes the speed path: the same numbers from fused_loss.py, which never
        holds all the logits at once (tests/test_fused_loss.py proves them equal)."""
        keep = targets.reshape(-1) != -1  # only answer tokens carry loss: drop the rest first
        h, t = x.reshape(-1, x.size(-1))[keep], targets.reshape(-1)[keep]
        if self.config.loss_chunk:
            from fused_loss import fused_head_loss
            return fused_head_loss(h, self.lm_head.weight, t, z_loss, self.config.loss_chunk)
        logits = self.lm_head(h).float()  # a no-op in fp32; under bf16 autocast the loss is taken in fp32
        loss = F.cross_entropy(logits, t)
        return loss + z_loss * logits.logsumexp(-1).square().mean() if z_loss else loss


# ----------------------------------------------------------------------------------------------
# Command line: a class's table (python model.py --model_class 41M --vocab_size 32128)

def main(argv=None):
    from common import Parser, UserError, integer, parse_int_list  # the model itself needs nothing of the project
    p = Parser(description="A size class's table: at each depth, the d_ff that keeps the class's parameter count.")
    a = p.add_argument
    a("--model_class", default="41M", choices=tuple(MODEL_CLASSES), help="size class")
    a("--vocab_size", type=integer(1), default=GPT2_VOCAB, help="GPT-2 BPE: 50257; the paper's T5: 32128")
    a("--depths", default="", help="comma-separated depths (default: the class's list)")
    a("--block", default="paper", choices=BLOCKS, help="paper (T5X decoder-only) or gpt2 (nanoGPT)")
    a("--rel_bias", default="per_layer", choices=REL_BIAS, help="T5 bias tables: per_layer (T5X at the paper's "
      "time) or shared (one, the paper's totals)")
    a("--n_unique", type=integer(0), default=0, help="looped: this many distinct blocks (0: all)")
    a("--match", default="params", choices=MATCHES, help="looped d_ff: depth n_unique's or the depth's own")
    a("--context", type=integer(1), default=1024, help="context length for attention FLOPs")
    a("--json", action="store_true", help="print one JSON list instead of a table")
    a, rows = p.parse_args(argv), []
    try:  # the class's own list stops where this block's layers run out; a depth asked for must exist
        depths = parse_int_list(a.depths, "--depths") if a.depths else [
            n for n in MODEL_CLASSES[a.model_class][3] if d_ff_for(a.model_class, n, a.block) >= 1]
        for n in depths:
            if n < 1 or d_ff_for(a.model_class, n, a.block) < 1:
                raise ValueError(f"depth {n} is impossible for class {a.model_class}; allowed depths are 1 "
                                 f"to {deepest(a.model_class, a.block)}")
            c = config_for(a.model_class, n, quiet=True, n_unique=min(a.n_unique, n), vocab_size=a.vocab_size,
                           block=a.block, rel_bias=a.rel_bias, match=a.match)
            k = count_params(c, a.context)
            rows.append({"n_layer": n, "n_unique": c.n_unique, "d_model": c.d_model, "n_head": c.n_head, "d_ff": c.d_ff,
                         "d_ff/d_model": round(c.d_ff / c.d_model, 3), "rel_bias_tables": c.n_rel_tables,
                         "params_total": k["total"], "params_non_embedding": k["non_embedding"],
                         "flops_per_token": k["forward_flops_per_token"]})
    except ValueError as e:
        raise UserError(str(e)) from None
    fmt = lambda r: " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in r)  # noqa: E731
    print(json.dumps(rows) if a.json else "\n".join(map(fmt, [list(rows[0])] + [list(r.values()) for r in rows])))


if __name__ == "__main__":
    from common import main_guard
    main_guard(main)
