"""mps_jit's compiled layer against mps_host's numpy pass and the torch path (the layer-by-layer
comparison over every truncation policy is in test_mps_host.py)."""
import contextlib
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import torch

import qlam_tn as qt
import qlam_tn.gates as G
from qlam_tn import mps_host, mps_jit
from qlam_tn.memory import brickwork


def _haar(rng, d):
    a = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    q, r = np.linalg.qr(a)
    return torch.tensor(q * (np.diag(r) / abs(np.diag(r))))


def _entangled(n, seed, dtype=torch.complex128, **policy):
    """A random MPS with bonds > 1 everywhere: a few Haar brickwork layers."""
    rng = np.random.default_rng(seed)
    psi = qt.MPS.zeros(n, dtype=dtype, **policy)
    with mps_host.disabled():
        for k in range(4):
            pairs = len(range(k % 2, n - 1, 2))
            gates = torch.stack([_haar(rng, 4) for _ in range(pairs)])
            brickwork(psi, gates if dtype.is_complex else gates.real.to(dtype), k % 2)
    return psi


def test_the_compiled_kernels_run_here():
    """numba is a dependency (and quimb's): the tests below test the compiled pass, not a fallback."""
    assert mps_jit.available()


def _layer_three_ways(psi, gates, firsts):
    """The layer through the compiled pass, the numpy pass and the torch path, on copies of ``psi``."""
    out = []
    for mode in ("numba", "numpy", "torch"):
        p = psi.copy()
        with (mps_jit.disabled() if mode == "numpy" else mps_host.disabled() if mode == "torch"
              else contextlib.nullcontext()):
            p.apply_neighbour_gates(gates, firsts)
        out.append(p)
    return out


@pytest.mark.parametrize("center", [0, 4, 8])
@pytest.mark.parametrize("firsts", [[5, 3], [2], [6, 0, 4]])
def test_a_partial_layer_anywhere_equals_the_numpy_pass_and_the_torch_path(center, firsts):
    """Gates on a few pairs, in any order, with the centre left of, inside or right of them."""
    psi = _entangled(9, seed=center + 10 * len(firsts), max_bond=3)
    psi.move_center(center)
    rng = np.random.default_rng(1)
    gates = torch.stack([_haar(rng, 4) for _ in firsts])
    record = []
    mps_jit.RECORD = record
    try:
        got, numpy_pass, ref = _layer_three_ways(psi, gates, firsts)
    finally:
        mps_jit.RECORD = None
    assert sum(row[0] == 0 for row in record) == len(firsts)  # the compiled pass ran every split
    lo, hi = min(center, min(firsts)), max(center, max(firsts) + 1)
    for k in list(range(lo)) + list(range(hi + 1, 9)):
        assert torch.equal(got.tensors[k], psi.tensors[k])  # sites no step reaches come back as they were
    assert float(ref.discarded_weight[0]) > 1e-6  # max_bond=3 truncates
    for other in (numpy_pass, ref):
        assert got.bond_dims == other.bond_dims and got.center == other.center
        torch.testing.assert_close(got.to_dense(), other.to_dense(), atol=1e-10, rtol=0)
        torch.testing.assert_close(got.discarded_weight, other.discarded_weight, atol=1e-12, rtol=1e-9)
        torch.testing.assert_close(got.fidelity_estimate, other.fidelity_estimate, atol=1e-12, rtol=1e-9)


def test_the_record_lists_the_numpy_passs_decompositions(monkeypatch):
    """``RECORD`` (what ``qlam bench anchors`` times standalone) holds the shapes of the splits and
    QRs the numpy pass performs for the same layer, in order."""
    psi = _entangled(8, seed=3, max_bond=4)
    psi.move_center(7)
    gates = torch.stack([_haar(np.random.default_rng(2), 4)] * 3)
    firsts = [4, 2, 0]
    seen = []
    real_split, real_qr = mps_host.split, mps_host.qr

    def split(x, y, gate, policy, absorb, gram):
        seen.append((0, 2 * x.shape[0], 2 * y.shape[2], int(absorb == "right"), int(gram)))
        return real_split(x, y, gate, policy, absorb, gram)

    def qr(a):
        seen.append((1, *a.shape, 0, 0))
        return real_qr(a)
    monkeypatch.setattr(mps_host, "split", split)
    monkeypatch.setattr(mps_host, "qr", qr)
    record = []
    monkeypatch.setattr(mps_jit, "RECORD", record)
    _layer_three_ways(psi, gates, firsts)
    assert len(seen) > len(firsts) and record == seen


