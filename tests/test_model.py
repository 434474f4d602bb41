import json
import subprocess
import sys

import pytest
import torch

import tasks
from conftest import ROOT, small_model
from model import (BLOCKS, MODEL_CLASSES, POSITIONS, REL_BIAS, GPT, GPTConfig, config_for, count_params,
                   d_ff_for, t5_bucket)

OPTIONS = [(b, p) for b in BLOCKS for p in POSITIONS]


def test_published_41m_table():
    assert [d_ff_for("41M", n) for n in range(1, 8)] == [4779, 2048, 1138, 682, 409, 227, 97]
    cfg = config_for("41M", 2, vocab_size=32128, rel_bias="shared")
    assert count_params(cfg)["total"] == 41_290_496  # the paper's name, with one bias table
    cfg = config_for("41M", 2, vocab_size=32128)  # T5X at the time: a 32 x 8 table per layer more
    assert count_params(cfg)["total"] == 41_290_496 + 32 * 8
    assert config_for("134M", 4).d_ff == 8193 and config_for("134M", 32, quiet=True).d_ff == 128


@pytest.mark.parametrize("block,pos", OPTIONS)
@pytest.mark.parametrize("rel_bias", REL_BIAS)
@pytest.mark.parametrize("tie", [-1, 0, 1])
def test_count_params_matches_built_model(block, pos, rel_bias, tie):
    cfg = config_for("tiny", 3, block=block, pos=pos, vocab_size=1000, rel_bias=rel_bias, tie_embeddings=tie)
    model = GPT(cfg)
    c = count_params(cfg)
    assert c["total"] == sum(p.numel() for p in model.parameters())
    assert c["embedding"] + c["non_embedding"] == c["total"]


def test_one_bias_table_per_layer_by_default():
    """T5X's decoder-only models had a table per layer at the paper's time: 32 x n_head each.
    The tables are not part of the matched layer budget, so the d_ff column is unchanged."""
    per, shared = config_for("41M", 4), config_for("41M", 4, rel_bias="shared")
    assert per.rel_bias == "per_layer" and per.d_ff == shared.d_ff == 682
    assert count_params(per)["total"] - count_params(shared)["total"] == 3 * 32 * 8
    model = GPT(config_for("tiny", 3, vocab_size=100))
    tables = [n for n, _ in model.named_parameters() if "rel_bias" in n]
    assert tables == [f"blocks.{i}.attn.rel_bias.weight" for i in range(3)]


def test_t5x_init_ffn_output_variance_does_not_depend_on_d_ff():
    """Fan-in init: the FFN branch writes the same variance whatever its width (41M depth 1 vs
    depth 7: d_ff 4779 vs 97). Under GPT-2's N(0, 0.02) it falls with d_ff (the confound)."""
    x = torch.randn(2048, 512)  # what RMSNorm hands the FFN: unit RMS

    def ffn_var(depth, init):
        torch.manual_seed(0)
        model = GPT(config_for("41M", depth, vocab_size=64, init=init, quiet=True))
        with torch.no_grad():
            return model.blocks[0].ffn(x).var().item()

    t5x = ffn_var(1, "t5x") / ffn_var(7, "t5x")
    gpt2 = ffn_var(1, "gpt2") / ffn_var(7, "gpt2")
    assert 0.8 < t5x < 1.25
    assert gpt2 > 100  # 343 measured: the test can tell the two schemes apart


def test_attention_logits_scaled_once():
    """T5X shrinks q by sqrt(head_dim) because it does not scale logits; SDPA does, so q is not
    shrunk here: attention logits q.k / sqrt(64) start with unit variance, not 1/64."""
    torch.manual_seed(0)
    model = GPT(config_for("41M", 2, vocab_size=64))
    attn = model.blocks[0].attn
    x = torch.randn(1, 256, 512)
    with torch.no_grad():
        q, k, _ = attn.qkv(x).view(1, 256, 3, 8, 64).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / 8
    assert 0.7 < logits.std().item() < 1.4
    assert model.wte.weight.std().item() == pytest.approx(1.0, rel=0.05)  # T5X: embeddings N(0, 1)
    assert GPT(config_for("tiny", 2, vocab_size=64, block="gpt2")).wte.weight.std().item() < 0.05


def test_adafactor_takes_t5x_steps():
    """torch.optim.Adafactor, as make_optimizer builds it, steps each parameter by
    min(lr, 1/sqrt(t)) * max(1e-3, RMS(param)) (T5X's rule). With a constant gradient its
    normalized update is sign(g), so every element moves by exactly that amount."""
    import trainer
    for lr, steps in ((0.1, 300), (1e-3, 50)):
        p = torch.nn.Parameter(torch.tensor([0.5, -2.0, 1e-5, 3.0]))
        model = torch.nn.Module()
        model.p = p
        opt = trainer.make_optimizer(model, "cpu", "adafactor", lr)
        for t in range(1, steps + 1):
            before = p.detach().clone()
            p.grad = torch.tensor([1.0, -1.0, 1.0, 1.0])
            opt.step()
            rms = before.square().mean().sqrt().item()
            expected = min(lr, t ** -0.5) * max(1e-3, rms)
            assert (before - p.detach()).abs().tolist() == pytest.approx([expected] * 4, rel=1e-4), t


