"""Bad input raises a clear error before the state changes."""
import pytest
import torch

import qlam_tn as qt


def _snapshot(psi):
    if isinstance(psi, qt.MPS):
        return [t.clone() for t in psi.tensors], psi.center, psi.discarded_weight.clone()
    return psi.psi.clone()


def _unchanged(psi, snap):
    if isinstance(psi, qt.MPS):
        ts, c, d = snap
        return (len(ts) == len(psi.tensors) and all(torch.equal(a, b) for a, b in zip(ts, psi.tensors))
                and c == psi.center and torch.equal(d, psi.discarded_weight))
    return torch.equal(snap, psi.psi)


def _states():
    mps = qt.MPS.zeros(4, batch=2, max_bond=4)
    mps.apply(qt.gates.H(), 0).apply(qt.gates.CNOT(), (0, 3))
    sv = qt.StateVector.zeros(4, batch=2)
    sv.apply(qt.gates.H(), 0).apply(qt.gates.CNOT(), (0, 3))
    return [mps, sv]


BAD_APPLY = [
    (lambda: (qt.gates.H(), 4), ValueError, "out of range"),
    (lambda: (qt.gates.H(), -1), ValueError, "out of range"),
    (lambda: (qt.gates.CNOT(), (1, 1)), ValueError, "repeated"),
    (lambda: (qt.gates.CNOT(), (0, 1, 2)), ValueError, "1 or 2 qubits"),
    (lambda: (qt.gates.H(), (0, 1)), ValueError, "shape"),
    (lambda: (qt.gates.CNOT(), 0), ValueError, "shape"),
    (lambda: (torch.zeros(3, 3), 0), ValueError, "shape"),
    (lambda: (qt.gates.RY(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)), 0), ValueError, "batch"),
    (lambda: (torch.tensor([[float("nan"), 0], [0, 1]]), 0), ValueError, "NaN"),
    (lambda: (qt.gates.H(), 1.5), TypeError, "int"),
    (lambda: (qt.gates.H(), True), TypeError, "int"),
    (lambda: ("not a gate", 0), TypeError, "tensor"),
]


@pytest.mark.parametrize("case", range(len(BAD_APPLY)))
def test_bad_apply_raises_and_leaves_state(case):
    make, exc, msg = BAD_APPLY[case]
    for psi in _states():
        snap = _snapshot(psi)
        with pytest.raises(exc, match=msg):
            gate, q = make()
            psi.apply(gate, q)
        assert _unchanged(psi, snap)


def test_non_unitary_rejected_with_validate():
    for psi in _states():
        snap = _snapshot(psi)
        with pytest.raises(ValueError, match="not unitary"):
            psi.apply(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), 1, validate=True)
        with pytest.raises(ValueError, match="not unitary"):
            psi.apply(2 * qt.gates.CZ(), (0, 2), validate=True)
        assert _unchanged(psi, snap)
        psi.apply(qt.gates.RX(0.3), 1, validate=True)  # a unitary passes


def test_bad_layers():
    for psi in _states():
        snap = _snapshot(psi)
        with pytest.raises(ValueError, match="layer"):
            psi.apply_layer(torch.zeros(3, 2, 2))
        with pytest.raises(ValueError, match="batch"):
            psi.apply_layer(torch.zeros(5, 4, 2, 2))
        with pytest.raises(ValueError, match="NaN"):
            psi.apply_layer(torch.full((4, 2, 2), float("inf")))
        assert _unchanged(psi, snap)


@pytest.mark.parametrize("label", ["", "Q0", "X", "X9", "X0 X0", "XX", "X-1", "Z0 ,", "x0"])
def test_malformed_pauli_strings(label):
    for psi in _states():
        with pytest.raises(ValueError):
            psi.expect(label)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="n_qubits"):
        qt.MPS.zeros(0)
    with pytest.raises(ValueError, match="n_qubits"):
        qt.StateVector.zeros(0)
    with pytest.raises(TypeError, match="n_qubits"):
        qt.MPS.zeros(2.0)
    with pytest.raises(ValueError, match="max_bond"):
        qt.MPS.zeros(3, max_bond=0)
    with pytest.raises(ValueError, match="cutoff_mode"):
        qt.MPS.zeros(3, cutoff_mode="sum3")
    with pytest.raises(ValueError, match="cutoff"):
        qt.MPS.zeros(3, cutoff=-1.0)
    with pytest.raises(ValueError, match="batch"):
        qt.MPS.zeros(3, batch=0)
    with pytest.raises(TypeError, match="dtype"):
        qt.MPS.zeros(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="power of two"):
        qt.MPS.from_dense(torch.ones(6))
    with pytest.raises(ValueError, match="bond"):
        qt.MPS.zeros(3).schmidt_values(2)
    with pytest.raises(ValueError, match="shots"):
        qt.MPS.zeros(3).sample(0)
    with pytest.raises(ValueError, match="sample="):
        qt.MPS.zeros(3, batch=2).to_quimb()