def test_a_failing_compiled_layer_leaves_the_state_as_it_was():
    """A NaN met by the second gate's split (numba's LAPACK wrapper refuses it before LAPACK runs):
    the layer raises, and the state keeps its tensors, centre and weights."""
    assert mps_jit.available()
    psi = _entangled(6, seed=0, max_bond=4)
    before = (list(psi.tensors), psi.center, psi.discarded_weight.clone(), psi.fidelity_estimate.clone())
    bad = torch.stack([_haar(np.random.default_rng(0), 4)] * 2)
    bad[1, 0, 0] = float("nan")  # the second gate's split meets a NaN
    with pytest.raises(np.linalg.LinAlgError):
        psi.apply_neighbour_gates(bad, [1, 3])
    assert all(a is b for a, b in zip(psi.tensors, before[0])) and psi.center == before[1]
    assert torch.equal(psi.discarded_weight, before[2]) and torch.equal(psi.fidelity_estimate, before[3])
    assert all(torch.isfinite(t).all() for t in psi.tensors)


def test_a_compile_failure_warns_once_and_falls_back_to_the_numpy_pass(monkeypatch):
    def broken(*a):
        raise numba.core.errors.TypingError("no implementation for this machine")
    monkeypatch.setattr(mps_jit, "_layer", broken)
    monkeypatch.setattr(mps_jit, "_BROKEN", None)
    psi = _entangled(6, seed=1, max_bond=4)
    gates = torch.stack([_haar(np.random.default_rng(4), 4)] * 3)
    p = psi.copy()
    with pytest.warns(RuntimeWarning, match="could not compile"):
        p.apply_neighbour_gates(gates, [0, 2, 4])
    assert not mps_jit.available() and "TypingError" in mps_jit._BROKEN
    q = psi.copy()
    with mps_host.disabled():
        q.apply_neighbour_gates(gates, [0, 2, 4])
    torch.testing.assert_close(p.to_dense(), q.to_dense(), atol=1e-10, rtol=0)


@pytest.mark.parametrize("value, expected", [("0", "False"), ("1", "True")])
def test_the_environment_switch(value, expected):
    env = dict(os.environ, QLAM_TN_JIT=value)
    out = subprocess.run([sys.executable, "-c", "from qlam_tn import mps_jit; print(mps_jit.available())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_a_real_state_stays_real_and_matches():
    psi = _entangled(7, seed=5, dtype=torch.float64, max_bond=3)
    gates = torch.stack([G.CRY(0.3 * k + 0.1) @ torch.kron(G.RY(0.7), G.RY(-0.2 * k)) for k in range(3)])
    got, numpy_pass, ref = _layer_three_ways(psi, gates, [1, 3, 5])
    assert got.dtype == torch.float64 and all(t.dtype == torch.float64 for t in got.tensors)
    torch.testing.assert_close(got.to_dense(), ref.to_dense(), atol=1e-10, rtol=0)
    torch.testing.assert_close(got.discarded_weight, numpy_pass.discarded_weight, atol=1e-12, rtol=1e-9)


def test_gates_the_kernels_cannot_take_are_refused():
    psi = _entangled(6, seed=5, max_bond=4)
    flat, shapes = mps_jit.flatten([t.resolve_conj().numpy()[0] for t in psi.tensors])
    gates = np.stack([np.eye(4, dtype=complex)] * 2)
    with pytest.raises(ValueError, match="3 gates to apply, 2 given"):
        mps_jit.layer(flat, shapes, psi.center, gates, [0, 2, 4], psi.policy)
    with pytest.raises(TypeError, match="promote the state first"):
        mps_jit.layer(flat.real.copy(), shapes, psi.center, gates, [0, 2], psi.policy)
    with pytest.raises(TypeError, match="promote the state first"):
        mps_jit.physical(flat.real.copy(), shapes, np.stack([np.eye(2, dtype=complex)] * 6))
