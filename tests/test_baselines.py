"""Baselines (LSTM, GRU, causal Transformer, LRU state-space model), the registry and width matching."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from qlam_tn.models import registry
from qlam_tn.models.common import count_parameters, match_hidden_size
from qlam_tn.models.llama import LlamaClassifier
from qlam_tn.models.mamba import MambaClassifier
from qlam_tn.models.rnn import GRUClassifier, LSTMClassifier
from qlam_tn.models.ssm import (
    LRU,
    SSMClassifier,
    diagonal_recurrence,
    diagonal_scan_fft,
)
from qlam_tn.models.transformer import Block, TransformerClassifier
from torch import nn

# small configurations: every code path (stacked layers, both position kinds) at test speed
SMALL = {
    "lstm": ("lstm", {"hidden_size": 8, "num_layers": 2}),
    "gru": ("gru", {"hidden_size": 8, "num_layers": 2}),
    "transformer": ("transformer", {"d_model": 8, "nhead": 2, "num_layers": 2}),
    "transformer-learned": ("transformer", {"d_model": 8, "nhead": 2, "num_layers": 2, "positions": "learned", "max_len": 16}),
    "ssm": ("ssm", {"d_model": 8, "state_size": 6, "num_layers": 2}),
    # from transformers (the test extra installs it)
    "mamba": ("mamba", {"hidden_size": 8, "state_size": 4, "num_layers": 2}),
    "llama": ("llama", {"hidden_size": 8, "num_layers": 2}),
}
F_IN, C = 5, 3


def small(key, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    name, cfg = SMALL[key]
    return registry.build(name, F_IN, C, **cfg).to(dtype)


def stream(model, x):
    state = model.init_state(x.shape[0])
    outs = []
    for t in range(x.shape[1]):
        logits, state = model.step(x[:, t], state)
        outs.append(logits)
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("key", SMALL)
def test_streaming_equals_forward(key):
    model = small(key)
    x = torch.randn(3, 11, F_IN, dtype=torch.float64)
    with torch.no_grad():
        full = model(x)
        every = model.forward_sequence(x)
        streamed = stream(model, x)
    assert full.shape == (3, C)
    torch.testing.assert_close(streamed[:, -1], full, rtol=0, atol=1e-10)
    torch.testing.assert_close(streamed, every, rtol=0, atol=1e-10)
    torch.testing.assert_close(every[:, -1], full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("key", ["lstm", "gru", "ssm"])
def test_streaming_state_has_constant_size(key):
    model = small(key)
    state = model.init_state(2)
    sizes = []
    for _ in range(5):
        _, state = model.step(torch.randn(2, F_IN, dtype=torch.float64), state)
        sizes.append(sum(t.numel() for t in (state if isinstance(state, tuple) else (state,))))
    assert len(set(sizes)) == 1


def test_transformer_kv_cache_grows_with_tokens():
    model = small("transformer")
    state = model.init_state(2)
    for t in range(1, 5):
        _, state = model.step(torch.randn(2, F_IN, dtype=torch.float64), state)
        assert state.t == t
        assert all(k.shape == (2, 2, t, 4) and v.shape == (2, 2, t, 4) for k, v in state.layers)


@pytest.mark.parametrize("key", SMALL)
def test_gradients_reach_every_parameter(key):
    model = small(key)
    x = torch.randn(4, 9, F_IN, dtype=torch.float64)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 1])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert (p.grad != 0).any(), name


def _task(n=64, T=12, seed=0):
    """Two classes: is the first token's feature 0 positive? Needs memory across the sequence."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, T, F_IN, generator=g)
    return x, (x[:, 0, 0] > 0).long()


@pytest.mark.parametrize("key", SMALL)
def test_few_steps_lower_the_loss(key):
    torch.manual_seed(0)
    name, cfg = SMALL[key]
    model = registry.build(name, F_IN, 2, **cfg)
    x, y = _task()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("key", SMALL)
