"""Issue 24, defect 6: engine edge cases a careless or hostile user reaches. Each is refused with a
clear error before the state changes (or, for NaN gates on the torch route, raised as the compiled
route raises it: tests/test_routes.py)."""
import math
import numpy as np
import pytest
import torch

import qlam_tn as qt
import qlam_tn.gates as G
from qlam_tn import statevector


def _states():
    for cls in (qt.MPS, qt.StateVector):
        psi = cls.zeros(3, batch=2, dtype=torch.complex128)
        psi.apply(G.H(), 0).apply(G.CNOT(), (0, 2))
        yield psi


def _frozen(psi):
    return psi.to_dense().clone(), psi.discarded_weight.clone()


@pytest.mark.parametrize("scale", [0.0, 1e-200])
def test_a_gate_that_annihilates_the_state_is_refused(scale):
    """A zero (or underflowing) gate would leave norm 0: NaN expectations, yet discarded weight 0
    and fidelity 1. Refused, state unchanged."""
    for psi in _states():
        before = _frozen(psi)
        with pytest.raises(ValueError, match="zero norm"):
            psi.apply(torch.eye(2, dtype=torch.complex128) * scale, 1)
        with pytest.raises(ValueError, match="zero norm"):
            psi.apply(torch.eye(4, dtype=torch.complex128) * scale, (0, 2))
        after = _frozen(psi)
        assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
        assert torch.isfinite(psi.expect("Z0")).all()


def test_a_projector_onto_a_possible_outcome_still_applies():
    for psi in _states():
        psi.apply(torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.complex128), 0)  # |0><0| on qubit 0
        np.testing.assert_allclose(psi.norm().numpy(), [math.sqrt(0.5)] * 2, atol=1e-12)
        np.testing.assert_allclose(psi.expect("Z2").numpy(), [1.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("cls", [qt.MPS, qt.StateVector])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0])
def test_from_dense_refuses_non_finite_or_zero_amplitudes(cls, bad):
    a = torch.zeros(2, 8, dtype=torch.float64)
    a[0, 0] = 1.0  # sample 0 is fine; sample 1 is not
    a[1, 3] = bad
    with pytest.raises(ValueError, match="sample 1"):
        cls.from_dense(a)


@pytest.mark.parametrize("kwargs, match", [
    (dict(cutoff=float("inf")), "cutoff"), (dict(cutoff=float("nan")), "cutoff"),
    (dict(grad_eps=float("inf")), "grad_eps"), (dict(grad_eps=float("nan")), "grad_eps")])
def test_truncation_settings_must_be_finite(kwargs, match):
    with pytest.raises(ValueError, match=match):
        qt.TruncationPolicy(**kwargs)
    with pytest.raises(ValueError, match=match):
        qt.MPS.zeros(3, **kwargs)


@pytest.mark.parametrize("call, match", [
    (lambda psi: psi.renyi(float("nan")), "alpha"), (lambda psi: psi.renyi(float("inf")), "alpha"),
    (lambda psi: psi.renyi(-1.0), "alpha"), (lambda psi: psi.entropy(base=1), "base"),
    (lambda psi: psi.entropy(base=0), "base"), (lambda psi: psi.entropy(base=float("nan")), "base"),
    (lambda psi: psi.renyi(2.0, base=-2), "base")])
def test_entropy_parameters_are_checked(call, match):
    for psi in _states():
        with pytest.raises(ValueError, match=match):
            call(psi)


def test_a_space_inside_a_pauli_term_is_not_dropped():
    """``"Z1 0"`` on 12 qubits once read Z10; digits outside ASCII are not indices either."""
    for cls in (qt.MPS, qt.StateVector):
        psi = cls.zeros(12, dtype=torch.float64)
        for label in ("Z1 0", "Z1\t0", "Z\u0661", "X0 ,"):
            with pytest.raises(ValueError, match="cannot parse Pauli term"):
                psi.expect(label)
    assert qt.parse_pauli("Z1 Z10", 12) == {1: "Z", 10: "Z"}


def test_statevectors_too_large_for_memory_are_refused_before_allocating():
    for n, dtype in ((40, torch.complex128), (30, torch.complex128), (32, torch.float32)):
        with pytest.raises(ValueError, match="MAX_STATE_BYTES"):
            qt.StateVector.zeros(n, dtype=dtype)
    with pytest.raises(ValueError, match="MAX_STATE_BYTES"):
        qt.StateVector.zeros(20, batch=2 ** 14)  # 2^34 amplitudes
    assert statevector.state_bytes(10, 4, torch.complex64) == 4 * 2 ** 10 * 8
    from qlam_tn.models import QLAMConfig
    with pytest.raises(ValueError, match="MAX_STATE_BYTES"):
        QLAMConfig(n_qubits=40, backend="statevector")
    QLAMConfig(n_qubits=40, backend="mps", bond_dim=8)  # the MPS holds it


def test_the_size_guard_is_a_setting_a_user_can_change(monkeypatch):
    monkeypatch.setattr(statevector, "MAX_STATE_BYTES", 1024)
    with pytest.raises(ValueError, match="MAX_STATE_BYTES"):
        qt.StateVector.zeros(7, dtype=torch.complex128)  # 2 KiB
    assert qt.StateVector.zeros(6, dtype=torch.complex128).n_qubits == 6  # 1 KiB
    monkeypatch.setattr(statevector, "MAX_STATE_BYTES", 4096)
    assert qt.StateVector.zeros(8, dtype=torch.complex128).n_qubits == 8


@pytest.mark.parametrize("cls", [qt.MPS, qt.StateVector])
@pytest.mark.parametrize("scale, dtype", [(1e-170, torch.float64), (1e200, torch.float64), (1e-30, torch.float32)])
def test_from_dense_refuses_amplitudes_whose_norm_underflows_or_overflows(cls, scale, dtype):
    a = torch.zeros(2, 4, dtype=dtype)
    a[0, 0] = 1.0
    a[1, :] = scale
    with pytest.raises(ValueError, match="sample 1 underflows or overflows"):
        cls.from_dense(a)
