"""mps_host's single-sample numpy kernels against the torch path they stand in for."""
import contextlib

import numpy as np
import pytest
import torch

import qlam_tn as qt
import qlam_tn.gates as G
from qlam_tn import mps_host


def _haar(rng, d):
    a = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    q, r = np.linalg.qr(a)
    return torch.tensor(q * (np.diag(r) / abs(np.diag(r))))


def _ops(n, n_gates, seed, real):
    """Random rotations and two-qubit gates on random pairs (any distance and order, so routed by
    SWAPs), with a non-unitary one-qubit gate now and then (applied at the centre: moves it).
    Continuous random angles: no degenerate Schmidt values at a cut, where two correct
    truncations may keep different vectors."""
    rng = np.random.default_rng(seed)
    ops = []
    for _ in range(n_gates):
        u = rng.random()
        if u < 0.5:
            q = tuple(int(x) for x in rng.choice(n, 2, replace=False))
            g = G.CRY(float(rng.uniform(-3, 3))) @ torch.kron(G.RY(float(rng.uniform(-3, 3))), G.RY(float(rng.uniform(-3, 3)))) \
                if real else _haar(rng, 4)
        elif u < 0.9:
            q = int(rng.integers(n))
            g = G.RY(float(rng.uniform(-3, 3))) if real else G.U3(*rng.uniform(-3, 3, 3).tolist())
        else:
            q = int(rng.integers(n))
            g = torch.tensor(np.diag(rng.uniform(0.2, 1.0, 2)))  # a damping-like Kraus factor
        ops.append((g, q))
    return ops


def _run(ops, n, dtype, host, **policy):
    psi = qt.MPS.zeros(n, dtype=dtype, **policy)
    with torch.no_grad(), contextlib.nullcontext() if host else mps_host.disabled():
        for g, q in ops:
            psi.apply(g if g.is_complex() else g.to(dtype), q)
    return psi


