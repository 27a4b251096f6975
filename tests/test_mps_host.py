"""mps_host's single-sample numpy kernels against the torch path they stand in for."""
import contextlib

import numpy as np
import pytest
import torch

import qlam_tn as qt
import qlam_tn.gates as G
from qlam_tn import mps_host, mps_jit, mps_packed
from qlam_tn.memory import brickwork as brickwork_layer


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
    """Count the kernel calls: mps_host's centre moves and two-site splits by kind (``gram`` True /
    False), and layers (mps_host's numpy pass or the compiled one, ``mps_packed``)."""
    calls = {"moved": 0, "layers": 0, True: 0, False: 0}
    real_moved, real_split, real_layer = mps_host.moved, mps_host.split, mps_host.neighbour_gates
    real_packed_layer = mps_packed.Packed.layer

    def moved(*a):
        calls["moved"] += 1
        return real_moved(*a)

    def split(*a):
        calls[a[-1]] += 1
        return real_split(*a)

    def layer(*a):
        calls["layers"] += 1
        return real_layer(*a)
    monkeypatch.setattr(mps_host, "moved", moved)
    monkeypatch.setattr(mps_host, "split", split)
    def packed_layer(*a):
        calls["layers"] += 1
        return real_packed_layer(*a)
    monkeypatch.setattr(mps_host, "neighbour_gates", layer)
    monkeypatch.setattr(mps_packed.Packed, "layer", packed_layer)
    return calls


