"""The QLAM layer: MPS equals StateVector, streaming equals forward, checkpointing is exact."""
import dataclasses

import pytest
import torch

from qlam_tn import MPS, StateVector
from qlam_tn.models.qlam import QLAM, QLAMClassifier, QLAMConfig

CONFIGS = [
    dict(real=True, entangler="cz"),
    dict(real=False, encoding="ry_rz", entangler="su4", readout="query+xyz+zz"),
    dict(real=True, entangler="su4", readout="query+zz", readout_at="last", reupload=True),
    dict(real=False, entangler="cnot", depth=3, encoding="rz_ry_rz", readout="xyz+zz"),
    # segments of 3 tokens: the tests' 7- and 9-token sequences end inside a segment or fill all 3
    # (and a BatchNorm head: in training mode it normalises over the batch, the same in every path)
    dict(real=False, entangler="su4", readout_at="segments", segments=3, segment_length=3, query_heads=2,
         head_norm="batch"),
    dict(real=True, entangler="su4", readout_at="attn", query_heads=3, pool_positions=16, pool_memory=True),
    dict(real=True, entangler="cz", readout="xyz", readout_at="segments", segments=3, segment_length=3,
         head_hidden=0, head_norm="batch"),  # a linear head
]


def _scramble_pool(model, seed=7):
    """Random attention-pooling scores (they start at zero, i.e. as the plain mean)."""
    if model.qlam.pool is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.qlam.pool.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
            if model.qlam.pool_position_bias is not None:
                b = model.qlam.pool_position_bias
                b.copy_(torch.randn(b.shape, generator=g, dtype=b.dtype))
            if model.qlam.pool_memory is not None:
                u = model.qlam.pool_memory.weight
                u.copy_(torch.randn(u.shape, generator=g, dtype=u.dtype))
    return model


def _pair(kw, n=5, **extra):
    torch.manual_seed(1)
    sv = QLAMClassifier(4, 5, n_qubits=n, backend="statevector", **kw, **extra).double()
    torch.manual_seed(1)
    # Exact MPS: no cap, no cutoff, and a tiny broadening so that its gradient is the exact one.
    mps = QLAMClassifier(4, 5, n_qubits=n, backend="mps", cutoff=0.0, grad_eps=1e-28, **kw, **extra).double()
    return _scramble_pool(sv), _scramble_pool(mps)


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("kw", CONFIGS)
def test_exact_mps_equals_statevector_outputs_and_gradients(kw):
    sv, mps = _pair(kw)
    x = torch.rand(3, 7, 4, dtype=torch.float64)
    y_sv, y_mps = sv(x), mps(x)
    torch.testing.assert_close(y_mps, y_sv, atol=1e-10, rtol=0)
    y_sv.pow(2).sum().backward()
    y_mps.pow(2).sum().backward()
    for g1, g2 in zip(_grads(sv), _grads(mps)):
        torch.testing.assert_close(g2, g1, atol=1e-8, rtol=0)


