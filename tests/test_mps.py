"""MPS against the dense StateVector (exact bond), quimb (truncated), and hand calculations."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qlam_tn as qt
from circuits import random_circuit, run

TOL = 1e-10


def _pair(n, ops, batch, dtype=torch.complex128, **kw):
    mps = run(qt.MPS.zeros(n, batch=batch, dtype=dtype, **kw), ops)
    sv = run(qt.StateVector.zeros(n, batch=batch, dtype=dtype), ops)
    return mps, sv


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 8), n_gates=st.integers(1, 40), seed=st.integers(0, 2 ** 31 - 1),
       batch=st.integers(1, 3), real=st.booleans(), per_sample=st.booleans())
def test_exact_mps_equals_statevector(n, n_gates, seed, batch, real, per_sample):
    ops = random_circuit(n, n_gates, seed, batch=batch, real=real, per_sample=per_sample)
    dtype = torch.float64 if real else torch.complex128
    mps, sv = _pair(n, ops, batch, dtype=dtype, max_bond=None, cutoff=0.0)
    if real:
        assert mps.dtype == torch.float64 and sv.dtype == torch.float64
    # Amplitudes are gauge invariant: compare directly.
    torch.testing.assert_close(mps.to_dense(), sv.to_dense(), atol=TOL, rtol=0)
    assert torch.all(mps.discarded_weight == 0)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        k = rng.integers(1, min(n, 4) + 1)
        qs = rng.choice(n, size=k, replace=False)
        label = " ".join(f"{rng.choice(list('XYZ'))}{q}" for q in qs)
        torch.testing.assert_close(mps.expect(label), sv.expect(label), atol=TOL, rtol=0)
    torch.testing.assert_close(mps.rdm1(), sv.rdm1().to(mps.rdm1().dtype), atol=TOL, rtol=0)
    torch.testing.assert_close(mps.entropy(), sv.entropy(), atol=TOL, rtol=0)
    i, j = (int(x) for x in rng.choice(n, size=2, replace=False))
    torch.testing.assert_close(mps.rdm2(i, j), sv.rdm2(i, j), atol=TOL, rtol=0)
    torch.testing.assert_close(mps.norm(), torch.ones(batch, dtype=torch.float64), atol=TOL, rtol=0)


def test_real_state_promotes_on_complex_gate():
    psi = qt.MPS.zeros(3, dtype=torch.float64)
    psi.apply(qt.gates.H(), 0).apply(qt.gates.CNOT(), (0, 2))
    assert psi.dtype == torch.float64
    psi.apply(qt.gates.S(), 2)
    assert psi.dtype == torch.complex128
    want = torch.zeros(8, dtype=torch.complex128)
    want[0], want[5] = 1 / math.sqrt(2), 1j / math.sqrt(2)
    torch.testing.assert_close(psi.to_dense()[0], want, atol=1e-14, rtol=0)


def test_hand_calculations_bell_and_ghz():
    psi = qt.MPS.zeros(4)
    psi.apply(qt.gates.H(), 0)
    for q in range(3):
        psi.apply(qt.gates.CNOT(), (q, q + 1))
    # GHZ: one ebit across every bond, <Z0 Z3> = 1, <X0 X1 X2 X3> = 1, <Z0> = 0.
    torch.testing.assert_close(psi.entropy(), torch.ones(1, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert abs(psi.expect("Z0 Z3").item() - 1) < 1e-12
    assert abs(psi.expect("XXXX").item() - 1) < 1e-12
    assert abs(psi.expect("Z0").item()) < 1e-12
    assert abs(psi.expect("Y0 Y1").item()) < 1e-12  # YY|0000> = -|1100>, outside GHZ
    assert abs(psi.expect("X0 Y1 Y2 X3").item() + 1) < 1e-12  # XYYX|0000> = i·i|1111>
    assert psi.bond_dims == [2, 2, 2]
    torch.testing.assert_close(psi.renyi(2), torch.ones(1, 3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_long_range_gate_restores_order_and_matches_dense():
    n = 7
    ops = random_circuit(n, 12, 3, batch=2)
    mps, sv = _pair(n, ops, 2, max_bond=None, cutoff=0.0)
    for pair in ((0, 6), (6, 1), (2, 5)):
        g = qt.gates.CRX(torch.tensor([0.3, -1.1], dtype=torch.float64))
        mps.apply(g, pair)
        sv.apply(g, pair)
    torch.testing.assert_close(mps.to_dense(), sv.to_dense(), atol=TOL, rtol=0)


def test_from_dense_round_trip_and_truncation_weight():
    torch.manual_seed(0)
    n = 6
    v = torch.randn(2, 2 ** n, dtype=torch.complex128)
    v = v / v.norm(dim=-1, keepdim=True)
    exact = qt.MPS.from_dense(v, cutoff=0.0)
    torch.testing.assert_close(exact.to_dense(), v, atol=1e-12, rtol=0)
    cut = qt.MPS.from_dense(v, max_bond=2, cutoff=0.0)
    # Without renormalisation, norm² = 1 - discarded weight exactly.
    torch.testing.assert_close(cut.norm() ** 2, 1 - cut.discarded_weight, atol=1e-12, rtol=0)
    # The first cut (at the left end) is the optimal rank-2 approximation across bond 2's left part.
    assert torch.all(cut.discarded_weight > 0)


def _quimb_circuit(n, layers, seed):
    rng = np.random.default_rng(seed)
    ops = []
    for layer in range(layers):
        for q in range(n):
            ops.append(("RY", float(rng.uniform(0, 2 * math.pi)), q))
            ops.append(("RZ", float(rng.uniform(0, 2 * math.pi)), q))
        for q in range(layer % 2, n - 1, 2):
            ops.append(("CX", None, (q, q + 1)))
            ops.append(("RZZ", float(rng.uniform(0, 2 * math.pi)), (q, q + 1)))
    return ops


@pytest.mark.parametrize("chi,mode,cutoff", [(4, "rsum2", 1e-12), (6, "rel", 1e-3), (8, "abs", 1e-2), (16, "sum2", 1e-4)])
def test_truncated_mps_agrees_with_quimb(chi, mode, cutoff):
    quimb_tensor = pytest.importorskip("quimb.tensor")
    n, layers = 10, 6
    ops = _quimb_circuit(n, layers, seed=chi)
    circ = quimb_tensor.CircuitMPS(n, gate_opts=dict(max_bond=chi, cutoff=cutoff, cutoff_mode=mode))
    psi = qt.MPS.zeros(n, max_bond=chi, cutoff=cutoff, cutoff_mode=mode)
    for name, theta, q in ops:
        qs = q if isinstance(q, tuple) else (q,)
        if theta is None:
            circ.apply_gate(name, *qs)
            psi.apply(qt.gates.CNOT(), q)
        else:
            circ.apply_gate(name, theta, *qs)
            psi.apply(getattr(qt.gates, name)(theta), q)
    qpsi = circ.psi
    qnorm2 = float(abs(qpsi.H @ qpsi))
    assert psi.discarded_weight.item() > 1e-10, "the test circuit must truncate"
    # quimb does not renormalise: its norm² is 1 - discarded weight.
    assert abs((1 - qnorm2) - psi.discarded_weight.item()) < 1e-8
    assert abs(psi.norm().item() ** 2 - qnorm2) < 1e-8
    ours = psi.to_dense()[0].numpy()
    theirs = np.asarray(qpsi.to_dense()).ravel()
    zs = np.array([1, -1])
    for q in range(n):
        diag = np.kron(np.kron(np.ones(2 ** q), zs), np.ones(2 ** (n - q - 1)))
        e_ours = (np.abs(ours) ** 2 * diag).sum() / (np.abs(ours) ** 2).sum()
        e_theirs = (np.abs(theirs) ** 2 * diag).sum() / (np.abs(theirs) ** 2).sum()
        assert abs(e_ours - e_theirs) < 1e-8
        assert abs(psi.expect(f"Z{q}").item() - e_theirs) < 1e-8
    # The whole truncated state agrees up to a global phase.
    overlap = abs(np.vdot(theirs, ours)) / (np.linalg.norm(ours) * np.linalg.norm(theirs))
    assert abs(overlap - 1) < 1e-8


def test_quimb_round_trip():
    qtn = pytest.importorskip("quimb.tensor")
    q = qtn.MPS_rand_state(7, bond_dim=5, dtype="complex128", seed=3)
    psi = qt.MPS.from_quimb(q)
    want = np.asarray(q.to_dense()).ravel()
    np.testing.assert_allclose(psi.to_dense()[0].numpy(), want, atol=1e-12)
    back = psi.to_quimb()
    np.testing.assert_allclose(np.asarray(back.to_dense()).ravel(), want, atol=1e-12)
    # the canonical bookkeeping is true after import: local values equal the dense ones
    sv = qt.StateVector.from_dense(torch.as_tensor(want))
    torch.testing.assert_close(psi.rdm1(), sv.rdm1(), atol=1e-12, rtol=0)


def test_sampling_matches_born_rule():
    n = 5
    ops = random_circuit(n, 25, seed=11, batch=2)
    mps, _ = _pair(n, ops, 2, max_bond=None)
    shots = 20000
    bits = mps.sample(shots, generator=torch.Generator().manual_seed(5))
    assert bits.shape == (2, shots, n)
    probs = (mps.to_dense().abs() ** 2).numpy()
    weights = 2 ** np.arange(n - 1, -1, -1)
    for b in range(2):
        counts = np.bincount(bits[b].numpy() @ weights, minlength=2 ** n)
        expected = shots * probs[b]
        keep = expected > 5
        chi2 = (((counts - expected) ** 2)[keep] / expected[keep]).sum()
        dof = keep.sum() - 1
        # A 5-sigma bound for chi-square: mean dof, variance 2 dof.
        assert chi2 < dof + 5 * math.sqrt(2 * dof)
        assert counts[expected < 1e-12].sum() == 0


def test_per_sample_truncation_is_independent():
    """A batch element's result does not depend on what it is batched with."""
    n = 8
    ops_a = random_circuit(n, 40, seed=1, batch=1, per_sample=False)
    th = torch.tensor([0.0, 1.3], dtype=torch.float64)  # element 0: product-like, element 1: entangling
    batch = qt.MPS.zeros(n, batch=2, max_bond=3)
    single = qt.MPS.zeros(n, batch=1, max_bond=3)
    for _, g, q in ops_a:
        if isinstance(q, tuple):
            gb = qt.gates.CRX(th)
            batch.apply(gb, q)
            single.apply(qt.gates.CRX(1.3), q)
        else:
            batch.apply(g, q)
            single.apply(g, q)
    torch.testing.assert_close(batch.to_dense()[1], single.to_dense()[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(batch.discarded_weight[1], single.discarded_weight[0], atol=1e-12, rtol=0)


def test_renormalised_norm_drift_over_10000_layers():
    n, chi = 6, 4
    psi = qt.MPS.zeros(n, max_bond=chi, renormalize=True)
    g = torch.Generator().manual_seed(0)
    cz = qt.gates.CZ()
    for layer in range(10000):
        ang = torch.rand(n, generator=g, dtype=torch.float64) * 2
        psi.apply_layer(qt.gates.RY(ang))
        q = layer % (n - 1)
        psi.apply(cz, (q, q + 1))
    # The full contraction, not only the centre tensor: it also sees drift of the isometries.
    assert abs(psi.to_dense().norm().item() - 1) < 1e-8
    assert abs(psi.norm().item() - 1) < 1e-8
    assert psi.discarded_weight.item() > 0
    assert 0 < psi.fidelity_estimate.item() < 1


def test_cutoff_modes_keep_the_documented_ranks():
    s = torch.tensor([[1.0, 0.1, 0.01, 1e-3]], dtype=torch.float64)
    P = qt.TruncationPolicy
    assert P(cutoff=0.05, cutoff_mode="abs").ranks(s).item() == 2
    assert P(cutoff=0.005, cutoff_mode="rel").ranks(s).item() == 3
    # sum2: drop the tail while Σ s² <= cutoff: 1e-6 + 1e-4 = 1.01e-4 <= 2e-4; adding 1e-2 is not.
    assert P(cutoff=2e-4, cutoff_mode="sum2").ranks(s).item() == 2
    total = float((s ** 2).sum())
    assert P(cutoff=2e-4 / total, cutoff_mode="rsum2").ranks(s).item() == 2
    assert P(cutoff=0.0, max_bond=3).ranks(s).item() == 3
    assert P(cutoff=10.0, cutoff_mode="abs").ranks(s).item() == 1  # never below one


def test_entropy_of_partially_entangled_pair_by_hand():
    theta = 0.7
    psi = qt.MPS.zeros(2)
    psi.apply(qt.gates.RY(theta), 0).apply(qt.gates.CNOT(), (0, 1))
    p = np.array([math.cos(theta / 2) ** 2, math.sin(theta / 2) ** 2])
    assert abs(psi.entropy().item() - (-(p * np.log2(p)).sum())) < 1e-12
    assert abs(psi.renyi(2).item() - (-np.log2((p ** 2).sum()))) < 1e-12
    torch.testing.assert_close(psi.schmidt_values(0)[0], torch.tensor(np.sqrt(p), dtype=torch.float64), atol=1e-12, rtol=0)


def test_non_unitary_single_qubit_gates_keep_canonical_form():
    proj = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    for apply in ("gate", "layer"):
        mps, sv = qt.MPS.zeros(3, batch=2), qt.StateVector.zeros(3, batch=2)
        for state in (mps, sv):
            state.apply(qt.gates.H(), 0).apply(qt.gates.CNOT(), (0, 2)).apply(qt.gates.RY(0.4), 1)
            if apply == "gate":
                state.apply(proj, 0)
            else:
                state.apply_layer(torch.stack([proj, qt.gates.H(), 2 * qt.gates.X()]))
        torch.testing.assert_close(mps.to_dense(), sv.to_dense(), atol=1e-12, rtol=0)
        torch.testing.assert_close(mps.norm(), sv.norm(), atol=1e-12, rtol=0)
        torch.testing.assert_close(mps.rdm1(), sv.rdm1(), atol=1e-12, rtol=0)
        for label in ("Z2", "X1 Z2", "Z0"):
            torch.testing.assert_close(mps.expect(label), sv.expect(label), atol=1e-12, rtol=0)


def test_unnormalised_product_state():
    v = torch.tensor([[3.0, 4.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    p = qt.MPS.product_state(v)
    dense = torch.kron(torch.kron(v[0], v[1]), v[2])
    torch.testing.assert_close(p.to_dense()[0], dense, atol=1e-12, rtol=0)
    torch.testing.assert_close(p.norm()[0], dense.norm(), atol=1e-12, rtol=0)
    assert abs(p.expect("X1").item() - 1.0) < 1e-12 and abs(p.expect("Z2").item() + 1.0) < 1e-12


def test_float32_discarded_weight_is_not_lost_to_cancellation():
    s = torch.tensor([0.8, 0.5, 0.3, 0.1, 1e-4, 3e-5], dtype=torch.float64)
    s = s / s.norm()
    q1, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    a = (q1 * s) @ q2.T
    want = float((s[4:] ** 2).sum())
    for dtype in (torch.float32, torch.float64):
        *_, disc, _ = qt.truncated_svd(a.to(dtype)[None], qt.TruncationPolicy(max_bond=4, cutoff=0.0))
        assert abs(disc.item() - want) < 1e-3 * want


def test_numpy_integers_are_accepted():
    np_int = np.int64
    psi = qt.MPS.zeros(np_int(3))
    psi.apply(qt.gates.H(), np_int(0)).apply(qt.gates.CNOT(), (np_int(0), np_int(2)))
    assert abs(psi.expect("Z0 Z2").item() - 1) < 1e-12
    assert psi.schmidt_values(np_int(1)).shape == (1, 2)
