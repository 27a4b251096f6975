"""The QLAM cell functions: dense entangler, Bloch vectors, neighbour ZZ, against plain references."""
import pytest
import torch

import qlam_tn as qt
from qlam_tn.memory import bloch_vectors, brickwork, dense_unitary, neighbour_zz, rotation_layer
from qlam_tn.statevector import StateVector


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
@pytest.mark.parametrize("real", [True, False])
def test_dense_unitary_equals_gate_by_gate(n, real):
    torch.manual_seed(n)
    dt = torch.float64 if real else torch.complex128
    layers, parities, rots = [], [], []
    for layer in range(3):
        pairs = len(range(layer % 2, n - 1, 2))
        q, _ = torch.linalg.qr(torch.randn(pairs, 4, 4, dtype=dt))
        layers.append(q)
        parities.append(layer % 2)
        rots.append(rotation_layer(torch.rand(1, n, 1, dtype=torch.float64), "y")[0])
    u = dense_unitary(n, layers, parities, rots)
    dim = 2 ** n
    sv = StateVector(torch.eye(dim, dtype=u.dtype).reshape((dim,) + (2,) * n))
    for g, p, r in zip(layers, parities, rots):
        if g.shape[0]:
            brickwork(sv, g.to(u.dtype), p)
        sv._apply_layer(r.to(u.dtype))
    torch.testing.assert_close(u, sv.psi.reshape(dim, dim).T, atol=1e-13, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_bloch_and_zz_on_both_backends_match_expect(dtype):
    from circuits import random_circuit, run

    n = 5
    ops = random_circuit(n, 30, seed=4, batch=2, real=not dtype.is_complex)
    sv = run(qt.StateVector.zeros(n, batch=2, dtype=dtype), ops)
    mps = run(qt.MPS.zeros(n, batch=2, dtype=dtype, cutoff=0.0), ops)
    for state in (sv, mps):
        b = bloch_vectors(state)
        for q in range(n):
            for k, p in enumerate("XYZ"):
                torch.testing.assert_close(b[:, q, k], sv.expect(f"{p}{q}"), atol=1e-10, rtol=0)
        zz = neighbour_zz(state)
        for q in range(n - 1):
            torch.testing.assert_close(zz[:, q], sv.expect(f"Z{q} Z{q + 1}"), atol=1e-10, rtol=0)


def test_brickwork_promotes_a_real_state_for_complex_gates():
    ref = qt.StateVector.zeros(2, dtype=torch.float64).apply(qt.gates.H(), 0).apply(qt.gates.ISWAP(), (0, 1))
    for st in (qt.StateVector.zeros(2, dtype=torch.float64), qt.MPS.zeros(2, dtype=torch.float64)):
        st.apply(qt.gates.H(), 0)
        brickwork(st, qt.gates.ISWAP()[None], 0)
        assert st.dtype == torch.complex128
        torch.testing.assert_close(st.to_dense(), ref.to_dense(), atol=1e-12, rtol=0)