POLICIES = [dict(max_bond=None, cutoff=1e-12), dict(max_bond=3, cutoff=1e-12), dict(max_bond=2, cutoff=0.0),
            dict(max_bond=4, cutoff=1e-3, cutoff_mode="sum2"), dict(max_bond=None, cutoff=1e-2, cutoff_mode="rel"),
            dict(max_bond=3, cutoff=1e-2, cutoff_mode="abs"), dict(max_bond=3, cutoff=1e-10, renormalize=True),
            dict(max_bond=3, cutoff=1e-20)]  # a cutoff the Gram matrix cannot resolve: every split an SVD


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("real", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_host_kernels_equal_the_torch_path(policy, real, seed, monkeypatch):
    calls = _count_calls(monkeypatch)
    n = 7
    ops = _ops(n, 60, seed, real)
    dtype = torch.float64 if real else torch.complex128
    got = _run(ops, n, dtype, True, **policy)
    # Both splits run: the Gram one where the isometry's side is the smaller (SVD otherwise).
    assert calls["moved"] > 5 and calls[False] > 5
    assert calls[True] > 20 or policy["cutoff"] == 1e-20
    ref = _run(ops, n, dtype, False, **policy)
    assert got.dtype == ref.dtype == dtype
    assert got.bond_dims == ref.bond_dims and got.center == ref.center
    torch.testing.assert_close(got.to_dense(), ref.to_dense(), atol=1e-10, rtol=0)
    torch.testing.assert_close(got.discarded_weight, ref.discarded_weight, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(got.fidelity_estimate, ref.fidelity_estimate, atol=1e-12, rtol=1e-9)
    if policy["max_bond"] in (2, 3):
        assert float(ref.discarded_weight[0]) > 1e-6  # these runs do truncate
    # The canonical form holds on the host path too: every site left of the centre is an isometry.
    for t in got.tensors[:got.center]:
        m = t[0].reshape(-1, t.shape[3])
        torch.testing.assert_close(m.mH @ m, torch.eye(m.shape[1], dtype=m.dtype), atol=1e-10, rtol=0)


def _count_calls(monkeypatch):
    """Count mps_host's kernel calls; two-site updates by split (``gram`` True / False)."""
    calls = {"moved": 0, True: 0, False: 0}
    real_moved, real_two_site = mps_host.moved, mps_host.two_site

    def moved(*a):
        calls["moved"] += 1
        return real_moved(*a)

    def two_site(*a):
        calls[a[-1]] += 1
        return real_two_site(*a)
    monkeypatch.setattr(mps_host, "moved", moved)
    monkeypatch.setattr(mps_host, "two_site", two_site)
    return calls


def test_host_kernels_are_taken_only_where_they_apply(monkeypatch):
    calls = _count_calls(monkeypatch)
    cz = G.CZ(dtype=torch.complex128)

    def brickwork(psi):
        for q in (0, 2, 1, 3):
            psi.apply(cz.to(psi.dtype), (q, q + 1))
        psi.apply(G.H().to(psi.dtype), 4)
        psi.apply(cz.to(psi.dtype), (4, 0))  # routed
        return psi

    brickwork(qt.MPS.zeros(5, dtype=torch.complex128))
    assert calls[True] > 0 and calls["moved"] > 0
    for make in (lambda: qt.MPS.zeros(5, batch=2, dtype=torch.complex128),  # two samples
                 lambda: qt.MPS.zeros(5, dtype=torch.complex64)):  # single precision
        calls.update({True: 0, False: 0})
        brickwork(make())
        assert calls[True] == calls[False] == 0
    psi = qt.MPS.zeros(5, dtype=torch.complex128)
    psi.policy = qt.TruncationPolicy(split="svd")
    calls.update({True: 0, False: 0})
    brickwork(psi)
    assert calls[True] == 0 and calls[False] > 0  # the SVD split, on the host
    with mps_host.disabled():
        calls.update({True: 0, False: 0, "moved": 0})
        brickwork(qt.MPS.zeros(5, dtype=torch.complex128))
        assert calls == {True: 0, False: 0, "moved": 0}
    assert mps_host.ENABLED


def test_autograd_takes_the_torch_path_and_its_gradient(monkeypatch):
    calls = _count_calls(monkeypatch)
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    psi = qt.MPS.zeros(3, dtype=torch.float64)
    psi.apply(G.RY(theta), 0)
    psi.apply(G.CNOT(dtype=torch.float64), (0, 1))
    psi.apply(G.CNOT(dtype=torch.float64), (1, 2))
    z = psi.expect("Z2")[0]
    z.backward()
    assert calls[True] == calls[False] == 0
    # <Z2> = cos θ on the GHZ-like state; d/dθ = -sin θ.
    assert z.item() == pytest.approx(np.cos(0.7), abs=1e-12)
    assert float(theta.grad) == pytest.approx(-np.sin(0.7), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("shape", [(6, 3), (4, 4), (3, 7)])
def test_lapack_wrappers_against_numpy(dtype, shape):
    rng = np.random.default_rng(3)
    a = rng.normal(size=shape).astype(dtype)
    if dtype is np.complex128:
        a = a + 1j * rng.normal(size=shape)
    k = min(shape)
    q, r = mps_host.qr(a)
    assert q.shape == (shape[0], k) and r.shape == (k, shape[1])
    np.testing.assert_allclose(q @ r, a, atol=1e-13)
    np.testing.assert_allclose(q.conj().T @ q, np.eye(k), atol=1e-13)
    assert np.allclose(np.tril(r, -1), 0)
    u, s, vh = mps_host.svd(a)
    np.testing.assert_allclose(s, np.linalg.svd(a, compute_uv=False), atol=1e-13)
    np.testing.assert_allclose((u * s) @ vh, a, atol=1e-13)
    h = a @ a.conj().T
    v = mps_host.eigh(h)
    w = np.linalg.eigvalsh(h)
    np.testing.assert_allclose(v.conj().T @ h @ v, np.diag(w), atol=1e-12)  # ascending, as numpy


def test_kernels_run_blas_on_one_thread_and_restore_it():
    libs = mps_host._blas_libraries()
    assert libs  # numpy's and scipy's BLAS were found
    before = [lib.get_num_threads() for lib in libs]
    with mps_host._one_blas_thread():
        assert [lib.get_num_threads() for lib in libs] == [1] * len(libs)
    assert [lib.get_num_threads() for lib in libs] == before