@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("backend", ["statevector", "mps"])
def test_streaming_equals_forward(kw, backend):
    torch.manual_seed(2)
    model = _scramble_pool(QLAMClassifier(4, 5, n_qubits=5, backend=backend, bond_dim=4, **kw).double())
    x = torch.rand(2, 6, 4, dtype=torch.float64)
    state = model.init_state(2)
    for t in range(6):
        out, state = model.step(x[:, t], state)
        # after t+1 tokens the streamed logits equal the forward of the prefix
        torch.testing.assert_close(out, model(x[:, : t + 1]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", ["statevector", "mps"])
@pytest.mark.parametrize("entangler", ["cz", "su4"])
def test_forward_from_a_given_memory_continues_the_sequence(backend, entangler):
    # Last-token readout: the logits of x2 run from the memory x1 left equal those of x1 ++ x2,
    # and the caller's memory is left as it was. (The statevector config is the fast path's.)
    # On the MPS (bond cap 2: it truncates) a memory with another bond cap and a non-zero
    # discarded weight is adopted with this model's policy and counts from zero.
    torch.manual_seed(4)
    model = QLAMClassifier(4, 5, n_qubits=5, backend=backend, entangler=entangler, readout_at="last",
                           bond_dim=2).double()
    x = torch.rand(2, 9, 4, dtype=torch.float64)
    state = model.init_state(2)
    for t in range(4):
        _, state = model.step(x[:, t], state)
    memory = state.memory
    if backend == "mps":
        memory = memory.copy()
        memory.policy = dataclasses.replace(memory.policy, max_bond=64)
        cut_before = memory.discarded_weight.clone()
        memory.discarded_weight = memory.discarded_weight + 0.5
    before = memory.to_dense().clone()
    out = model(x[:, 4:], memory=memory)
    cut_rest = model.qlam.last_discarded_weight
    full = model(x)
    torch.testing.assert_close(out, full, atol=1e-12, rtol=0)
    torch.testing.assert_close(memory.to_dense(), before, atol=0, rtol=0)
    if backend == "mps":
        assert float(model.qlam.last_discarded_weight.min()) > 1e-6
        torch.testing.assert_close(cut_before + cut_rest, model.qlam.last_discarded_weight, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="batch"):
        model(x[:1, 4:], memory=state.memory)
    with pytest.raises(ValueError, match="dtype"):
        model(x[:, 4:], memory=type(state.memory).zeros(5, batch=2, dtype=torch.float32))
    wrong = QLAMClassifier(4, 5, n_qubits=5, backend="mps" if backend == "statevector" else "statevector").double()
    with pytest.raises(TypeError, match="memory must be"):
        model(x[:, 4:], memory=wrong.init_state(2).memory)


@pytest.mark.parametrize("kw", CONFIGS[:2] + CONFIGS[-1:])
@pytest.mark.parametrize("backend", ["statevector", "mps"])
def test_checkpointing_gives_same_gradients(kw, backend):
    x = torch.rand(2, 9, 4, dtype=torch.float64)
    grads = []
    for ck in (None, 4):
        torch.manual_seed(3)
        model = QLAMClassifier(4, 5, n_qubits=5, backend=backend, bond_dim=4, checkpoint_every=ck, **kw).double()
        _scramble_pool(model)
        y = model(x)
        y.sum().backward()
        grads.append((y.detach(), _grads(model)))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-13, rtol=0)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_attention_pooling_matches_hand_softmax():
    """readout_at="attn" is Σ_t softmax_t(w·x_t + b) f_t over the per-token features of "every"."""
    torch.manual_seed(5)
    attn = _scramble_pool(QLAMClassifier(4, 3, n_qubits=4, readout_at="attn", fast_path=False).double()).qlam
    x = torch.rand(2, 6, 4, dtype=torch.float64)
    ref = QLAM(4, attn.config, readout_at="last").double()
    ref.load_state_dict({k: v for k, v in attn.state_dict().items() if not k.startswith("pool.")})
    feats = torch.stack([ref(x[:, : t + 1]) for t in range(6)], dim=1)  # (B, T, D) per-token features
    alpha = torch.softmax(x @ attn.pool.weight[0] + attn.pool.bias, dim=1)  # (B, T)
    torch.testing.assert_close(attn(x), (alpha[..., None] * feats).sum(1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("fast_path", [True, False])
def test_position_biased_pooling_matches_hand_softmax(fast_path):
    """pool_positions adds a learned bias per position: α_t = softmax_t(w·x_t + b + p_t)."""
    torch.manual_seed(6)
    model = _scramble_pool(QLAMClassifier(1, 3, n_qubits=4, readout_at="attn", pool_positions=8,
                                          fast_path=fast_path).double()).qlam
    assert model.uses_fast_path == fast_path
    x = torch.rand(2, 6, 1, dtype=torch.float64)
    ref = QLAM(1, model.config, readout_at="last", pool_positions=0).double()
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("pool")})
    feats = torch.stack([ref(x[:, : t + 1]) for t in range(6)], dim=1)  # (B, T, D)
    scores = x[..., 0] * model.pool.weight[0, 0] + model.pool.bias + model.pool_position_bias[:6]
    alpha = torch.softmax(scores, dim=1)
    torch.testing.assert_close(model(x), (alpha[..., None] * feats).sum(1), atol=1e-12, rtol=0)
    # the bias is what moves the weights: the same tokens in another order pool differently
    assert not torch.allclose(alpha, torch.softmax(scores - model.pool_position_bias[:6], dim=1))


@pytest.mark.parametrize("fast_path", [True, False])
def test_memory_scored_pooling_matches_hand_softmax(fast_path):
    """pool_memory adds u·f_t, the memory's own readout at token t, to the scores."""
    torch.manual_seed(8)
    model = _scramble_pool(QLAMClassifier(2, 3, n_qubits=4, readout_at="attn", pool_memory=True,
                                          fast_path=fast_path).double()).qlam
    assert model.uses_fast_path == fast_path
    x = torch.rand(3, 7, 2, dtype=torch.float64)
    ref = QLAM(2, model.config, readout_at="last", pool_memory=False).double()
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("pool")})
    feats = torch.stack([ref(x[:, : t + 1]) for t in range(7)], dim=1)  # (B, T, D)
    scores = x @ model.pool.weight[0] + model.pool.bias + feats @ model.pool_memory.weight[0]
    alpha = torch.softmax(scores, dim=1)
    torch.testing.assert_close(model(x), (alpha[..., None] * feats).sum(1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("fast_path", [True, False])
def test_segment_readout_matches_hand_means(fast_path):
    """readout_at="segments": per segment of L tokens, Σ_{t in segment} f_t / L, concatenated;
    segments not reached yet are zero, a partial one is its partial sum over L."""
    torch.manual_seed(9)
    model = QLAM(1, n_qubits=4, readout_at="segments", segments=4, segment_length=3, fast_path=fast_path).double()
    assert model.uses_fast_path == fast_path
    assert model.feature_dim == 4 * model.token_feature_dim
    x = torch.rand(2, 8, 1, dtype=torch.float64)
    ref = QLAM(1, model.config, readout_at="last", segments=0, segment_length=0).double()
    ref.load_state_dict(model.state_dict())
    feats = torch.stack([ref(x[:, : t + 1]) for t in range(8)], dim=1)  # (B, T, D)
    want = torch.cat([feats[:, 0:3].sum(1) / 3, feats[:, 3:6].sum(1) / 3, feats[:, 6:8].sum(1) / 3,
                      torch.zeros_like(feats[:, 0])], dim=1)
    torch.testing.assert_close(model(x), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("head_norm", ["batch", "layer"])
def test_linear_head_matches_hand_logits(head_norm):
    """head_hidden=0: logits = W · normalise(features) + b, the normalisation without an affine
    part (in evaluation, BatchNorm uses its running statistics)."""
    torch.manual_seed(4)
    model = QLAMClassifier(2, 3, n_qubits=3, readout="xyz", readout_at="segments", segments=2, segment_length=3,
                           head_hidden=0, head_norm=head_norm).double()
    x = torch.rand(5, 6, 2, dtype=torch.float64)
    model.train()
    model(x)  # BatchNorm: one update of the running statistics
    model.eval()
    f = model.qlam(x)
    if head_norm == "batch":
        bn = model.head[0]
        z = (f - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    else:
        z = (f - f.mean(1, keepdim=True)) / torch.sqrt(f.var(1, unbiased=False, keepdim=True) + 1e-5)
    lin = model.head[1]
    torch.testing.assert_close(model(x), z @ lin.weight.T + lin.bias, atol=1e-12, rtol=0)
    d = model.qlam.feature_dim
    assert sum(p.numel() for p in model.head.parameters()) == d * 3 + 3


@pytest.mark.parametrize("kw, message", [
    (dict(readout_at="attn", pool_positions=4), "pool_positions=4"),
    (dict(readout_at="segments", segments=2, segment_length=2), "segments=2 x segment_length=2 = 4 tokens"),
])
def test_position_bound_readouts_refuse_longer_sequences(kw, message):
    model = QLAMClassifier(1, 3, n_qubits=3, **kw)
    with pytest.raises(ValueError, match=message):
        model(torch.rand(2, 5, 1))
    state = model.init_state(2)
    for _ in range(4):
        _, state = model.step(torch.rand(2, 1), state)
    with pytest.raises(ValueError, match=message):
        model.step(torch.rand(2, 1), state)
    assert state.tokens == 4  # the refused token changed nothing


def test_readout_matches_hand_calculation_for_one_token():
    """One token, RY encoding, no entangling effect measurable: <Z_i> = cos(a_i), <X_i> = sin(a_i)."""
    model = QLAM(1, n_qubits=3, depth=1, entangler="cz", readout="xyz", readout_at="last", backend="statevector")
    model = model.double()
    with torch.no_grad():
        model.encoder.weight.copy_(torch.tensor([[0.3], [1.1], [-0.7]], dtype=torch.float64))
        model.encoder.bias.zero_()
        model.entangler_params[0].zero_()
    x = torch.ones(1, 1, 1, dtype=torch.float64)
    f = model(x).reshape(3, 2)  # (X, Z) per qubit
    a = torch.tensor([0.3, 1.1, -0.7], dtype=torch.float64)
    # CZ on (0,1) after RY: <Z_i> unchanged; <X_0> = sin(a0)·<Z_1>, <X_1> = sin(a1)·<Z_0>, <X_2> = sin(a2)
    want_z = torch.cos(a)
    want_x = torch.stack([torch.sin(a[0]) * torch.cos(a[1]), torch.sin(a[1]) * torch.cos(a[0]), torch.sin(a[2])])
    torch.testing.assert_close(f[:, 1], want_z, atol=1e-12, rtol=0)
    torch.testing.assert_close(f[:, 0], want_x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", ["statevector", "mps"])
def test_cell_api_one_token_matches_hand_calculation(backend):
    """new_memory -> update (gates built inside) -> read, against the hand values of the test above."""
    model = QLAM(1, n_qubits=3, depth=1, entangler="cz", readout="xyz", backend=backend).double()
    with torch.no_grad():
        model.encoder.weight.copy_(torch.tensor([[0.3], [1.1], [-0.7]], dtype=torch.float64))
        model.encoder.bias.zero_()
        model.entangler_params[0].zero_()
    assert model.backend == backend
    memory = model.new_memory(2)
    assert isinstance(memory, StateVector if backend == "statevector" else MPS)
    assert memory.batch == 2 and memory.n_qubits == 3 and memory.dtype == torch.float64
    x_t = torch.ones(2, 1, dtype=torch.float64)
    model.update(memory, x_t)
    f = model.read(memory, x_t).reshape(2, 3, 2)  # (X, Z) per qubit
    a = torch.tensor([0.3, 1.1, -0.7], dtype=torch.float64)
    want_x = torch.stack([torch.sin(a[0]) * torch.cos(a[1]), torch.sin(a[1]) * torch.cos(a[0]), torch.sin(a[2])])
    torch.testing.assert_close(f[..., 1], torch.cos(a).expand(2, 3), atol=1e-12, rtol=0)
    torch.testing.assert_close(f[..., 0], want_x.expand(2, 3), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kw", [CONFIGS[0], CONFIGS[1], CONFIGS[2]])
@pytest.mark.parametrize("backend", ["statevector", "mps"])
def test_cell_api_token_by_token_equals_forward(kw, backend):
    """The public cell driven by hand (gates built once) gives forward's features and final memory;
    on the statevector the default config's forward is the dense scan, an independent route."""
    torch.manual_seed(2)
    qlam = QLAM(4, n_qubits=5, backend=backend, bond_dim=4, **kw).double()
    x = torch.rand(2, 6, 4, dtype=torch.float64)
    gates = qlam.token_gates()
    dense = backend == "statevector" and not qlam.config.reupload
    assert gates.kind == ("dense" if dense else "layers")
    assert any(t.requires_grad for t in gates.tensors())
    memory, feats = qlam.new_memory(2), []
    for t in range(6):
        qlam.update(memory, x[:, t], gates)
        feats.append(qlam.read(memory, x[:, t]))
        assert feats[-1].shape == (2, qlam.token_feature_dim)
    want = torch.stack(feats, 1).mean(1) if qlam.config.readout_at == "every" else feats[-1]
    torch.testing.assert_close(qlam(x), want, atol=1e-12, rtol=0)
    if qlam.uses_fast_path:
        assert qlam.last_memory is None
    else:
        torch.testing.assert_close(qlam.last_memory.to_dense(), memory.to_dense(), atol=1e-12, rtol=0)


def test_truncated_mps_reports_discarded_weight_and_trains():
    torch.manual_seed(4)
    model = QLAMClassifier(2, 2, n_qubits=8, backend="mps", bond_dim=2, depth=2)
    x = torch.rand(8, 12, 2)
    y = (x[:, :, 0].mean(1) > 0.5).long()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
        cut, fid = model.qlam.last_discarded_weight, model.qlam.last_fidelity_estimate
        assert cut.shape == (8,) and torch.all(cut > 0) and torch.all(cut < 1)
        assert torch.all(fid < 1) and torch.all(fid > 0)
    assert losses[-1] < losses[0] - 0.05
    # the statevector backend never truncates and says so
    sv = QLAMClassifier(2, 2, n_qubits=4, backend="statevector")
    sv(x)
    assert sv.qlam.last_discarded_weight is None


@pytest.mark.parametrize("bad, exc", [
    (dict(n_qubits=0), ValueError), (dict(bond_dim=0), ValueError), (dict(depth=0), ValueError),
    (dict(entangler="iswap"), ValueError), (dict(readout="xyz+foo"), ValueError), (dict(readout="xyz+xyz"), ValueError),
    (dict(backend="gpu"), ValueError), (dict(readout_at="first"), ValueError), (dict(encoding="rx"), ValueError),
    (dict(real=True, encoding="ry_rz"), ValueError), (dict(n_qubits=2.5), TypeError),
    (dict(checkpoint_every=0), ValueError), (dict(query_heads=0), ValueError), (dict(n_qubits=1, readout="zz"), ValueError),
    (dict(pool_positions=8, readout_at="every"), ValueError), (dict(pool_memory=True), ValueError),
    (dict(pool_memory=1, readout_at="attn"), TypeError), (dict(pool_positions=-1, readout_at="attn"), ValueError),
    (dict(readout_at="segments"), ValueError), (dict(readout_at="segments", segments=4), ValueError),
    (dict(segments=4, segment_length=2), ValueError), (dict(head_norm="group"), ValueError), (dict(head_hidden=-1), ValueError), (dict(readout_at="segments", segments=2, segment_length=-1), ValueError),
])
def test_invalid_configs(bad, exc):
    with pytest.raises(exc):
        QLAMConfig(**bad)


def test_bad_inputs():
    model = QLAMClassifier(3, 4, n_qubits=3)
    with pytest.raises(ValueError, match="feature size"):
        model(torch.rand(2, 5, 4))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 5))
    with pytest.raises(ValueError, match="feature size"):
        model.step(torch.rand(2, 4), model.init_state(2))
    with pytest.raises(ValueError, match="num_classes"):
        QLAMClassifier(3, 1)
    with pytest.raises(ValueError, match="batch"):
        model.step(torch.rand(3, 3), model.init_state(2))
    bad = torch.rand(2, 5, 3)
    bad[1, 2, 0] = float("nan")
    for m in (model, QLAMClassifier(3, 4, n_qubits=3, backend="mps"), QLAMClassifier(3, 4, n_qubits=3, fast_path=False)):
        with pytest.raises(ValueError, match="NaN"):
            m(bad)
