"""QLAM readout protocols (``QLAMConfig.readout_protocol``): shots, windows, collapse, weak
measurement and gate noise, against the exact reads and hand calculations.

Statistical tests use fixed generators and a stated bound: a mean of N draws of a ±1 (or ±1/g)
outcome with expectation e lies within 5·sqrt(var/N) of e, var = 1 - e² (1/g² - e²).
"""
import math
import re

import pytest
import torch

from qlam_tn import StateVector
from qlam_tn.models.qlam import QLAM, QLAMClassifier, QLAMConfig
from qlam_tn.models.readout_protocols import measurement_settings, parse_noise, shot_estimate


def _model(**kw):
    """A small float64 QLAM with every readout part, random weights (seed 0)."""
    base = dict(n_qubits=3, readout="query+xyz+zz", query_heads=2, entangler="su4", readout_at="every")
    base.update(kw)
    torch.manual_seed(0)
    return QLAM(4, QLAMConfig(**base)).double()


def _with(model, **kw):
    """The same weights under other readout settings."""
    other = QLAM(model.input_dim, model.config, **kw).double()
    other.load_state_dict(model.state_dict())
    return other


def _x(b=3, t=5, seed=1):
    return torch.rand(b, t, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _cell_reads(model, x):
    """Reference: the documented cell API, token by token, exact reads (B, T, D)."""
    mem = model.new_memory(x.shape[0])
    gates = model.token_gates()
    out = []
    for t in range(x.shape[1]):
        model.update(mem, x[:, t], gates)
        out.append(model.read(mem, x[:, t]))
    return torch.stack(out, 1)


# ---------------------------------------------------------------------------------------------
# exact, end, window: deterministic
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(), dict(readout="query+xyz", real=True, entangler="su4"),
                                dict(real=False, encoding="ry_rz")])
def test_exact_protocol_is_todays_readout(kw):
    model = _model(**kw)
    explicit = _with(model, readout_protocol="exact")
    x = _x()
    assert not explicit.protocol_active
    # the same code path as a model built before the protocols existed: bit for bit
    assert torch.equal(explicit.features(x), model.features(x))
    assert torch.equal(explicit(x), model(x))
    torch.testing.assert_close(model.features(x), _cell_reads(model, x), atol=1e-12, rtol=0)


def test_window_as_long_as_the_sequence_equals_exact():
    model = _model()
    x = _x(t=5)
    for tau in (5, 9):
        win = _with(model, readout_protocol="window", window=tau)
        assert torch.equal(win.features(x), model.features(x))
        torch.testing.assert_close(win(x), model(x), atol=0, rtol=0)


def test_window_reads_only_the_last_tau_tokens_from_a_fresh_memory():
    model = _model()
    x = _x(t=6)
    tau = 3
    got = _with(model, readout_protocol="window", window=tau).features(x)
    for t in range(6):
        ref = _cell_reads(model, x[:, max(0, t - tau + 1):t + 1])[:, -1]
        torch.testing.assert_close(got[:, t], ref, atol=1e-12, rtol=0)
    # and it is not the exact read once the window cuts the prefix
    assert (got[:, tau:] - model.features(x)[:, tau:]).abs().max() > 1e-3