def _layers(n, n_layers, seed, real):
    """Brickwork layers ``(parity, gates (P, 4, 4))`` of random two-qubit gates, each followed by a
    non-unitary one-qubit gate on a random qubit (applied at the centre: the next layer starts
    from wherever that left it)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_layers):
        parity = k % 2
        pairs = len(range(parity, n - 1, 2))
        if real:
            gates = torch.stack([G.CRY(float(rng.uniform(-3, 3))) @ torch.kron(G.RY(float(rng.uniform(-3, 3))),
                                                                              G.RY(float(rng.uniform(-3, 3))))
                                 for _ in range(pairs)])
        else:
            gates = torch.stack([_haar(rng, 4) for _ in range(pairs)])
        out.append((parity, gates, int(rng.integers(n)), torch.tensor(np.diag(rng.uniform(0.2, 1.0, 2)))))
    return out[:-1] + [out[-1][:2] + (None, None)]  # the last layer's centre stays where the layer put it


def _one_qubit_layers(n, dtype, seed):
    """A random rotation layer ``(n, 2, 2)`` and a non-unitary diagonal one (a canonicalising sweep)."""
    rng = np.random.default_rng(seed)
    if dtype.is_complex:
        rot = torch.stack([G.U3(*rng.uniform(-3, 3, 3).tolist()) for _ in range(n)])
    else:
        rot = torch.stack([G.RY(float(a)) for a in rng.uniform(-3, 3, n)])
    return rot.to(dtype), torch.tensor(np.stack([np.diag(rng.uniform(0.2, 1.0, 2)) for _ in range(n)])).to(dtype)


def _run_layers(layers, n, dtype, host, **policy):
    rot, damp = _one_qubit_layers(n, dtype, 7)
    psi = qt.MPS.zeros(n, dtype=dtype, **policy)
    with torch.no_grad(), contextlib.nullcontext() if host else mps_host.disabled():
        psi.apply_layer(rot)
        for k, (parity, gates, q, kraus) in enumerate(layers):
            brickwork_layer(psi, gates.to(dtype), parity)
            if kraus is not None:
                psi.apply(kraus.to(dtype), q)
            if k == 5:
                psi.apply_layer(damp)
    return psi


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("real", [False, True])
@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
def test_layer_kernel_equals_the_torch_path_and_the_gate_kernel(policy, real, compiled, monkeypatch):
    """A layer's pass, compiled (mps_jit) or numpy, against the torch path and against the same
    gates applied one at a time (the numpy two-site kernel)."""
    n = 7
    layers = _layers(n, 16, 5, real)
    dtype = torch.float64 if real else torch.complex128
    calls = _count_calls(monkeypatch)
    qrs = []
    real_qr = mps_host.qr
    monkeypatch.setattr(mps_host, "qr", lambda a: qrs.append(1) or real_qr(a))
    record = []  # the compiled pass's own log of its decompositions
    monkeypatch.setattr(mps_jit, "RECORD", record)
    assert mps_jit.available()  # numba runs here (a quimb dependency): the compiled pass is tested
    with contextlib.nullcontext() if compiled else mps_jit.disabled():
        got = _run_layers(layers, n, dtype, True, **policy)
    n_gates = sum(len(g) for _, g, _, _ in layers)
    splits = [row for row in record if row[0] == 0]
    assert calls["layers"] == len(layers)
    if compiled:  # every split in the compiled pass, both kinds where the policy allows the Gram one
        assert calls[True] + calls[False] == 0 and len(splits) == n_gates
        assert sum(row[4] for row in splits) > 10 or policy["cutoff"] == 1e-20
        assert sum(row[4] == 0 for row in splits) > 0
    else:
        assert record == [] and calls[True] + calls[False] == n_gates
    host_qrs = len(qrs)
    layer_qrs = host_qrs + len(record) - len(splits)  # the numpy QRs and the compiled pass's
    ref = _run_layers(layers, n, dtype, False, **policy)
    assert len(qrs) == host_qrs  # the torch path's moves are torch's
    gate_by_gate = qt.MPS.zeros(n, dtype=dtype, **policy)  # the same gates through MPS.apply one at a time
    rot, damp = _one_qubit_layers(n, dtype, 7)
    with torch.no_grad():
        for q in range(n):
            gate_by_gate.apply(rot[q], q)
        for k, (parity, gates, q, kraus) in enumerate(layers):
            pairs = list(enumerate(range(parity, n - 1, 2)))
            for j, first in pairs[::-1] if parity else pairs:  # the order brickwork gives an MPS
                gate_by_gate.apply(gates[j].to(dtype), (first, first + 1))
            if kraus is not None:
                gate_by_gate.apply(kraus.to(dtype), q)
            if k == 5:
                gate_by_gate.apply_layer(damp)
    # the same centre moves as MPS.apply gate by gate (which also runs the host kernels)
    assert len(qrs) - host_qrs == layer_qrs
    for other in (ref, gate_by_gate):
        assert got.bond_dims == other.bond_dims and got.center == other.center
        torch.testing.assert_close(got.to_dense(), other.to_dense(), atol=1e-10, rtol=0)
        torch.testing.assert_close(got.discarded_weight, other.discarded_weight, atol=1e-12, rtol=1e-9)
        torch.testing.assert_close(got.fidelity_estimate, other.fidelity_estimate, atol=1e-12, rtol=1e-9)
    if policy["max_bond"] in (2, 3):
        assert float(ref.discarded_weight[0]) > 1e-6
    for t in got.tensors[:got.center]:
        m = t[0].reshape(-1, t.shape[3])
        torch.testing.assert_close(m.mH @ m, torch.eye(m.shape[1], dtype=m.dtype), atol=1e-10, rtol=0)


def test_a_failing_layer_leaves_the_state_as_it_was(monkeypatch):
    monkeypatch.setattr(mps_jit, "ENABLED", False)  # the numpy pass (the compiled one: below)
    psi = qt.MPS.zeros(6, dtype=torch.complex128, max_bond=4)
    psi.apply_layer(torch.stack([G.H(dtype=torch.complex128)] * 6))
    rng = np.random.default_rng(0)
    brickwork_layer(psi, torch.stack([_haar(rng, 4) for _ in range(3)]), 0)
    before = (list(psi.tensors), psi.center, psi.discarded_weight.clone(), psi.fidelity_estimate.clone())
    real_split, seen = mps_host.split, []

    def failing(*a):
        seen.append(1)
        if len(seen) == 2:
            raise np.linalg.LinAlgError("LAPACK gesdd failed (info=1)")
        return real_split(*a)
    monkeypatch.setattr(mps_host, "split", failing)
    with pytest.raises(np.linalg.LinAlgError):
        brickwork_layer(psi, torch.stack([_haar(rng, 4) for _ in range(2)]), 1)
    assert len(seen) == 2
    assert all(a is b for a, b in zip(psi.tensors, before[0])) and psi.center == before[1]
    assert torch.equal(psi.discarded_weight, before[2]) and torch.equal(psi.fidelity_estimate, before[3])


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
        brickwork_layer(qt.MPS.zeros(5, dtype=torch.complex128), torch.stack([cz] * 2), 0)
        assert calls == {True: 0, False: 0, "moved": 0, "layers": 0}
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
    with mps_host.one_blas_thread():
        assert [lib.get_num_threads() for lib in libs] == [1] * len(libs)
    assert [lib.get_num_threads() for lib in libs] == before


@pytest.mark.parametrize("real", [False, True])
def test_each_route_runs_a_token_program_as_the_torch_reference(real):
    """One program (a QLAM token: rotations, both brickwork layers, rotations) through each route's
    ``circuit``, called directly with the same arguments: the same state, centre and truncation."""
    from qlam_tn import mps_update, routes
    n, dtype = 7, torch.float64 if real else torch.complex128
    rng = np.random.default_rng(11)
    policy = qt.TruncationPolicy(max_bond=3, cutoff=1e-10)

    def two():
        if real:
            return G.CRY(float(rng.uniform(-3, 3))) @ torch.kron(G.RY(float(rng.uniform(-3, 3))), G.RY(float(rng.uniform(-3, 3))))
        return _haar(rng, 4)

    rot = G.RY(torch.tensor(rng.uniform(-3, 3, n))).to(dtype)
    ops = [("1q", rot), ("2q", torch.stack([two() for _ in range(3)]).to(dtype), [0, 2, 4]),
           ("2q", torch.stack([two() for _ in range(3)]).to(dtype), [5, 3, 1]), ("1q", rot)]
    start = qt.MPS.zeros(n, dtype=dtype, max_bond=3)
    with torch.no_grad():
        start.apply_program(ops)  # an entangled starting state
        ref = mps_update.circuit(start.tensors, start.center, ops, policy)
        for route in ("host", "compiled"):
            assert routes.choose("circuit", start.tensors, [op[1] for op in ops]) in ("compiled", "host")
            got = routes.ROUTES[route].circuit(start.tensors, start.center, ops, policy)
            assert got[1] == ref[1]
            assert [t.shape for t in got[0]] == [t.shape for t in ref[0]]
            dense = lambda ts: qt.MPS(ts, got[1], policy).to_dense()
            torch.testing.assert_close(dense(got[0]), dense(ref[0]), atol=1e-10, rtol=0)
            torch.testing.assert_close(torch.as_tensor(got[2].discarded, dtype=torch.float64).reshape(1),
                                       ref[2].discarded, atol=1e-13, rtol=1e-9)
            assert float(ref[2].discarded) > 1e-6  # the program truncates
