"""Shot-based expectations, projective / weak measurement with collapse, and reset.

References: the exact expectation of the same state (shot means), Born probabilities and
projectors applied to the dense vector (measurement), and the Kraus map ``Σ M ρ M†`` computed
densely (weak measurement, reset). Statistical checks use fixed seeds and a 5-sigma bound, the
sigma stated beside each.
"""
import math

import pytest
import torch

import qlam_tn as qt
from qlam_tn import gates as G

BACKENDS = [qt.MPS, qt.StateVector]


def _random_state(cls, n=3, batch=1, seed=0):
    """A generic entangled n-qubit state, the same for every sample of the batch."""
    gen = torch.Generator().manual_seed(seed)
    s = cls.zeros(n, batch=batch)
    for _ in range(2):
        for q in range(n):
            a = (torch.rand(3, generator=gen, dtype=torch.float64) * 6 - 3).tolist()
            s.apply(G.U3(*a), q)
        for q in range(n - 1):
            s.apply(G.CNOT(), (q, q + 1))
    return s


def _dense(s):
    return s.to_dense().to(torch.complex128)


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("shots", [1, 16, 256])
def test_shot_mean_is_unbiased_with_the_binomial_variance(cls, shots):
    n_copies = 4000
    s = _random_state(cls, batch=n_copies)
    for pauli in ["Z0", "X1 Y2", "Z0 Z2"]:
        exact = float(s.expect(pauli)[0])
        est = s.expect(pauli, shots=shots, generator=torch.Generator().manual_seed(7))
        var = (1 - exact ** 2) / shots
        # the mean of n_copies independent estimates: sigma = sqrt(var / n_copies)
        assert abs(float(est.mean()) - exact) < 5 * math.sqrt(var / n_copies), pauli
        # the variance about the exact mean: sigma from the spread of the squared deviations
        dev2 = (est - exact) ** 2
        sd_var = float(dev2.std()) / math.sqrt(n_copies)
        assert abs(float(dev2.mean()) - var) < 5 * sd_var + 1e-12, pauli
        # outcomes are means of +-1 values: (2k - S)/S for an integer k
        k = (est * shots + shots) / 2
        assert torch.allclose(k, k.round(), atol=1e-9)


@pytest.mark.parametrize("cls", BACKENDS)
def test_shots_are_reproducible_with_a_generator_and_leave_the_state(cls):
    s = _random_state(cls, batch=8)
    before = _dense(s).clone()
    a = s.expect("X0 Z1", shots=32, generator=torch.Generator().manual_seed(3))
    b = s.expect("X0 Z1", shots=32, generator=torch.Generator().manual_seed(3))
    c = s.expect("X0 Z1", shots=32, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(_dense(s), before)


def test_a_definite_observable_has_no_shot_noise():
    s = qt.MPS.zeros(2, batch=3).apply(G.X(), 1)
    assert torch.equal(s.expect("Z0 Z1", shots=5, generator=torch.Generator().manual_seed(0)),
                       torch.full((3,), -1.0, dtype=torch.float64))


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "10", None.__class__])
def test_bad_shots_are_refused(bad):
    s = qt.StateVector.zeros(2)
    with pytest.raises(ValueError, match="shots"):
        s.expect("Z0", shots=bad)


def test_a_generator_of_the_wrong_type_is_refused():
    s = qt.MPS.zeros(2)
    with pytest.raises(TypeError, match="generator"):
        s.expect("Z0", shots=4, generator=0)
    with pytest.raises(TypeError, match="generator"):
        s.measure(0, generator=0)


def test_shot_estimate_passes_the_exact_gradient_through():
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    s = qt.StateVector.zeros(1, batch=5).apply(G.RY(theta), 0)
    est = s.expect("Z0", shots=8, generator=torch.Generator().manual_seed(1))
    est.sum().backward()
    # d<Z>/dθ = -sin θ for RY(θ)|0>, once per sample
    assert math.isclose(float(theta.grad), -5 * math.sin(0.7), rel_tol=1e-12)


