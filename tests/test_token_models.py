"""Token inputs and per-position outputs for every model (issue 21): LSTM, GRU, Transformer, LRU SSM,
Mamba and Llama (from transformers) and QLAM (statevector and MPS memories).

Each model reads int64 tokens (B, T) through an embedding and gives logits at every position
(B, T, C): causal (logits up to t do not change when tokens after t do), streamed by step, the
loss counted where labelled, matched to a parameter budget, its state size counted by hand, and
a tiny MQAR learned from a fixed seed.

The loss fuzzer runs 40 examples by default; a longer run:
``QLAM_FUZZ_EXAMPLES=2000 python -m pytest tests/test_token_models.py -k fuzz``.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qlam_tn.experiments import tasks
from qlam_tn.models import (IGNORE_INDEX, SequenceModel, build, count_correct, count_parameters, match_hidden_size,
                            per_position_loss, state_size, width_key)
from qlam_tn.models.common import copy_library_cache

pytest.importorskip("transformers")

V, D_IN = 11, 6          # vocabulary, embedding width
# small configurations of every model; QLAM on the dense fast path, the plain autograd path and a
# capped MPS (its per-position features come from three different code paths)
SMALL = {
    "lstm": ("lstm", {"hidden_size": 8, "num_layers": 2}),
    "gru": ("gru", {"hidden_size": 8}),
    "transformer": ("transformer", {"d_model": 8, "num_layers": 2}),
    "ssm": ("ssm", {"d_model": 8, "state_size": 4}),
    "mamba": ("mamba", {"hidden_size": 8, "state_size": 4}),
    "mamba-loop": ("mamba", {"hidden_size": 8, "state_size": 4, "parallel_scan": False}),
    "llama": ("llama", {"hidden_size": 8, "num_heads": 2}),
    "llama-gqa": ("llama", {"hidden_size": 8, "num_heads": 2, "num_kv_heads": 1}),
    "qlam": ("qlam", {"n_qubits": 4, "head_hidden": 8}),
    "qlam-autograd": ("qlam", {"n_qubits": 4, "head_hidden": 8, "fast_path": False, "entangler": "su4"}),
    "qlam-mps": ("qlam", {"n_qubits": 5, "backend": "mps", "bond_dim": 2, "head_hidden": 8}),
}


def small(key, outputs="per_position", dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    name, cfg = SMALL[key]
    return build(name, D_IN, V, vocab_size=V, outputs=outputs, **cfg).to(dtype)


def tokens(b, t, seed=0):
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


def stream(model, x):
    state = model.init_state(x.shape[0])
    outs = []
    for t in range(x.shape[1]):
        logits, state = model.step(x[:, t], state)
        outs.append(logits)
    return torch.stack(outs, dim=1)


# ---------------------------------------------------------------- causality and streaming

@pytest.mark.parametrize("key", SMALL)
@pytest.mark.parametrize("t", [0, 5])
def test_logits_up_to_t_ignore_later_tokens(key, t):
    model = small(key)
    x = tokens(3, 12)
    x2 = x.clone()
    x2[:, t + 1:] = (x[:, t + 1:] + 1 + tokens(3, 12 - t - 1, seed=1) % (V - 1)) % V  # every later token changes
    assert (x2[:, t + 1:] != x[:, t + 1:]).all()
    with torch.no_grad():
        a, b = model(x), model(x2)
    assert a.shape == (3, 12, V)
    if key == "ssm":
        # The LRU's FFT convolution rounds every output through all positions' transforms.
        torch.testing.assert_close(a[:, :t + 1], b[:, :t + 1], rtol=0, atol=1e-12)
    else:
        assert torch.equal(a[:, :t + 1], b[:, :t + 1])
    assert (a[:, t + 1:] - b[:, t + 1:]).abs().max() > 1e-6


@pytest.mark.parametrize("key", SMALL)
def test_streaming_equals_per_position_logits(key):
    model = small(key)
    x = tokens(2, 9)
    with torch.no_grad():
        every = model(x)
        streamed = stream(model, x)
        state = model.init_state(2)
        first, _ = model.step(x[:, 0], state)
        again, _ = model.step(x[:, 0], state)  # a state is not changed by the step that reads it
    torch.testing.assert_close(streamed, every, rtol=0, atol=1e-10)
    assert torch.equal(first, again)


@pytest.mark.parametrize("key", ["lstm", "transformer", "mamba", "llama", "qlam"])
def test_sequence_outputs_read_the_last_position(key):
    """outputs="sequence" with tokens: (B, C) from the last position (QLAM: its pooled readout)."""
    model = small(key, outputs="sequence")
    x = tokens(2, 7)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, V)
        if key != "qlam":
            torch.testing.assert_close(out, model.forward_sequence(x)[:, -1], rtol=0, atol=1e-12)
            torch.testing.assert_close(stream(model, x)[:, -1], out, rtol=0, atol=1e-10)
        else:  # readout_at="every": the head on the mean of every position's features
            f = model.body.qlam.features(model.embedding(x))
            torch.testing.assert_close(out, model.body.head(f.mean(1)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["mamba", "llama"])
def test_library_streaming_needs_no_grad(name):
    model = small(name)
    with pytest.raises(RuntimeError, match="no_grad"):
        model.step(tokens(2, 1)[:, 0], model.init_state(2))
    with pytest.raises(RuntimeError, match="no_grad"):
        copy_library_cache(model, None, name)


def test_mamba_parallel_scan_equals_the_library_loop():
    x = tokens(3, 37)  # not a power of two: mambapy pads the scan
    with torch.no_grad():
        a, b = small("mamba")(x), small("mamba-loop")(x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_qlam_features_are_what_every_pools_and_agree_across_paths():
    """Per-position QLAM features: the dense scan, the autograd loop and an exact MPS agree, the
    last row is readout_at="last" and their mean is readout_at="every"."""
    from qlam_tn.models.qlam import QLAM
    x = torch.randn(2, 8, 3, dtype=torch.float64)
    feats = {}
    for kind, kw in {"fast": {}, "autograd": {"fast_path": False},
                     "mps": {"backend": "mps", "cutoff": 0.0}}.items():
        torch.manual_seed(3)
        layer = QLAM(3, n_qubits=4, **kw).double()
        with torch.no_grad():
            feats[kind] = layer.features(x)
            assert feats[kind].shape == (2, 8, layer.token_feature_dim)
            torch.testing.assert_close(feats[kind].mean(1), layer(x), rtol=0, atol=1e-12)
            layer.config.readout_at = "last"
            torch.testing.assert_close(feats[kind][:, -1], layer(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(feats["autograd"], feats["fast"], rtol=0, atol=1e-10)
    torch.testing.assert_close(feats["mps"], feats["fast"], rtol=0, atol=1e-10)


def test_qlam_per_position_reads_at_every_position_only_with_last():
    model = build("qlam", D_IN, V, vocab_size=V, outputs="per_position", n_qubits=3)
    assert model.body.config.readout_at == "last"
    for readout in ("every", "attn"):
        with pytest.raises(ValueError, match="readout_at='last'"):
            build("qlam", D_IN, V, vocab_size=V, outputs="per_position", n_qubits=3, readout_at=readout)
    with pytest.raises(ValueError, match="readout_at='last'"):
        build("qlam", D_IN, V, n_qubits=3).forward_sequence(torch.randn(1, 4, D_IN))


# ---------------------------------------------------------------- the per-position loss

def test_loss_and_accuracy_count_labelled_positions_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    y = torch.full((2, 5), IGNORE_INDEX)
    y[0, 1], y[0, 4], y[1, 2] = 3, 0, 2
    labelled = [(0, 1, 3), (0, 4, 0), (1, 2, 2)]
    hand = -sum(logits[b, t, c].item() - math.log(sum(math.exp(v) for v in logits[b, t].tolist()))
                for b, t, c in labelled) / 3
    assert per_position_loss(logits, y).item() == pytest.approx(hand, abs=1e-12)
    hits = sum(int(np.argmax(logits[b, t].numpy()) == c) for b, t, c in labelled)
    assert count_correct(logits, y) == (hits, 3)
    # what the unlabelled positions hold changes nothing
    noisy = logits.clone()
    noisy[y == IGNORE_INDEX] = 100 * torch.randn(7, 4, generator=g, dtype=torch.float64)
    assert per_position_loss(noisy, y).item() == pytest.approx(hand, abs=1e-12)
    assert count_correct(noisy, y) == (hits, 3)


@settings(max_examples=int(os.environ.get("QLAM_FUZZ_EXAMPLES", 40)), deadline=None)
@given(b=st.integers(1, 4), t=st.integers(1, 7), c=st.integers(2, 6), seed=st.integers(0, 2**32 - 1),
       p=st.floats(0.0, 1.0), scale=st.sampled_from([1e-3, 1.0, 30.0]))
def test_fuzz_loss_and_accuracy_against_numpy(b, t, c, seed, p, scale):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, t, c)) * scale
    y = rng.integers(0, c, size=(b, t))
    asked = rng.random((b, t)) < p
    asked[rng.integers(b), rng.integers(t)] = True
    y[~asked] = IGNORE_INDEX
    top = logits.max(-1, keepdims=True)
    log_softmax = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    rows = np.nonzero(asked)
    ref = -log_softmax[rows[0], rows[1], y[asked]].mean()
    got = per_position_loss(torch.from_numpy(logits), torch.from_numpy(y)).item()
    assert got == pytest.approx(ref, rel=1e-12, abs=1e-12)
    hits = int((logits.argmax(-1)[asked] == y[asked]).sum())
    assert count_correct(torch.from_numpy(logits), torch.from_numpy(y)) == (hits, int(asked.sum()))


def test_loss_refuses_what_it_cannot_score():
    logits = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="no labelled position"):
        per_position_loss(logits, torch.full((2, 3), IGNORE_INDEX))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        per_position_loss(logits, torch.tensor([[4, -100, -100], [0, 1, 2]]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        count_correct(logits, torch.tensor([[-1, -100, -100], [0, 1, 2]]))
    with pytest.raises(ValueError, match="do not match"):
        per_position_loss(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        per_position_loss(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer targets"):
        per_position_loss(logits, torch.zeros(2, 3))


def test_tokens_are_checked():
    model = small("gru")
    with pytest.raises(ValueError, match=r"\[0, vocab_size=11\), got values from 0 to 11"):
        model(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match="from -1"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(TypeError, match="integer tokens"):
        model(torch.rand(2, 3))
    with pytest.raises(ValueError, match="rank 2"):
        model(torch.zeros(2, 3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one token"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        model.step(torch.zeros(2, 1, dtype=torch.long), model.init_state(2))
    with pytest.raises(ValueError, match="outputs must be one of"):
        build("gru", D_IN, V, vocab_size=V, outputs="every")
    with pytest.raises(ValueError, match="vocab_size"):
        build("gru", D_IN, V, vocab_size=0)


def test_float_inputs_get_per_position_outputs_too():
    torch.manual_seed(0)
    model = build("gru", 3, 4, outputs="per_position", hidden_size=5)
    assert isinstance(model, SequenceModel) and model.embedding is None
    x = torch.randn(2, 6, 3)
    assert torch.equal(model(x), model.body.forward_sequence(x))
    with pytest.raises(ValueError, match="feature size"):
        model(torch.randn(2, 6, 4))


def test_without_the_new_keywords_build_returns_the_bare_model():
    from qlam_tn.models import GRUClassifier, QLAMClassifier
    assert type(build("gru", 3, 4, hidden_size=5)) is GRUClassifier
    model = build("qlam", 3, 4, n_qubits=3)
    assert type(model) is QLAMClassifier and model.config.readout_at == "every"


# ---------------------------------------------------------------- parameter counts and budgets

def mamba_params(F_, d, N, L, C_, expand=2, k=4, r=None):
    e, r = expand * d, r or math.ceil(d / 16)
    return (F_ + 1) * d + L * (d + 2 * d * e + e * k + e + e * (r + 2 * N) + r * e + e + e * N + e + e * d) + d \
        + (d + 1) * C_


def llama_params(F_, d, H, K, L, C_, I_=None):
    h, I_ = d // H, I_ or math.ceil(8 * d / 3)
    return (F_ + 1) * d + L * (2 * d + d * H * h + 2 * d * K * h + H * h * d + 3 * d * I_) + d + (d + 1) * C_


def test_parameter_formulas_of_the_library_models():
    from qlam_tn.models import LlamaClassifier, MambaClassifier
    assert count_parameters(MambaClassifier(6, 5, hidden_size=16, state_size=8)) == mamba_params(6, 16, 8, 2, 5)
    assert (count_parameters(MambaClassifier(3, 4, hidden_size=40, state_size=5, num_layers=3, expand=3,
                                             conv_kernel=2)) == mamba_params(3, 40, 5, 3, 4, expand=3, k=2))
    assert count_parameters(LlamaClassifier(6, 5, hidden_size=16)) == llama_params(6, 16, 2, 2, 2, 5)
    assert (count_parameters(LlamaClassifier(3, 4, hidden_size=24, num_layers=3, num_heads=4, num_kv_heads=2,
                                             intermediate_size=50)) == llama_params(3, 24, 4, 2, 3, 4, I_=50))
    # the token front adds the table V x F
    model = build("mamba", 6, 5, vocab_size=9, outputs="per_position", hidden_size=16, state_size=8)
    assert count_parameters(model) == mamba_params(6, 16, 8, 2, 5) + 9 * 6


BUDGET_CFG = {"lstm": {}, "gru": {}, "transformer": {}, "ssm": {}, "mamba": {"state_size": 8}, "llama": {},
              "qlam": {"n_qubits": 8}}


@pytest.mark.parametrize("name", BUDGET_CFG)
@pytest.mark.parametrize("target", [20000, 60000])
def test_every_model_matches_a_budget_within_ten_percent(name, target):
    """MQAR-like sizes: V=64 tokens through a 32-wide embedding, logits over V at every position."""
    kw = dict(vocab_size=64, outputs="per_position", **BUDGET_CFG[name])
    w = match_hidden_size(name, target, 32, 64, **kw)
    n = count_parameters(build(name, 32, 64, **{width_key(name): w}, **kw))
    assert abs(n - target) <= 0.1 * target, (name, w, n)


# ---------------------------------------------------------------- state size

def _floats(t):
    return t.numel() * (2 if t.is_complex() else 1)


def test_state_size_against_hand_counts():
    # LSTM: h and c of 2 layers of 8; GRU: h of 8; SSM: a complex state of 4 in each of 2 layers
    assert state_size(small("lstm")) == 2 * 2 * 8
    assert state_size(small("gru")) == 8
    assert state_size(small("ssm")) == 2 * 2 * 4
    # Mamba: 2 layers, e = 16 channels, N = 4 SSM states and 3 convolution inputs each
    assert state_size(small("mamba")) == 2 * 16 * (4 + 3) == 224
    # attention: keys and values of every token
    assert state_size(small("transformer"), seq_len=100) == 2 * 2 * 8 * 100
    assert state_size(small("llama"), seq_len=100) == 2 * 2 * 2 * 4 * 100
    assert state_size(small("llama-gqa"), seq_len=100) == 2 * 2 * 1 * 4 * 100
    with pytest.raises(ValueError, match="seq_len"):
        state_size(small("llama"))
    # QLAM statevector: 2^n real amplitudes, 2·2^n complex; the sequence readout adds its running mean
    assert state_size(small("qlam")) == 2 ** 4
    assert state_size(build("qlam", 3, 4, n_qubits=5, real=False, encoding="ry_rz", readout_at="last")) == 2 * 32
    seq = build("qlam", 3, 4, n_qubits=5)  # readout_at="every": the running sum of D = 5 + 10 features
    assert state_size(seq) == 32 + 15
    # MPS: sum over sites of chi_left · 2 · chi_right, chi_i = min(2^i, 2^(n-i), cap)
    assert state_size(small("qlam-mps")) == 1 * 2 * 2 + 2 * 2 * 2 + 2 * 2 * 2 + 2 * 2 * 2 + 2 * 2 * 1 == 32
    exact = build("qlam", 3, 4, n_qubits=6, backend="mps", readout_at="last")
    assert state_size(exact) == 4 + 16 + 64 + 64 + 16 + 4 == 168
    with pytest.raises(TypeError, match="state_floats"):
        state_size(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("key", ["lstm", "gru", "ssm", "transformer", "llama-gqa", "mamba", "qlam", "qlam-mps"])
def test_state_size_is_what_streaming_carries(key):
    """After 9 tokens, the floats in the streaming state itself (per sample) against state_size."""
    model = small(key)
    x = tokens(2, 9)
    with torch.no_grad():
        state = model.init_state(2)
        for t in range(9):
            _, state = model.step(x[:, t], state)
    if key in ("lstm", "ssm"):
        carried = sum(_floats(s) for s in state)
    elif key == "gru":
        carried = _floats(state)
    elif key == "transformer":
        carried = sum(_floats(k) + _floats(v) for k, v in state.layers)
    elif key == "llama-gqa":
        carried = sum(_floats(layer.keys) + _floats(layer.values) for layer in state.cache.layers)
    elif key == "mamba":
        # the library keeps a k-wide convolution window, one column more per channel than needed
        cache, e, k = state.cache, 16, 4
        carried = sum(_floats(cache.get_recurrent_state(i)) + _floats(cache.get_conv_state(i))
                      for i in range(2)) - 2 * 2 * e
        assert cache.get_conv_state(0).shape == (2, e, k)
    else:
        memory = state.memory
        carried = sum(_floats(s) for s in memory.tensors) if key == "qlam-mps" else _floats(memory.psi)
    assert carried == 2 * state_size(model, seq_len=9), key


# ---------------------------------------------------------------- a tiny task, learned

TINY = dict(seq_len=12, num_pairs=1, vocab_size=16)   # chance: 1/8 (a guess among the values)
TINY_MODELS = {
    "lstm": ("lstm", {"hidden_size": 32}), "gru": ("gru", {"hidden_size": 32}),
    "transformer": ("transformer", {"d_model": 32}), "ssm": ("ssm", {"d_model": 32}),
    "mamba": ("mamba", {"hidden_size": 16, "state_size": 8}), "llama": ("llama", {"hidden_size": 32}),
    "qlam": ("qlam", {"n_qubits": 8, "head_hidden": 32}),
}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("key", TINY_MODELS)
def test_every_model_learns_a_tiny_recall_task(key, one_thread):
    """MQAR with one pair (recall the value that followed the key when it is asked again), 200
    Adam steps from seed 0; accuracy on fresh sequences well above the 1/8 of a guess."""
    x, y = map(torch.from_numpy, tasks.make("mqar", n=4000, seed=1, **TINY))
    x_test, y_test = map(torch.from_numpy, tasks.make("mqar", n=500, seed=2, **TINY))
    name, cfg = TINY_MODELS[key]
    torch.manual_seed(0)
    model = build(name, 16, 16, vocab_size=16, outputs="per_position", **cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = per_position_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        correct, labelled = count_correct(model.eval()(x_test), y_test)
    assert labelled == 500
    assert correct / labelled >= 0.6, (key, correct / labelled)


def test_models_import_without_transformers():
    code = ("import sys; import qlam_tn.models as m; assert 'transformers' not in sys.modules;"
            "assert {'mamba', 'llama'} <= set(m.available())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_building_a_library_model_without_the_library_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now fails
    with pytest.raises(ImportError, match=r'pip install -e "\.\[baselines\]"'):
        build("mamba", 3, 4)