def test_window_on_a_hand_built_memory():
    """Two qubits, identity entangler, token t rotates both qubits by RY(x_t) (encoder weight 1,
    bias 0): from |0> the tokens t-τ+1..t leave <X> = sin(s), <Z> = cos(s) with s their sum."""
    a = [0.1, 0.2, 0.4, 0.8, 1.6]
    tau = 2
    model = QLAM(1, QLAMConfig(n_qubits=2, depth=1, entangler="su4", readout="xyz", readout_at="every",
                               readout_protocol="window", window=tau)).double()
    with torch.no_grad():
        model.entangler_params[0].zero_()
        model.encoder.weight.fill_(1.0)
        model.encoder.bias.zero_()
    x = torch.tensor(a, dtype=torch.float64).view(1, -1, 1)
    got = model.features(x)[0]  # (T, [X0, Z0, X1, Z1])
    sums = [sum(a[max(0, t - tau + 1):t + 1]) for t in range(len(a))]  # 0.1, 0.3, 0.6, 1.2, 2.4
    want = torch.tensor([[math.sin(v), math.cos(v)] * 2 for v in sums], dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    # the sequence-level read (readout_at="last"): the last window only
    last = QLAM(1, QLAMConfig(n_qubits=2, depth=1, entangler="su4", readout="xyz", readout_at="last",
                              readout_protocol="window", window=3)).double()
    last.load_state_dict(model.state_dict())
    s3 = sum(a[-3:])
    torch.testing.assert_close(last(x)[0], torch.tensor([math.sin(s3), math.cos(s3)] * 2, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_end_equals_exact_at_the_last_position_and_is_refused_elsewhere():
    torch.manual_seed(0)
    clf = QLAMClassifier(4, 3, n_qubits=3, readout_at="last", entangler="su4").double()
    end = QLAMClassifier(4, 3, clf.config, readout_protocol="end").double()
    end.load_state_dict(clf.state_dict())
    x = _x()
    assert torch.equal(end(x), clf(x))
    torch.testing.assert_close(end.qlam(x), _cell_reads(clf.qlam, x)[:, -1], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="after the last token"):
        end.forward_sequence(x)  # per-position outputs read after every token
    with pytest.raises(ValueError, match="pools reads from every token"):
        QLAMConfig(readout_at="every", readout_protocol="end")


# ---------------------------------------------------------------------------------------------
# shots: unbiased, variance (1 - e²)/S, converging to exact
# ---------------------------------------------------------------------------------------------

def test_restart_shots_are_unbiased_with_binomial_variance():
    model = _model()
    x = _x(b=2, t=4)
    with torch.no_grad():
        exact = model.features(x)
    s, draws = 16, 400
    noisy = _with(model, readout_protocol="restart", shots=s)
    noisy.readout_generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        runs = torch.stack([noisy.features(x) for _ in range(draws)])
    var = (1 - exact ** 2) / s
    # the mean over draws: within 5 sigma of the exact value, every feature
    sigma = (var / draws).sqrt()
    assert bool(((runs.mean(0) - exact).abs() <= 5 * sigma + 1e-12).all())
    # the variance: pooled over features, (observed / predicted) within 10% (about 10 sigma of
    # the ~1% relative error of a variance estimated from 400 x 114 draws)
    ratio = runs.var(0).sum() / var.sum()
    assert abs(float(ratio) - 1) < 0.1
    # per feature: the sample variance within 5 sigma of (1 - e²)/S, its own standard error
    # sqrt((m4 - v²)/N) from the draws' fourth central moment (features with e = ±1 have none)
    dev = runs - runs.mean(0)
    v, m4 = dev.pow(2).mean(0), dev.pow(4).mean(0)
    se = ((m4 - v ** 2).clamp(min=0) / draws).sqrt()
    assert bool(((v - var).abs() <= 5 * se + 1e-12).all())
    # every read is a mean of S outcomes ±1: a multiple of 2/S
    k = (runs + 1) * s / 2
    torch.testing.assert_close(k, k.round(), atol=1e-9, rtol=0)


def test_restart_converges_to_exact_as_shots_grow():
    model = _model()
    x = _x(b=4, t=4)
    with torch.no_grad():
        exact = model.features(x)
    errors = []
    for s in (4, 64, 1024, 16384):
        noisy = _with(model, readout_protocol="restart", shots=s)
        noisy.readout_generator = torch.Generator().manual_seed(s)
        with torch.no_grad():
            err = (noisy.features(x) - exact).pow(2).mean().sqrt()
        # root-mean-square error against its prediction sqrt(mean(1 - e²)/S): within 30%
        predicted = ((1 - exact ** 2).mean() / s).sqrt()
        assert 0.7 < float(err / predicted) < 1.3
        errors.append(float(err))
    assert errors == sorted(errors, reverse=True)


@pytest.mark.parametrize("kw", [dict(readout="query+xyz", real=True),  # the dense scan
                                dict(backend="mps", cutoff=0.0)])         # the general path
def test_shot_noise_gradient_is_the_exact_expectations(kw):
    model = _model(**kw)
    x = _x()
    w = torch.randn(model.token_feature_dim, dtype=torch.float64)
    (model.features(x) @ w).sum().backward()
    want = [p.grad.clone() for p in model.parameters()]
    noisy = _with(model, readout_protocol="restart", shots=3)
    (noisy.features(x) @ w).sum().backward()
    for a, b in zip(want, [p.grad for p in noisy.parameters()]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_shot_estimate_of_certain_outcomes_is_exact():
    e = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    assert torch.equal(shot_estimate(e, 7, torch.Generator().manual_seed(0)), e)


# ---------------------------------------------------------------------------------------------
# collapse and weak measurement
# ---------------------------------------------------------------------------------------------

def _product_model(a: float, protocol: str, shots: int, **kw):
    """Two qubits, identity entangler (su4 parameters 0), each token RY(a) on both qubits; reads
    X and Z (settings X, Z)."""
    model = QLAM(1, QLAMConfig(n_qubits=2, depth=1, entangler="su4", readout="xyz", readout_at="every",
                               readout_protocol=protocol, shots=shots, **kw)).double()
    with torch.no_grad():
        model.entangler_params[0].zero_()
        model.encoder.weight.zero_()
        model.encoder.bias.fill_(a)
    return model


@torch.no_grad()  # sampled reads carry no gradient: evaluation only
def test_collapse_on_a_product_memory_matches_the_hand_calculation():
    """Per qubit, token 1 leaves RY(a)|0>: <X> = sin a, <Z> = cos a. A copy that measured Z is
    then |0> (prob cos²(a/2)) or |1>, and token 2 gives it <Z> = ±cos a: mean cos a·(2cos²(a/2) - 1)
    = cos²a (exact, without collapse: cos 2a). A copy that measured X is |±> (prob
    (1 ± sin a)/2), token 2 gives <X> = ±cos a: mean sin a·cos a (exact: sin 2a)."""
    a, copies = 0.7, 20000
    model = _product_model(a, "collapse", copies)
    assert measurement_settings(model.config) == ["X", "Z"]
    model.readout_generator = torch.Generator().manual_seed(3)
    f = model.features(torch.zeros(1, 2, 1, dtype=torch.float64))[0]  # (T=2, [X0, Z0, X1, Z1])
    want = torch.tensor([[math.sin(a), math.cos(a)] * 2,
                         [math.sin(a) * math.cos(a), math.cos(a) ** 2] * 2], dtype=torch.float64)
    per_feature = copies // 2
    sigma = ((1 - want ** 2) / per_feature).sqrt()
    assert bool(((f - want).abs() <= 5 * sigma).all()), (f, want)
    exact = torch.tensor([math.sin(2 * a), math.cos(2 * a)] * 2, dtype=torch.float64)
    assert bool(((f[1] - exact).abs() > 20 * sigma[1]).all())  # the back-action is seen


@pytest.mark.parametrize("backend", ["statevector", "mps"])
def test_collapse_first_read_is_unbiased_for_an_entangled_memory(backend):
    """Before any measurement the copies are the exact state: the first read's mean over
    S/K copies per feature lies within 5 sigma of the exact expectation (on either engine: the
    MPS measures at its orthogonality centre)."""
    model = _model(n_qubits=4, backend=backend, cutoff=0.0)
    x = _x(b=2, t=3)
    exact = model.features(x)
    copies = 6000
    coll = _with(model, readout_protocol="collapse", shots=copies)
    coll.readout_generator = torch.Generator().manual_seed(11)
    k = len(measurement_settings(coll.config))  # query0, query1, X, Z
    assert k == 4
    with torch.no_grad():
        f = coll.features(x[:, :1])[:, 0]
    sigma = ((1 - exact[:, 0] ** 2) / (copies // k)).sqrt()
    assert bool(((f - exact[:, 0]).abs() <= 5 * sigma + 1e-12).all())


@torch.no_grad()  # sampled reads carry no gradient: evaluation only
def test_weak_measurement_estimate_is_unbiased_and_g1_is_projective():
    a, copies = 0.7, 20000
    g = 0.3
    weak = _product_model(a, "weak", copies, weak_strength=g)
    weak.readout_generator = torch.Generator().manual_seed(4)
    f = weak.features(torch.zeros(1, 1, 1, dtype=torch.float64))[0, 0]
    want = torch.tensor([math.sin(a), math.cos(a)] * 2, dtype=torch.float64)
    sigma = ((1 / g ** 2 - want ** 2) / (copies // 2)).sqrt()
    assert bool(((f - want).abs() <= 5 * sigma).all())
    # strength 1: the projective measurement, the hand calculation of the collapse test
    strong = _product_model(a, "weak", copies, weak_strength=1.0)
    strong.readout_generator = torch.Generator().manual_seed(5)
    f2 = strong.features(torch.zeros(1, 2, 1, dtype=torch.float64))[0, 1]
    want2 = torch.tensor([math.sin(a) * math.cos(a), math.cos(a) ** 2] * 2, dtype=torch.float64)
    sigma2 = ((1 - want2 ** 2) / (copies // 2)).sqrt()
    assert bool(((f2 - want2).abs() <= 5 * sigma2).all())


def _token_unitary(model, x_t):
    """``(2^n, 2^n)`` complex128 matrix of one token update with token ``x_t (1, F)``: the cell
    applied to every basis state (column j = U|j>)."""
    n = model.config.n_qubits
    d = 2 ** n
    dtype = model.new_memory(1).dtype
    mem = StateVector(torch.eye(d, dtype=dtype).reshape(d, *[2] * n))
    model.update(mem, x_t.expand(d, -1), model.token_gates())
    return mem.psi.reshape(d, d).T.to(torch.complex128)


def _measured_reference(model, x, g):
    """Density-matrix reference of ``collapse`` (g = 1) / ``weak`` (g < 1): per sample and setting
    the copies' state ρ evolves by each token's unitary, the setting's features are read as
    Tr(O ρ), then ρ -> Σ_± M_± ρ M_±† for every qubit, M_± = sqrt((1 ± g O_q)/2), O_q the qubit's
    measured direction n·σ. ``(B, T, D)`` expected features."""
    cfg = model.config
    n, h = cfg.n_qubits, cfg.query_heads
    pauli = [torch.tensor(m, dtype=torch.complex128) for m in
             ([[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]])]

    def on(op, q):
        return torch.kron(torch.kron(torch.eye(2 ** q, dtype=torch.complex128), op),
                          torch.eye(2 ** (n - q - 1), dtype=torch.complex128))

    def sqrtm(a):
        w, v = torch.linalg.eigh(a)
        return v @ torch.diag(w.clamp(min=0).sqrt().to(v.dtype)) @ v.conj().T

    c = 2 if cfg.real else 3
    eye = torch.eye(2 ** n, dtype=torch.complex128)
    b_len, t_len, _ = x.shape
    out = torch.zeros(b_len, t_len, model.token_feature_dim, dtype=torch.float64)
    for b in range(b_len):
        for name in measurement_settings(cfg):
            rho = torch.zeros(2 ** n, 2 ** n, dtype=torch.complex128)
            rho[0, 0] = 1
            for t in range(t_len):
                u = _token_unitary(model, x[b:b + 1, t])
                rho = u @ rho @ u.conj().T
                if name.startswith("query"):  # layout of QLAM.read: query i*h + j
                    q = model.query(x[b:b + 1, t]).reshape(n, h, -1)[:, int(name[5:])].double()
                    th, ph = q[:, 0], (q[:, 1] if not cfg.real else torch.zeros(n, dtype=torch.float64))
                    dirs = torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], -1)
                    slots = [i * h + int(name[5:]) for i in range(n)]
                else:  # then xyz i*c + axis, then zz
                    axis = {"X": 0, "Y": 1, "Z": 2}[name]
                    dirs = torch.zeros(n, 3, dtype=torch.float64)
                    dirs[:, axis] = 1
                    slots = [n * h + i * c + (c - 1 if name == "Z" else axis) for i in range(n)]
                obs = [sum(float(dirs[i, k]) * on(pauli[k], i) for k in range(3)) for i in range(n)]
                for i in range(n):
                    out[b, t, slots[i]] = torch.trace(obs[i] @ rho).real
                if name == "Z":
                    for i in range(n - 1):
                        out[b, t, n * h + c * n + i] = torch.trace(obs[i] @ obs[i + 1] @ rho).real
                for o in obs:
                    kraus = [sqrtm((eye + g * o) / 2), sqrtm((eye - g * o) / 2)]
                    rho = sum(m @ rho @ m.conj().T for m in kraus)
    return out


@pytest.mark.parametrize("protocol, g, backend, real", [
    ("collapse", 1.0, "statevector", True), ("collapse", 1.0, "mps", False),
    ("weak", 1.0, "statevector", True),  # strength 1: the projective measurement
    ("weak", 0.4, "mps", True), ("weak", 0.6, "statevector", False)])
def test_measured_reads_match_a_density_matrix(protocol, g, backend, real):
    """An entangled 3-qubit memory (random su4 entanglers, every readout part, K = 3 settings),
    two samples with different tokens, three reads with back-action: every feature of both
    samples within 5 sigma of the density-matrix reference (outcomes ±1/g, zz ±1/g²), and the
    two samples' references apart by far more (a mixing of their copies would show)."""
    torch.manual_seed(0)
    copies = 3 * 2000
    kw = dict(weak_strength=g) if protocol == "weak" else {}
    model = QLAM(3, QLAMConfig(n_qubits=3, readout="query+xyz+zz", query_heads=1, entangler="su4",
                               readout_at="every", backend=backend, cutoff=0.0, real=real,
                               encoding="ry" if real else "ry_rz", readout_protocol=protocol,
                               shots=copies, **kw)).double()
    x = 3 * torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    model.readout_generator = torch.Generator().manual_seed(20)
    with torch.no_grad():
        got = model.features(x)
        want = _measured_reference(model, x, g)
    second = torch.full((model.token_feature_dim,), 1 / g ** 2, dtype=torch.float64)
    second[-2:] = 1 / g ** 4  # the zz features
    sigma = ((second - want ** 2).clamp(min=0) / (copies // 3)).sqrt()
    assert bool(((got - want).abs() <= 5 * sigma + 1e-12).all()), ((got - want) / sigma).abs().max()
    assert float(((want[0] - want[1]).abs() / sigma[0]).max()) > 5


def test_collapse_copies_are_independent_within_and_across_samples():
    """The same sequence twice in a batch, 10 copies per setting, 300 runs: each feature's
    variance over runs is (1 - e²)/10 (pooled ratio within 10%, as for independent copies), and
    the two samples' errors are uncorrelated (mean correlation within 5/sqrt(300·D))."""
    torch.manual_seed(0)
    model = QLAM(3, QLAMConfig(n_qubits=3, readout="query+xyz+zz", query_heads=1, entangler="su4",
                               readout_at="every", readout_protocol="collapse", shots=30)).double()
    x = 3 * torch.rand(1, 3, 3, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    x = x.repeat(2, 1, 1)
    model.readout_generator = torch.Generator().manual_seed(1)
    runs_n = 300
    with torch.no_grad():
        want = _measured_reference(model, x[:1], 1.0)[0]
        runs = torch.stack([model.features(x) for _ in range(runs_n)])  # (runs, 2, T, D)
    var = (1 - want ** 2) / 10
    ratio = runs.var(0).sum() / (2 * var.sum())
    assert abs(float(ratio) - 1) < 0.1
    err = runs - want
    a, b = err[:, 0].flatten(1), err[:, 1].flatten(1)
    corr = (a * b).mean(0) / (a.pow(2).mean(0) * b.pow(2).mean(0)).sqrt()
    assert abs(float(corr.mean())) < 5 / math.sqrt(runs_n * corr.numel())


@torch.no_grad()  # sampled reads carry no gradient: evaluation only
def test_collapse_copies_are_reproducible_with_a_generator():
    model = _with(_model(), readout_protocol="collapse", shots=8)
    x = _x(b=2, t=3)
    outs = []
    for _ in range(2):
        model.readout_generator = torch.Generator().manual_seed(2)
        outs.append(model.features(x))
    assert torch.equal(*outs)


@pytest.mark.parametrize("kw", [dict(readout_protocol="collapse", shots=4),
                                dict(readout_protocol="weak", shots=4, weak_strength=0.5),
                                dict(noise=1e-3)])
def test_sampled_reads_refuse_to_record_a_gradient(kw):
    """Collapse, weak and noisy reads are drawn without a gradient: under autograd a training
    step would update only the head, so they are refused there; under no_grad they run."""
    torch.manual_seed(0)
    clf = QLAMClassifier(4, 3, n_qubits=3, readout_at="every", **kw).double()
    x = _x(b=2, t=3)
    with pytest.raises(ValueError, match="without a gradient"):
        clf(x)
    with torch.no_grad():
        assert bool(torch.isfinite(clf(x)).all())
    clf.qlam.requires_grad_(False)  # a frozen memory: nothing to train through, allowed
    assert bool(torch.isfinite(clf(x)).all())


# ---------------------------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["statevector", "mps"])
@torch.no_grad()  # sampled reads carry no gradient: evaluation only
def test_noise_rate_zero_equals_exact(backend):
    model = _model(backend=backend, cutoff=0.0)
    x = _x()
    quiet = _with(model, noise=0.0, trajectories=4)
    torch.testing.assert_close(quiet.features(x), model.features(x), atol=1e-12, rtol=0)
    cz = _model(entangler="cz", depth=3, reupload=True)
    torch.testing.assert_close(_with(cz, noise="dephasing:0", trajectories=2).features(x), cz.features(x),
                               atol=1e-12, rtol=0)


@torch.no_grad()  # sampled reads carry no gradient: evaluation only
def test_full_depolarizing_noise_erases_the_memory():
    """p = 1 after every gate leaves each qubit maximally mixed: every Pauli read averages to 0;
    with S one-shot trajectories the mean of S fair ±1 coins is within 5/sqrt(S) of 0."""
    model = _model(n_qubits=2, query_heads=1)
    s = 4000
    noisy = _with(model, readout_protocol="restart", shots=s, noise=1.0)
    noisy.readout_generator = torch.Generator().manual_seed(8)
    f = noisy.features(_x(b=1, t=2))
    assert float(f.abs().max()) <= 5 / math.sqrt(s)


@torch.no_grad()  # sampled reads carry no gradient: evaluation only
def test_noisy_trajectory_average_matches_a_density_matrix():
    """One qubit pair, identity entangler, two tokens of RY(a), dephasing p after each gate:
    the Bloch vector's x shrinks by (1 - 2p) per gate (Z flips with probability p), z is
    untouched; rotations in between mix them. Dense density-matrix reference, 5 sigma."""
    a, p, s = 0.9, 0.2, 20000
    model = _product_model(a, "restart", s, noise=f"dephasing:{p}")
    model.readout_generator = torch.Generator().manual_seed(6)
    f = model.features(torch.zeros(1, 2, 1, dtype=torch.float64))[0]
    ry = torch.tensor([[math.cos(a / 2), -math.sin(a / 2)], [math.sin(a / 2), math.cos(a / 2)]], dtype=torch.float64)
    z = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    x_op = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    rho = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))
    want = []
    for _ in range(2):
        rho = ry @ rho @ ry.T
        rho = (1 - p) * rho + p * z @ rho @ z  # after the rotation
        rho = (1 - p) * rho + p * z @ rho @ z  # after the (identity) two-qubit gate
        want.append([float(torch.trace(x_op @ rho)), float(torch.trace(z @ rho))] * 2)
    want = torch.tensor(want, dtype=torch.float64)
    sigma = ((1 - want ** 2) / s).sqrt()
    assert bool(((f - want).abs() <= 5 * sigma).all()), (f, want)


@pytest.mark.parametrize("kind", ["depolarizing", "amplitude_damping"])
@torch.no_grad()
def test_noisy_entangled_memory_matches_a_density_matrix(kind):
    """Two qubits with a random su4 entangler, two samples, two tokens, the channel (rate 0.3) on
    each qubit after the encoding rotations and on both after the two-qubit gate: S one-shot
    trajectories per read against the dense density-matrix evolution (Kraus operators written
    out here), every feature within 5 sigma; the noiseless reads are far outside."""
    p, s = 0.3, 20000
    torch.manual_seed(0)
    model = QLAM(2, QLAMConfig(n_qubits=2, depth=1, entangler="su4", readout="xyz+zz", readout_at="every",
                               readout_protocol="restart", shots=s, noise=f"{kind}:{p}")).double()
    x = 2 * torch.rand(2, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model.readout_generator = torch.Generator().manual_seed(4)
    got = model.features(x)

    def c(m):
        return torch.tensor(m, dtype=torch.complex128)

    eye, px, py, pz = c([[1, 0], [0, 1]]), c([[0, 1], [1, 0]]), c([[0, -1j], [1j, 0]]), c([[1, 0], [0, -1]])
    if kind == "depolarizing":  # rho -> (1 - p) rho + p I/2 on the qubit
        kraus = [math.sqrt(1 - 3 * p / 4) * eye] + [math.sqrt(p / 4) * q for q in (px, py, pz)]
    else:  # |1> decays to |0> with probability p
        kraus = [c([[1, 0], [0, math.sqrt(1 - p)]]), c([[0, math.sqrt(p)], [0, 0]])]
    on = [lambda k: torch.kron(k, eye), lambda k: torch.kron(eye, k)]

    def channel(rho):
        for q in (0, 1):
            rho = sum(on[q](k) @ rho @ on[q](k).conj().T for k in kraus)
        return rho

    gate = model.layer_gates()[0][0][0].to(torch.complex128)  # the pair (0, 1)'s SO(4)
    obs = [on[0](px), on[0](pz), on[1](px), on[1](pz), torch.kron(pz, pz)]  # X0 Z0 X1 Z1 Z0Z1
    want = torch.zeros_like(got)
    for b in range(2):
        rho = torch.zeros(4, 4, dtype=torch.complex128)
        rho[0, 0] = 1
        for t in range(2):
            a = model.encoder(x[b, t])
            ry = [c([[math.cos(v / 2), -math.sin(v / 2)], [math.sin(v / 2), math.cos(v / 2)]]) for v in a.tolist()]
            r = torch.kron(ry[0], ry[1])
            rho = channel(r @ rho @ r.conj().T)
            rho = channel(gate @ rho @ gate.conj().T)
            want[b, t] = torch.stack([torch.trace(o @ rho).real for o in obs])
    sigma = ((1 - want ** 2) / s).sqrt()
    assert bool(((got - want).abs() <= 5 * sigma).all()), ((got - want) / sigma).abs().max()
    assert float(((model.exact_features(x) - want).abs() / sigma).max()) > 10


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    (dict(readout_protocol="shots"), "unknown readout_protocol"),
    (dict(readout_protocol="restart", shots=0), "shots must be a positive int"),
    (dict(readout_protocol="restart", shots=2.5), "shots must be a positive int"),
    (dict(readout_protocol="exact", shots=10), "use 'restart'"),
    (dict(readout_protocol="collapse"), "set shots=S"),
    (dict(readout_protocol="window"), "window=tau goes with"),
    (dict(readout_protocol="restart", window=3), "window=tau goes with"),
    (dict(readout_protocol="window", window=0), "window must be a positive int"),
    (dict(readout_protocol="weak", shots=4), "weak_strength=g goes with"),
    (dict(readout_protocol="weak", shots=4, weak_strength=0.0), r"weak_strength must be in \(0, 1\]"),
    (dict(noise=1.5), r"noise rate must be in \[0, 1\]"),
    (dict(noise="thermal:0.1"), "unknown noise kind"),
    (dict(noise="depolarizing"), "write 'kind:p'"),
    (dict(noise=0.1, trajectories=0), "trajectories must be a positive int"),
    # query+xyz with one head: K = 3 settings (query0, X, Z); fewer copies leave features unmeasured
    (dict(readout_protocol="collapse", shots=2), "shots must be >= 3"),
    (dict(readout_protocol="weak", shots=1, weak_strength=0.5), "shots must be >= 3"),
    (dict(readout_protocol="collapse", shots=9, readout="query+xyz", query_heads=8), "needs K=10 settings"),
])
def test_bad_protocol_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        QLAMConfig(**kw)


def test_parse_noise():
    assert parse_noise(None) is None
    assert parse_noise(1e-3) == ("depolarizing", 1e-3)
    assert parse_noise("amplitude_damping:0.25") == ("amplitude_damping", 0.25)


def test_protocols_refuse_a_given_memory_and_streaming():
    model = _with(_model(), readout_protocol="restart", shots=4)
    x = _x()
    with pytest.raises(ValueError, match="fresh memory"):
        model(x, memory=StateVector.zeros(3, batch=3, dtype=torch.float64))
    with pytest.raises(ValueError, match="step streams free exact reads"):
        model.step(x[:, 0], model.init_state(3))


# ---------------------------------------------------------------------------------------------
# qlam eval under a protocol
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-qubit QLAM trained one epoch on a small MQAR (per-position outputs)."""
    from qlam_tn.experiments import train
    out = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    try:
        train.main(["--model", "qlam", "--model-cfg", "n_qubits=3", "query_heads=2", "readout_at=last",
                    "head_hidden=8", "--embed-dim", "8", "--batch-size", "16", "--threads", "1",
                    "--no-progress", "--dataset", "mqar", "--data-cfg", "seq_len=16", "num_pairs=2",
                    "vocab_size=24", "--n-train", "64", "--n-val", "16", "--n-test", "32", "--epochs", "1",
                    "--out", str(out), "--name", "tiny"])
    finally:
        torch.set_num_threads(threads)
    return out / "tiny"


def test_eval_protocols_on_a_checkpoint(tiny_run, tmp_path):
    from qlam_tn.experiments import evaluate
    exact = evaluate.score(tiny_run, device="cpu")
    # a window as long as the sequence reads exactly what the free readout reads
    win = evaluate.score(tiny_run, device="cpu", protocol=evaluate.protocol_settings("window", window=16))
    assert win["accuracy"] == win["exact_accuracy"] == exact["accuracy"]
    # shots: each repeat's generator seeded seed + r, reproducible
    kw = dict(device="cpu", protocol=evaluate.protocol_settings("restart", "4"), repeats=2, seed=7)
    a, b = evaluate.score(tiny_run, **kw), evaluate.score(tiny_run, **kw)
    assert a["accuracies"] == b["accuracies"] and len(a["accuracies"]) == 2
    assert a["accuracy"] == pytest.approx(sum(a["accuracies"]) / 2)
    assert a["protocol"]["shots"] == 4 and a["exact_accuracy"] == exact["accuracy"]
    # end is refused for per-position outputs, with the reason
    with pytest.raises(ValueError, match="pools reads from every token|after the last token"):
        evaluate.score(tiny_run, device="cpu", protocol=evaluate.protocol_settings("end"))
    # the CLI writes the JSON it prints
    out = tmp_path / "e.json"
    assert evaluate.main(["--checkpoint", str(tiny_run), "--protocol", "collapse", "--shots", "8",
                          "--limit", "4", "--device", "cpu", "--json", "--out", str(out)]) == 0
    import json
    saved = json.loads(out.read_text())
    assert saved["protocol"]["readout_protocol"] == "collapse" and saved["limit"] == 4
    assert saved["n"] == 4 * 2  # 4 sequences, 2 queried positions each
    with pytest.raises(SystemExit):
        evaluate.main(["--checkpoint", str(tiny_run), "--protocol", "collapse"])  # no shots


@pytest.mark.parametrize("argv, match", [
    (["--repeats", "3"], "--repeats: the sampling of a readout protocol"),
    (["--seed", "2"], "--seed: the sampling of a readout protocol"),
    (["--protocol", "restart", "--shots", "4", "--trajectories", "3"], "--trajectories is the number"),
    (["--protocol", "restart", "--trajectories", "3"], "--trajectories is the number"),
    (["--protocol", "restart", "--shots", "4", "--out", "NODIR/e.json"], "does not exist"),
    (["--protocol", "restart", "--shots", "4", "--bond-dim", "2"], "separate studies"),
    # the model's own checks, on loading: K = 4 settings (2 heads, X, Z); per-position outputs
    (["--protocol", "collapse", "--shots", "3"], "shots must be >= 4"),
    (["--protocol", "end"], "gives an output at every position"),
    (["--protocol", "window", "--window", "0"], "window must be a positive int"),
    (["--noise", "-0.1"], r"noise rate must be in \[0, 1\]"),
])
def test_eval_refuses_contradicting_flags_before_running(tiny_run, tmp_path, capsys, monkeypatch, argv, match):
    from qlam_tn.experiments import evaluate
    argv = [a.replace("NODIR", str(tmp_path / "missing")) for a in argv]
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluation ran"))
    monkeypatch.setattr(evaluate, "evaluate_protocol", lambda *a, **k: pytest.fail("evaluation ran"))
    with pytest.raises(SystemExit):
        evaluate.main(["--checkpoint", str(tiny_run), "--device", "cpu", *argv])
    err = capsys.readouterr().err
    assert re.search(match, err), err


def test_plain_eval_of_a_shot_trained_model_reads_exactly(tmp_path):
    """A model trained through shot noise (restart, S = 2) is scored on its free exact reads
    when no protocol is asked for: the same accuracy every time, that of --protocol exact."""
    from qlam_tn.experiments import evaluate, train
    threads = torch.get_num_threads()
    try:
        train.main(["--model", "qlam", "--model-cfg", "n_qubits=3", "readout_at=last", "head_hidden=8",
                    "readout_protocol=restart", "shots=2", "--embed-dim", "8", "--batch-size", "16",
                    "--threads", "1", "--no-progress", "--dataset", "mqar", "--data-cfg", "seq_len=12",
                    "num_pairs=2", "vocab_size=24", "--n-train", "32", "--n-val", "8", "--n-test", "64",
                    "--epochs", "1", "--out", str(tmp_path), "--name", "shots"])
    finally:
        torch.set_num_threads(threads)
    run = tmp_path / "shots"
    plain = [evaluate.score(run, device="cpu")["loss"] for _ in range(2)]
    exact = evaluate.score(run, device="cpu", protocol=evaluate.protocol_settings("exact"))
    assert plain[0] == plain[1] == exact["loss"] == exact["exact_loss"]


def test_parse_shots():
    from qlam_tn.experiments.evaluate import parse_shots
    assert parse_shots("inf") is None and parse_shots("64") == 64
    for bad in ("0", "-3", "1.5", "many", True):
        with pytest.raises(ValueError, match="shots must be"):
            parse_shots(bad)


@pytest.mark.parametrize("cfg", [["readout_protocol=collapse", "shots=8"], ["readout_protocol=weak", "shots=8",
                                 "weak_strength=0.5"], ["noise=0.01"]])
def test_training_under_a_sampled_readout_is_refused_before_anything_is_written(tmp_path, capsys, cfg):
    from qlam_tn.experiments import train
    with pytest.raises(SystemExit) as exc:
        train.main(["--model", "qlam", "--dataset", "digits", "--model-cfg", "n_qubits=3", *cfg,
                    "--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    assert exc.value.code == 2
    assert "no gradient to the memory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