@pytest.mark.parametrize("cls", BACKENDS)
def test_measurement_statistics_follow_the_born_rule(cls):
    n_copies = 6000
    s = _random_state(cls, n=4, batch=n_copies, seed=2)
    psi = _dense(s)[0].reshape(2, 2, 2, 2)
    born = (psi.abs() ** 2).sum(dim=(0, 2)).T.reshape(-1)  # joint marginal of (q3, q1), q3 first
    out = s.measure([3, 1], generator=torch.Generator().manual_seed(5))
    assert out.shape == (n_copies, 2) and out.dtype == torch.int64
    freq = torch.bincount(out[:, 0] * 2 + out[:, 1], minlength=4).double() / n_copies
    sigma = (born * (1 - born) / n_copies).sqrt()
    assert bool(((freq - born).abs() < 5 * sigma + 1e-12).all()), (freq, born)


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("basis", ["Z", "X", "Y"])
def test_post_measurement_state_is_the_projected_vector(cls, basis):
    n = 4
    s = _random_state(cls, n=n, batch=6, seed=3)
    psi = _dense(s)
    qubits = [2, 0]
    out = s.measure(qubits, generator=torch.Generator().manual_seed(11), basis=basis)
    vecs = {"Z": [[1, 0], [0, 1]], "X": [[1, 1], [1, -1]], "Y": [[1, 1j], [1, -1j]]}[basis]
    v = torch.tensor(vecs, dtype=torch.complex128)
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    for b in range(6):
        ref = psi[b]
        for q, bit in zip(qubits, out[b].tolist()):
            proj = torch.outer(v[bit], v[bit].conj())
            ref = torch.einsum("ij,xjy->xiy", proj, ref.reshape(2 ** q, 2, -1)).reshape(-1)
        ref = ref / torch.linalg.vector_norm(ref)
        assert torch.allclose(_dense(s)[b], ref, atol=1e-10)
    assert torch.allclose(s.norm(), torch.ones(6, dtype=torch.float64), atol=1e-12)


def test_mps_keeps_its_canonical_form_after_measurement():
    s = _random_state(qt.MPS, n=5, batch=4, seed=4)
    s.measure([4, 1, 3], generator=torch.Generator().manual_seed(2))
    for k, t in enumerate(s.tensors):
        if k < s.center:
            m = t.reshape(4, -1, t.shape[-1])
            eye = torch.eye(m.shape[-1], dtype=m.dtype).expand(4, -1, -1)
            assert torch.allclose(m.mH @ m, eye, atol=1e-10)
        elif k > s.center:
            m = t.reshape(4, t.shape[1], -1)
            eye = torch.eye(m.shape[1], dtype=m.dtype).expand(4, -1, -1)
            assert torch.allclose(m @ m.mH, eye, atol=1e-10)


def test_mps_and_statevector_draw_the_same_outcomes_from_one_seed():
    a = _random_state(qt.MPS, n=4, batch=16, seed=5)
    b = _random_state(qt.StateVector, n=4, batch=16, seed=5)
    oa = a.measure([1, 2, 0], generator=torch.Generator().manual_seed(9))
    ob = b.measure([1, 2, 0], generator=torch.Generator().manual_seed(9))
    assert torch.equal(oa, ob)
    assert torch.allclose(a.to_dense(), b.to_dense(), atol=1e-10)