def test_same_seed_same_result(key):
    def run():
        model = small(key, dtype=torch.float32, seed=7)
        x, y = _task(n=8, T=6, seed=3)
        y = y.clamp(max=C - 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return model(x), [p.detach().clone() for p in model.parameters()]

    (out1, p1), (out2, p2) = run(), run()
    assert torch.equal(out1, out2)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


@pytest.mark.parametrize("key", SMALL)
def test_causal_outputs_ignore_later_inputs(key):
    model = small(key)
    x = torch.randn(2, 10, F_IN, dtype=torch.float64)
    t = 4
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn(2, 10 - t - 1, F_IN, dtype=torch.float64) * 3
    with torch.no_grad():
        a, b = model.forward_sequence(x), model.forward_sequence(x2)
    torch.testing.assert_close(a[:, :t + 1], b[:, :t + 1], rtol=0, atol=1e-12)
    assert (a[:, t + 1:] - b[:, t + 1:]).abs().max() > 1e-3


# ---------------------------------------------------------------- parameter counts and matching

def lstm_params(F_, H, L, C_):
    return 4 * (H * (F_ + H) + 2 * H) + (L - 1) * 4 * (2 * H * H + 2 * H) + (H + 1) * C_


def gru_params(F_, H, L, C_):
    return 3 * (H * (F_ + H) + 2 * H) + (L - 1) * 3 * (2 * H * H + 2 * H) + (H + 1) * C_


def transformer_params(F_, d, L, C_, f=None, P=0):
    f = 4 * d if f is None else f
    return (F_ + 1) * d + P * d + L * (4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d) + 2 * d + (d + 1) * C_


def ssm_params(F_, H, N, L, C_):
    return (F_ + 1) * H + L * (4 * N * H + 3 * N + H + 2 * H + 2 * H * H + 2 * H) + 2 * H + (H + 1) * C_


def test_parameter_formulas():
    assert count_parameters(GRUClassifier(28, 10, hidden_size=32)) == gru_params(28, 32, 1, 10) == 6282
    assert count_parameters(LSTMClassifier(28, 10, hidden_size=27, num_layers=2)) == lstm_params(28, 27, 2, 10)
    assert count_parameters(GRUClassifier(7, 4, hidden_size=9, num_layers=3)) == gru_params(7, 9, 3, 4)
    assert count_parameters(TransformerClassifier(28, 10, d_model=20)) == transformer_params(28, 20, 1, 10) == 5890
    assert (count_parameters(TransformerClassifier(6, 3, d_model=12, nhead=3, num_layers=2, dim_feedforward=30,
                                                   positions="learned", max_len=50))
            == transformer_params(6, 12, 2, 3, f=30, P=50))
    assert count_parameters(SSMClassifier(28, 10, d_model=21)) == ssm_params(28, 21, 21, 2, 10)
    assert count_parameters(SSMClassifier(6, 3, d_model=10, state_size=7, num_layers=3)) == ssm_params(6, 10, 7, 3, 3)


def test_count_parameters_counts_complex_twice_and_tied_once():
    m = nn.Module()
    m.a = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    lin = nn.Linear(2, 2)
    m.b, m.c = lin, lin
    m.frozen = nn.Parameter(torch.zeros(5), requires_grad=False)
    assert count_parameters(m) == 6 + 6
    assert count_parameters(m, trainable_only=False) == 6 + 6 + 5


@pytest.mark.parametrize("name", ["lstm", "gru", "transformer", "ssm", "mamba", "llama"])
@pytest.mark.parametrize("target", [6000, 20000])
def test_match_hidden_size_within_ten_percent(name, target):
    # Llama's width moves in steps of 2·num_heads with ~24·d² parameters for two layers: at 6,000
    # the neighbours are 15% apart, so one layer there
    cfg = {"num_layers": 1} if (name, target) == ("llama", 6000) else {}
    rng = torch.get_rng_state()
    w = match_hidden_size(name, target, 28, 10, **cfg)
    assert torch.equal(rng, torch.get_rng_state())  # matching draws no random numbers
    n = count_parameters(registry.build(name, 28, 10, **{registry.width_key(name): w}, **cfg))
    assert abs(n - target) <= 0.1 * target, (w, n)


def test_match_hidden_size_values_and_errors():
    assert match_hidden_size("gru", 6282, 28, 10) == 32
    assert match_hidden_size("lstm", 6282, 28, 10, num_layers=2) == 18  # 6,382
    assert match_hidden_size("transformer", 20000, 28, 10, nhead=4) % 4 == 0
    with pytest.raises(ValueError, match="hidden_size"):
        match_hidden_size("gru", 6000, 28, 10, hidden_size=4)
    with pytest.raises(ValueError, match="tolerance"):
        match_hidden_size("transformer", 6000, 28, 10, nhead=8, tol=0.01)
    with pytest.raises(ValueError, match="unknown model"):
        match_hidden_size("mlp", 6000, 28, 10)
    with pytest.raises(ValueError, match="target_params"):
        match_hidden_size("gru", 0, 28, 10)


# ---------------------------------------------------------------- the SSM

def test_ssm_parallel_form_equals_recurrence():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(7, generator=g, dtype=torch.float64) * 0.999
    log_lam = torch.complex(torch.log(r), torch.rand(7, generator=g, dtype=torch.float64) * 2 * math.pi)
    v = torch.randn(3, 50, 7, generator=g, dtype=torch.complex128)
    torch.testing.assert_close(diagonal_scan_fft(log_lam, v), diagonal_recurrence(log_lam, v), rtol=0, atol=1e-12)

    model = small("ssm")
    x = torch.randn(2, 33, F_IN, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), model.features(x, recurrent=True), rtol=0, atol=1e-12)