@pytest.mark.parametrize("block", BLOCKS)
def test_depths_share_the_budget(block):
    counts = [count_params(config_for("small", n, block=block, quiet=True))["non_embedding"]
              for n in range(1, 6)]
    # rounding d_ff moves each depth by less than half a d_ff unit per layer
    assert max(counts) - min(counts) < 5 * 3 * 256


def test_bad_depths_are_refused():
    with pytest.raises(ValueError, match="deepest possible is 7"):
        config_for("tiny", 8)
    with pytest.raises(ValueError, match="at least 1"):
        config_for("tiny", 0)
    with pytest.raises(ValueError, match="unknown model class"):
        config_for("huge", 2)


def test_narrow_ffn_warns_once(capsys):
    config_for("tiny", 5)
    err = capsys.readouterr().err
    assert "d_ff=102 < d_model=128" in err and err.count("\n") == 1
    config_for("tiny", 4)
    assert capsys.readouterr().err == ""


def test_t5_buckets():
    rel = -torch.arange(0, 300)
    b = t5_bucket(rel, 32, 128)
    assert b[:16].tolist() == list(range(16))           # exact for short distances
    assert b[16] == 16 and b[100] < 31 and b[128:].eq(31).all()  # log-spaced, then saturates
    assert (b[1:] >= b[:-1]).all()                       # monotone in distance
    assert t5_bucket(torch.tensor([5]), 32, 128).item() == 0  # future keys (masked anyway)


@pytest.mark.parametrize("block,pos", OPTIONS)
def test_cached_decoding_equals_cache_free(block, pos):
    model = small_model(block, pos).double().eval()
    torch.manual_seed(1)
    idx = torch.randint(0, 100, (4, 9))
    valid = torch.ones_like(idx, dtype=torch.bool)
    valid[0, :4] = False          # left padding of different lengths
    valid[2, :1] = False
    cached = tasks.generate(model, idx, 25, eos_id=100, valid=valid)
    plain = tasks.generate(model, idx, 25, eos_id=100, valid=valid, use_cache=False)
    assert cached == plain
    # padding does not change a row: row 0 decoded alone, unpadded, gives the same tokens
    assert tasks.generate(model, idx[:1, 4:], 25, eos_id=100) == cached[:1]


class Scripted(GPT):
    """A GPT whose next token is scripted: row r says token 1 until step stop[r], then eos."""
    def __init__(self, stop, prompt_len):
        super().__init__(GPTConfig(n_layer=1, n_head=1, d_model=8, d_ff=8, vocab_size=5, block_size=64))
        self.stop, self.prompt_len = stop, prompt_len

    def forward(self, idx, targets=None, valid=None, cache=None):
        step = valid.size(1) - self.prompt_len
        logits = torch.zeros(idx.size(0), idx.size(1), 5)
        for r, s in enumerate(self.stop):
            logits[r, -1, 4 if step == s else 1] = 1.0
        return logits


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_stops_at_each_rows_eos(use_cache):
    model = Scripted(stop=[2, 0, 30], prompt_len=3).eval()
    out = tasks.generate(model, torch.zeros(3, 3, dtype=torch.long), 10, eos_id=4, use_cache=use_cache)
    assert out == [[1, 1], [], [1] * 10]  # eos dropped; tokens after a row's eos never leak in


@pytest.mark.parametrize("block,pos", OPTIONS)
def test_padded_batch_matches_unpadded(block, pos):
    model = small_model(block, pos).double().eval()
    torch.manual_seed(2)
    seq = torch.randint(0, 100, (1, 7))
    padded = torch.cat((torch.zeros(1, 3, dtype=torch.long), seq), 1)
    valid = torch.tensor([[False] * 3 + [True] * 7])
    a = model(seq)[0]
    b = model(padded, valid=valid)[0, 3:]
    torch.testing.assert_close(a, b)


def test_too_long_sequence_is_refused():
    model = small_model("paper", "t5")
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "model.py"), *args], capture_output=True, text=True)