def _weak_channel(rho, g, q, n):
    """``Σ_b M_b ρ M_b†`` on qubit ``q`` of a dense ``(2**n, 2**n)`` ρ."""
    a, c = math.sqrt((1 + g) / 2), math.sqrt((1 - g) / 2)
    out = torch.zeros_like(rho)
    for m in (torch.diag(torch.tensor([a, c])), torch.diag(torch.tensor([c, a]))):
        full = torch.kron(torch.kron(torch.eye(2 ** q), m), torch.eye(2 ** (n - q - 1))).to(rho.dtype)
        out = out + full @ rho @ full.mH
    return out


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("g", [0.3, 0.8])
def test_weak_measurement_averages_to_the_kraus_channel(cls, g):
    n, n_copies = 3, 4000
    s = _random_state(cls, n=n, batch=n_copies, seed=6)
    psi0 = _dense(s)[0]
    z = float(s.expect("Z1")[0])
    out = s.weak_measure(1, g, generator=torch.Generator().manual_seed(13))
    p0 = (1 + g * z) / 2
    assert abs(float((out == 0).double().mean()) - p0) < 5 * math.sqrt(p0 * (1 - p0) / n_copies)
    psi = _dense(s)
    rho_traj = torch.einsum("bi,bj->bij", psi, psi.conj())
    mean = rho_traj.mean(0)
    ref = _weak_channel(torch.outer(psi0, psi0.conj()), g, 1, n)
    sd = (rho_traj.real.std(0) + rho_traj.imag.std(0)) / math.sqrt(n_copies)
    assert bool(((mean - ref).abs() < 5 * sd + 1e-12).all())
    # non-vacuous: the channel moved the state
    assert float((ref - torch.outer(psi0, psi0.conj())).abs().max()) > 0.01


