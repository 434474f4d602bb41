"""
The output head and its cross-entropy, fused and in chunks of tokens: the speed path of
GPT.loss (model.py, taken when GPTConfig.loss_chunk is not 0), numerically equal to the plain
masked cross-entropy written there (tests/test_fused_loss.py).

Why: the whole (tokens x vocabulary) logits tensor dominates a small model's step, on a CPU in
memory traffic and on a GPU in fp32 copies.
"""
import torch


def fused_head_loss(h, w, targets, z_loss=0.0, chunk=-1):
    """The mean cross-entropy of h @ w.T, made chunk by chunk in the autocast precision. chunk < 0:
    measured best, 256 tokens on a CPU (small buffers stay in cache) and 8192 on a GPU (large
    matmuls), results/PERFORMANCE.md."""
    dev = h.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
    chunk = chunk if chunk > 0 else (256 if dev == "cpu" else 8192)
    with torch.autocast(dev, enabled=False):
        return ChunkedCrossEntropy.apply(h, w, targets, chunk, dtype, z_loss)


class ChunkedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of h @ w.T against targets without ever holding all the logits.

    The whole (tokens x 50k) logits tensor is what dominates a small model's step on CPU. Each
    chunk's logits are made, turned into their gradient (softmax - onehot) on the spot, and
    dropped; the gradients of h and w are kept for backward, so nothing is recomputed.
    The vocabulary is padded to a multiple of 64 with logits of -inf (softmax 0): GPT-2's 50257
    makes every logits row misaligned, which sends GPU matmuls to slow kernels (measured on an H100).
    z_loss adds z_loss * log(Z)^2 per token (T5X); its gradient scales each row's softmax by
    (1 + 2 z_loss log Z)."""

    @staticmethod
    def forward(ctx, h, w, targets, chunk, dtype, z_loss=0.0):
        n = max(targets.numel(), 1)
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        V = w.size(0)
        wc = w.to(dtype)
        if V % 64:
            wc = torch.cat((wc, wc.new_zeros(64 - V % 64, wc.size(1))))
        acc = torch.promote_types(dtype, torch.float32)  # logits and loss in fp32 (or fp64)
        loss = torch.zeros((), dtype=acc, device=h.device)
        grad_h = torch.empty_like(h) if need_grad else None
        grad_w = torch.zeros(wc.shape, dtype=acc, device=w.device) if need_grad else None
        buf = None  # one logits buffer reused by every chunk: fresh 100 MB tensors cost page faults
        for s in range(0, h.size(0), chunk):
            hc, tc = h[s:s + chunk].to(dtype), targets[s:s + chunk]
            rows = torch.arange(len(tc), device=h.device)
            if dtype == acc:  # fp32 (the CPU path): an exact softmax, in place in one reused buffer
                if buf is None:
                    buf = torch.empty(min(chunk, h.size(0)), wc.size(0), dtype=acc, device=h.device)
                e = torch.mm(hc, wc.t(), out=buf[:len(tc)])
                e[:, V:] = float("-inf")
                target_logit = e[rows, tc]
                m = e.amax(dim=-1, keepdim=True)
                p = e.sub_(m).exp_()  # exp(x - max) never overflows; softmax = p / z
                z = p.sum(dim=-1, keepdim=True)
                lse = m + z.log()  # log Z, (chunk, 1)
                loss += (lse.squeeze(1) - target_logit).sum()
            else:  # bf16 (GPUs): the logits are bf16 already, so one fused softmax pass (fp32 inside)
                e = hc @ wc.t()
                e[:, V:] = float("-inf")
                p, z = torch.softmax(e, dim=-1), 1.0
                # -log p[target] from bf16 p: off by at most 2^-8 relative in p, i.e. 0.004 in the
                # token's loss, less than the rounding of the bf16 logits themselves
                nll = -p[rows, tc].to(acc).clamp_min(torch.finfo(dtype).tiny).log()
                loss += nll.sum()
                lse = (nll + e[rows, tc].to(acc))[:, None]  # log Z = -log p[target] + its logit
            if z_loss:
                loss += z_loss * lse.square().sum()
                z = z / (1 + 2 * z_loss * lse)  # folds the z-loss gradient into the softmax scale
            if need_grad:
                # d loss / d logits = (softmax - onehot) / n. The division by z and n and the
                # onehot are applied to the small operands, never to the (chunk x vocab) tensor.
                grad_h[s:s + chunk] = (((p @ wc).to(acc) / z - wc[tc].to(acc)) / n).to(h.dtype)
                hz = (hc.to(acc) / (z * n)).to(dtype)
                if dtype == acc:
                    grad_w.addmm_(p.t(), hz)  # in place: no (vocab x d) temporary per chunk
                else:
                    grad_w += (p.t() @ hz).to(acc)
                grad_w.index_add_(0, tc, -hc.to(acc) / n)
        if need_grad:
            ctx.save_for_backward(grad_h, grad_w[:V].to(w.dtype))
        return loss / n

    @staticmethod
    def backward(ctx, g):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * g, grad_w * g, None, None, None, None