def test_cli_reproduces_paper_table():
    r = run_cli("--model_class", "41M", "--vocab_size", "32128", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["d_ff"] for row in rows] == [4779, 2048, 1138, 682, 409, 227, 97]
    assert rows[1]["params_total"] == 41_290_496 + 32 * 8 and rows[1]["rel_bias_tables"] == 2
    shared = json.loads(run_cli("--model_class", "41M", "--vocab_size", "32128", "--json",
                                "--rel_bias", "shared").stdout)
    assert shared[1]["params_total"] == 41_290_496 and shared[1]["rel_bias_tables"] == 1
    assert set(rows[0]) == {"n_layer", "n_unique", "d_model", "n_head", "d_ff", "d_ff/d_model", "rel_bias_tables",
                            "params_total", "params_non_embedding", "flops_per_token"}


@pytest.mark.parametrize("args,needle", [
    (["--model_class", "99M"], "invalid choice: '99M'"),
    (["--depths", "0"], "depth 0 is impossible"),
    (["--model_class", "tiny", "--depths", "9"], "allowed depths are 1 to 7"),
    (["--depths", "1,,x"], "comma-separated integers"),
])
def test_cli_bad_input(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_classes_have_head_size_64():
    for name, (d, *_rest) in MODEL_CLASSES.items():
        if d >= 512:
            assert config_for(name, 2).n_head == d // 64


# --- looped (weight-shared) models ---------------------------------------------------------------

@pytest.mark.parametrize("rel_bias", REL_BIAS)
def test_looped_model_equals_unlooped_with_the_same_weights(rel_bias):
    """n_unique = n_layer is the plain model; one block applied twice is a depth-2 model whose two
    blocks hold the same weights."""
    x = torch.randint(0, 101, (2, 12))
    assert torch.equal(small_model(rel_bias=rel_bias, n_unique=2)(x), small_model(rel_bias=rel_bias)(x))
    looped = small_model(rel_bias=rel_bias, n_unique=1)
    plain = small_model(rel_bias=rel_bias)
    state = looped.state_dict()
    state.update({k.replace("blocks.0.", "blocks.1."): v for k, v in state.items() if k.startswith("blocks.0.")})
    plain.load_state_dict(state)
    torch.testing.assert_close(looped(x), plain(x), rtol=0, atol=0)
    assert len(looped.blocks) == 1 and looped.config.n_layer == 2


@pytest.mark.parametrize("block,pos", OPTIONS)
@pytest.mark.parametrize("match", ["params", "compute"])
def test_looped_count_params_matches_built_model(block, pos, match):
    for n_unique, n_layer in ((1, 4), (2, 5)):
        cfg = config_for("tiny", n_layer, n_unique=n_unique, match=match, block=block, pos=pos,
                         vocab_size=1000, quiet=True)
        assert count_params(cfg)["total"] == sum(p.numel() for p in GPT(cfg).parameters())


def test_looped_matching_rules():
    """Matched parameters: the d_ff of depth K, the class's parameters, the FLOPs of more layers.
    Matched compute: the d_ff of depth L, the FLOPs of the depth-L model, fewer parameters."""
    k1, d4 = config_for("tiny", 1), config_for("tiny", 4)
    p = config_for("tiny", 4, n_unique=1, match="params")
    c = config_for("tiny", 4, n_unique=1, match="compute", quiet=True)
    assert p.d_ff == k1.d_ff == 1195 and c.d_ff == d4.d_ff == 170
    layer_params = count_params(k1)["non_embedding"]
    assert count_params(p)["non_embedding"] == layer_params
    assert count_params(c)["non_embedding"] < layer_params
    flops = {k: count_params(v)["forward_flops_per_token"] for k, v in dict(p=p, c=c, d4=d4, k1=k1).items()}
    assert flops["c"] == flops["d4"] and flops["p"] > flops["d4"] > flops["k1"]
    with pytest.raises(ValueError, match="n_unique must be between 1 and n_layer"):
        config_for("tiny", 2, n_unique=3)
    with pytest.raises(ValueError, match="unknown match"):
        config_for("tiny", 2, n_unique=1, match="both")


@pytest.mark.parametrize("block,pos", [("paper", "t5"), ("gpt2", "learned")])
def test_looped_cached_decoding_equals_cache_free(block, pos):
    model = small_model(block, pos, n_unique=1).double().eval()
    torch.manual_seed(1)
    idx = torch.randint(0, 100, (3, 7))
    valid = torch.ones_like(idx, dtype=torch.bool)
    valid[0, :3] = False
    assert tasks.generate(model, idx, 20, eos_id=100, valid=valid) == \
        tasks.generate(model, idx, 20, eos_id=100, valid=valid, use_cache=False)


def test_cli_reports_looping():
    rows = json.loads(run_cli("--model_class", "tiny", "--depths", "1,2,4", "--n_unique", "1", "--match",
                              "compute", "--json").stdout)
    assert [r["n_unique"] for r in rows] == [1, 1, 1] and [r["d_ff"] for r in rows] == [1195, 512, 170]
    assert rows[2]["flops_per_token"] > rows[1]["flops_per_token"]