@pytest.mark.parametrize("cls", BACKENDS)
def test_weak_measurement_limits(cls):
    s = _random_state(cls, n=3, batch=4, seed=7)
    before = _dense(s).clone()
    s.weak_measure(0, 0.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(_dense(s), before, atol=1e-12)
    a = _random_state(cls, n=3, batch=4, seed=7)
    out = a.weak_measure(0, 1.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a.expect("Z0"), (1 - 2 * out).double(), atol=1e-12)


@pytest.mark.parametrize("cls", BACKENDS)
def test_reset_leaves_zero_and_the_partial_trace(cls):
    n, n_copies = 3, 4000
    s = _random_state(cls, n=n, batch=n_copies, seed=8)
    psi0 = _dense(s)[0].reshape(2, 2, 2)
    s.reset([1], generator=torch.Generator().manual_seed(3))
    assert torch.allclose(s.expect("Z1"), torch.ones(n_copies, dtype=torch.float64), atol=1e-12)
    # the reduced state of qubits (0, 2) is unchanged on average: tr_1 of |ψ><ψ|
    ref = torch.einsum("ajb,cjd->abcd", psi0, psi0.conj()).reshape(4, 4)
    psi = _dense(s).reshape(n_copies, 2, 2, 2)
    traj = torch.einsum("najb,ncjd->nabcd", psi, psi.conj()).reshape(n_copies, 4, 4)
    sd = (traj.real.std(0) + traj.imag.std(0)) / math.sqrt(n_copies)
    assert bool(((traj.mean(0) - ref).abs() < 5 * sd + 1e-12).all())


@pytest.mark.parametrize("cls", BACKENDS)
def test_bad_measurement_input_is_refused_before_the_state_changes(cls):
    s = _random_state(cls, n=3, batch=2, seed=9)
    before = _dense(s).clone()
    gen = torch.Generator().manual_seed(0)
    for call, err in [(lambda: s.measure([0, 5], gen), ValueError),
                      (lambda: s.measure([1, 1], gen), ValueError),
                      (lambda: s.measure([], gen), ValueError),
                      (lambda: s.measure(0, gen, basis="W"), ValueError),
                      (lambda: s.weak_measure(0, 1.5, gen), ValueError),
                      (lambda: s.weak_measure(0, float("nan"), gen), ValueError),
                      (lambda: s.reset([2, 2], gen), ValueError),
                      (lambda: s.apply_kraus(torch.eye(2).expand(2, 2, 2), 0, gen), ValueError)]:
        with pytest.raises(err):
            call()
        assert torch.equal(_dense(s), before)


def test_y_basis_measurement_promotes_a_real_state():
    s = qt.MPS.zeros(2, batch=3, dtype=torch.float64).apply(G.H(), 0)
    s.measure(0, generator=torch.Generator().manual_seed(0), basis="Y")
    assert s.dtype == torch.complex128
    assert torch.allclose(s.expect("Y0").abs(), torch.ones(3, dtype=torch.float64), atol=1e-12)


def test_shot_mean_of_rdm1_bloch_components():
    """The helper for readouts computed from reduced density matrices: the same law as expect."""
    from qlam_tn.state import shot_mean

    n_copies, shots = 4000, 32
    s = _random_state(qt.StateVector, n=3, batch=n_copies, seed=10)
    rho = s.rdm1()  # (B, n, 2, 2)
    bloch = torch.stack([2 * rho[..., 0, 1].real, 2 * rho[..., 1, 0].imag, (rho[..., 0, 0] - rho[..., 1, 1]).real],
                        dim=-1)  # (B, n, 3): <X>, <Y>, <Z>
    est = shot_mean(bloch, shots, torch.Generator().manual_seed(3))
    assert est.shape == bloch.shape
    exact = bloch[0]
    sigma = ((1 - exact ** 2) / shots / n_copies).sqrt()
    assert bool(((est.mean(0) - exact).abs() < 5 * sigma + 1e-12).all())
    # the components are the engine's own Pauli expectations
    assert torch.allclose(exact[1], torch.stack([s.expect(p)[0] for p in ("X1", "Y1", "Z1")]), atol=1e-12)
    with pytest.raises(ValueError, match="shots"):
        shot_mean(bloch, 0)


def _canonical_error(s):
    """The largest deviation from isometry of the sites left and right of the MPS's centre."""
    err = 0.0
    for k, t in enumerate(s.tensors):
        b, l, d, r = t.shape
        if k < s.center:
            m = t.reshape(b, l * d, r)
            err = max(err, float((m.mH @ m - torch.eye(r, dtype=m.dtype)).abs().max()))
        elif k > s.center:
            m = t.reshape(b, l, d * r)
            err = max(err, float((m @ m.mH - torch.eye(l, dtype=m.dtype)).abs().max()))
    return err


def test_truncated_mps_with_different_samples_collapses_to_each_projected_vector():
    # per-sample circuits, bonds cut to 2 (norm² = 1 - discarded weight < 1), centre away from the
    # measured qubits: each sample collapses on its own outcomes and keeps the norm it had
    n, b = 6, 5
    gen = torch.Generator().manual_seed(21)
    s = qt.MPS.zeros(n, batch=b, max_bond=2)
    for _ in range(3):
        for q in range(n):
            a = torch.rand(b, 3, generator=gen, dtype=torch.float64) * 6 - 3
            s.apply(torch.stack([G.U3(*row.tolist()) for row in a]), q)
        for q in range(n - 1):
            s.apply(G.CNOT(), (q, q + 1))
    assert float(s.discarded_weight.min()) > 1e-3
    s.move_center(4)
    psi, norm = _dense(s), s.norm()
    qubits = (3, 0, 5)
    out = s.measure(qubits, generator=torch.Generator().manual_seed(1))
    assert len({tuple(r) for r in out.tolist()}) > 1  # the samples part ways
    ref = psi.reshape((b,) + (2,) * n).clone()
    for k in range(b):
        for q, bit in zip(qubits, out[k].tolist()):
            ref[k].select(q, 1 - bit).zero_()
    ref = ref.reshape(b, -1)
    ref = ref / torch.linalg.vector_norm(ref, dim=-1, keepdim=True) * norm[:, None]
    assert torch.allclose(_dense(s), ref, atol=1e-12)
    assert _canonical_error(s) < 1e-12 and s.bond_dims == [2, 2, 2, 2, 2]
    # a non-unitary jump (amplitude damping) keeps the canonical form and the norm too
    for q in (1, 4):
        s.apply_kraus(qt.noise.amplitude_damping(0.6), q, torch.Generator().manual_seed(q))
    assert _canonical_error(s) < 1e-12 and torch.allclose(s.norm(), norm, atol=1e-12)
