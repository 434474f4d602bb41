"""The fused head + loss (fused_loss.py) computes what the plain masked cross-entropy of
model.py computes: the same loss and the same gradients, in fp32 and under bf16 autocast."""
import pytest
import torch
import torch.nn.functional as F

from conftest import small_model
from model import BLOCKS


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("z_loss", [0.0, 0.1])
def test_chunked_loss_matches_plain(block, dtype, tol, z_loss):
    x = torch.randint(0, 101, (3, 20))
    y = torch.randint(0, 101, (3, 20))
    y[:, :5] = -1  # masked prompt tokens
    grads, losses = [], []
    for chunk in (0, 7):
        model = small_model(block, "t5", loss_chunk=chunk)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = model(x, targets=y, z_loss=z_loss)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(losses[0], losses[1], atol=tol, rtol=tol)
    for n in grads[0]:
        g0, g1 = grads[0][n], grads[1][n]
        assert (g0 - g1).norm() <= tol * g0.norm() + 1e-8, n
    # and the plain path is really the masked mean cross-entropy
    model = small_model(block, "t5", loss_chunk=0)
    logits = model(x).reshape(-1, 101)
    ref = F.cross_entropy(logits, y.reshape(-1), ignore_index=-1)
    torch.testing.assert_close(model(x, targets=y), ref)
    z = logits[y.reshape(-1) != -1].logsumexp(-1)  # T5X's z-loss: log(Z)^2 on the answer tokens
    torch.testing.assert_close(model(x, targets=y, z_loss=0.1), ref + 0.1 * z.square().mean())