def test_lru_initialisation_follows_the_paper():
    torch.manual_seed(0)
    lru = LRU(16, 200, r_min=0.5, r_max=0.9, max_phase=math.pi / 4)
    mod, phase = lru.eigenvalues().abs(), lru.eigenvalues().angle()
    assert mod.min() >= 0.5 - 1e-6 and mod.max() <= 0.9 + 1e-6
    assert phase.min() >= 0 and phase.max() <= math.pi / 4 + 1e-6
    torch.testing.assert_close(torch.exp(lru.gamma_log), torch.sqrt(1 - mod ** 2), rtol=1e-5, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(nu=st.floats(-1e6, 1e6), theta=st.floats(-1e6, 80.0))
def test_ssm_eigenvalues_stay_in_the_unit_disc(nu, theta):
    lru = LRU(2, 1, 0.9, 0.999, 1.0).double()
    with torch.no_grad():
        lru.nu_log.fill_(nu)
        lru.theta_log.fill_(theta)
    mod = lru.eigenvalues().abs().item()
    assert 0.0 <= mod <= 1.0
    if nu >= -30:  # strictly inside until exp(nu) falls below float64's resolution at 1
        assert mod < 1.0


# ---------------------------------------------------------------- the Transformer

def test_block_equals_torch_pre_norm_encoder_layer():
    torch.manual_seed(0)
    d, h, f = 12, 3, 20
    block = Block(d, h, f, 0.0).double()
    ref = nn.TransformerEncoderLayer(d, h, f, 0.0, activation="gelu", norm_first=True, batch_first=True).double()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
        ref.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
        ref.linear1.load_state_dict(block.mlp[0].state_dict())
        ref.linear2.load_state_dict(block.mlp[3].state_dict())
        ref.norm1.load_state_dict(block.ln1.state_dict())
        ref.norm2.load_state_dict(block.ln2.state_dict())
    x = torch.randn(2, 9, d, dtype=torch.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(9, dtype=torch.float64)
    torch.testing.assert_close(block(x), ref(x, src_mask=mask, is_causal=True), rtol=0, atol=1e-12)


def test_learned_positions_are_bounded_by_max_len():
    model = small("transformer-learned")
    model(torch.randn(1, 16, F_IN, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_len=16"):
        model(torch.randn(1, 17, F_IN, dtype=torch.float64))
    state = model.init_state(1)
    for _ in range(16):
        _, state = model.step(torch.randn(1, F_IN, dtype=torch.float64), state)
    with pytest.raises(ValueError, match="max_len=16"):
        model.step(torch.randn(1, F_IN, dtype=torch.float64), state)


# ---------------------------------------------------------------- errors and the registry

BAD_CONFIGS = [
    (LSTMClassifier, {"hidden_size": 0}, "hidden_size"),
    (LSTMClassifier, {"num_layers": 0}, "num_layers"),
    (GRUClassifier, {"hidden_size": 2.5}, "hidden_size"),
    (GRUClassifier, {"dropout": 0.5}, "num_layers > 1"),
    (GRUClassifier, {"num_layers": 2, "dropout": 1.0}, "dropout"),
    (TransformerClassifier, {"d_model": 10, "nhead": 3}, "divisible"),
    (TransformerClassifier, {"nhead": 0}, "nhead"),
    (TransformerClassifier, {"dim_feedforward": 0}, "dim_feedforward"),
    (TransformerClassifier, {"positions": "rotary"}, "positions"),
    (TransformerClassifier, {"positions": "learned"}, "max_len"),
    (TransformerClassifier, {"num_layers": -1}, "num_layers"),
    (SSMClassifier, {"d_model": 0}, "d_model"),
    (SSMClassifier, {"state_size": 0}, "state_size"),
    (SSMClassifier, {"r_min": 0.9, "r_max": 0.5}, "r_min"),
    (SSMClassifier, {"r_max": 1.0}, "r_max"),
    (SSMClassifier, {"max_phase": 0.0}, "max_phase"),
    (MambaClassifier, {"hidden_size": 0}, "hidden_size"),
    (MambaClassifier, {"state_size": 0}, "state_size"),
    (MambaClassifier, {"expand": 0}, "expand"),
    (MambaClassifier, {"conv_kernel": 0}, "conv_kernel"),
    (MambaClassifier, {"dt_rank": 0}, "dt_rank"),
    (LlamaClassifier, {"hidden_size": 10, "num_heads": 2}, "even head width"),
    (LlamaClassifier, {"hidden_size": 12, "num_heads": 5}, "even head width"),
    (LlamaClassifier, {"num_heads": 4, "num_kv_heads": 3}, "multiple of num_kv_heads"),
    (LlamaClassifier, {"intermediate_size": 0}, "intermediate_size"),
    (LlamaClassifier, {"rope_theta": 1.0}, "rope_theta"),
    (LlamaClassifier, {"num_layers": 0}, "num_layers"),
]


@pytest.mark.parametrize("ctor,cfg,match", BAD_CONFIGS)
def test_invalid_configs_raise(ctor, cfg, match):
    with pytest.raises(ValueError, match=match):
        ctor(F_IN, C, **cfg)


@pytest.mark.parametrize("ctor", [LSTMClassifier, GRUClassifier, TransformerClassifier, SSMClassifier, MambaClassifier,
                                  LlamaClassifier])
def test_invalid_sizes_raise(ctor):
    with pytest.raises(ValueError, match="input_dim"):
        ctor(0, C)
    with pytest.raises(ValueError, match="num_classes"):
        ctor(F_IN, 1)


@pytest.mark.parametrize("key", ["lstm", "gru", "transformer", "ssm", "mamba", "llama"])
def test_wrong_input_raises(key):
    model = small(key)
    with pytest.raises(ValueError, match=r"rank 3.*got rank 2"):
        model(torch.randn(4, F_IN, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"F={F_IN}, got 7"):
        model(torch.randn(2, 3, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="T=0"):
        model(torch.randn(2, 0, F_IN, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating"):
        model(torch.ones(2, 3, F_IN, dtype=torch.long))
    state = model.init_state(2)
    with pytest.raises(ValueError, match=r"rank 2.*got rank 3"):
        model.step(torch.randn(2, 1, F_IN, dtype=torch.float64), state)
    with pytest.raises(ValueError, match=rf"F={F_IN}, got 4"):
        model.step(torch.randn(2, 4, dtype=torch.float64), state)
    with pytest.raises(ValueError, match="batch_size"):
        model.init_state(0)


def test_registry_builds_extends_and_rejects(monkeypatch):
    assert registry.available()[:4] == ("lstm", "gru", "transformer", "ssm")
    assert isinstance(registry.build("gru", 3, 2, hidden_size=4), GRUClassifier)
    with pytest.raises(ValueError, match="lstm, gru, transformer, ssm"):
        registry.build("qlam_typo", 3, 2)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("gru", GRUClassifier)
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    registry.register("tiny-gru", lambda input_dim, num_classes, width=4: GRUClassifier(input_dim, num_classes,
                                                                                      hidden_size=width),
                      width="width")
    assert registry.build("tiny-gru", 28, 10).config.hidden_size == 4
    assert match_hidden_size("tiny-gru", 6282, 28, 10) == 32
