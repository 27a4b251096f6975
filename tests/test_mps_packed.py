"""mps_packed, the compiled route: batches run sample by sample on threads, against the torch
route and against each sample run alone; what a caller edits between calls is what the next
call packs."""
import contextlib

import numpy as np
import pytest
import torch

import qlam_tn as qt
import qlam_tn.gates as G
from qlam_tn import mps_host, mps_jit, mps_packed
from qlam_tn.memory import brickwork, token_layers


def _haar(rng, d):
    a = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    q, r = np.linalg.qr(a)
    return torch.tensor(q * (np.diag(r) / abs(np.diag(r))))


def _tokens(n, batch, tokens, seed, real):
    """Per token: per-sample rotations ``(B, n, 2, 2)``, the two brickwork layers' gates (per-sample
    ``(B, P, 4, 4)`` in the first layer, shared ``(P, 4, 4)`` in the second) and a shared rotation
    layer ``(n, 2, 2)``. Continuous random angles: no degenerate Schmidt values at a cut."""
    rng = np.random.default_rng(seed)
    dtype = torch.float64 if real else torch.complex128
    out = []
    for _ in range(tokens):
        rot = G.RY(torch.tensor(rng.uniform(-3, 3, batch * n))).reshape(batch, n, 2, 2).to(dtype)
        pairs = [len(range(p, n - 1, 2)) for p in (0, 1)]
        if real:
            two = lambda: G.CRY(float(rng.uniform(-3, 3))) @ torch.kron(G.RY(float(rng.uniform(-3, 3))),
                                                                        G.RY(float(rng.uniform(-3, 3))))
        else:
            two = lambda: _haar(rng, 4)
        first = torch.stack([torch.stack([two() for _ in range(pairs[0])]) for _ in range(batch)]).to(dtype)
        second = torch.stack([two() for _ in range(pairs[1])]).to(dtype)
        after = (torch.stack([G.RY(float(a)) for a in rng.uniform(-3, 3, n)]) if real
                 else torch.stack([G.U3(*rng.uniform(-3, 3, 3).tolist()) for _ in range(n)])).to(dtype)
        out.append((rot, first, second, after))
    return out


def _run(tokens, n, batch, dtype, mode="compiled", samples=None, **policy):
    """The token circuit on ``|0..0>``: ``mode`` "compiled" (mps_packed), "torch" (the reference);
    ``samples``: run only these samples of the batch's per-sample gates."""
    pick = (lambda t: t) if samples is None else (lambda t: t[samples])
    b = batch if samples is None else len(samples)
    psi = qt.MPS.zeros(n, batch=b, dtype=dtype, **policy)
    with torch.no_grad(), mps_host.disabled() if mode == "torch" else contextlib.nullcontext():
        for rot, first, second, after in tokens:
            psi.apply_layer(pick(rot))
            brickwork(psi, pick(first), 0)
            brickwork(psi, second, 1)
            psi.apply_layer(after)
    return psi


POLICIES = [dict(max_bond=4, cutoff=1e-12), dict(max_bond=None, cutoff=1e-2, cutoff_mode="rel"),
            dict(max_bond=3, cutoff=1e-10, renormalize=True), dict(max_bond=5, cutoff=1e-3, cutoff_mode="sum2")]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("real", [False, True])
def test_a_batch_equals_the_torch_path_and_each_sample_alone(policy, real, monkeypatch):
    layers = []
    real_layer = mps_packed.Packed.layer
    monkeypatch.setattr(mps_packed.Packed, "layer", lambda *a: layers.append(a[0].batch) or real_layer(*a))
    n, batch = 7, 4
    dtype = torch.float64 if real else torch.complex128
    tokens = _tokens(n, batch, 4, seed=3, real=real)
    got = _run(tokens, n, batch, dtype, **policy)
    assert layers == [batch] * 8  # every layer compiled
    assert got.dtype == dtype and got.device == torch.device("cpu")
    ref = _run(tokens, n, batch, dtype, mode="torch", **policy)
    # the torch path pads every bond to the batch's largest rank, as the packed sites' tensors do
    assert got.bond_dims == ref.bond_dims and got.center == ref.center
    torch.testing.assert_close(got.to_dense(), ref.to_dense(), atol=1e-10, rtol=0)
    torch.testing.assert_close(got.discarded_weight, ref.discarded_weight, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(got.fidelity_estimate, ref.fidelity_estimate, atol=1e-12, rtol=1e-9)
    assert float(ref.discarded_weight.max()) > 1e-6  # these runs truncate
    for s in range(batch):
        alone = _run(tokens, n, batch, dtype, samples=[s], **policy)
        torch.testing.assert_close(got.to_dense()[s], alone.to_dense()[0], atol=1e-10, rtol=0)
        torch.testing.assert_close(got.discarded_weight[s], alone.discarded_weight[0], atol=1e-12, rtol=1e-9)


def test_a_batchs_tensors_are_each_samples_sites_zero_padded():
    """One compiled call on a batch: each sample's sites are what that sample alone gets (bit for
    bit: the same arithmetic on the same buffer), zero-padded to the batch's widest bond."""
    n, batch = 6, 3
    tokens = _tokens(n, batch, 1, seed=5, real=False)
    rot, first, second, after = tokens[0]
    policy = qt.TruncationPolicy(max_bond=None, cutoff=5e-2, cutoff_mode="rel")
    start = qt.MPS.zeros(n, batch=batch, dtype=torch.complex128)
    ops = [("1q", rot), ("2q", first, [0, 2, 4]), ("1q", after), ("2q", second, [3, 1])]
    ts, c, err = mps_packed.circuit(start.tensors, start.center, ops, policy)
    alone = [mps_packed.circuit([t[s:s + 1] for t in start.tensors], start.center,
                                [(k, g[s:s + 1] if g.dim() == 4 else g, *rest) for k, g, *rest in ops], policy)
             for s in range(batch)]
    ranks = np.array([[t.shape[3] for t in a[0][:-1]] for a in alone])  # (B, n - 1) each sample's own bonds
    assert (ranks != ranks[0]).any()  # the samples' ranks differ: padding happens
    assert [t.shape[3] for t in ts[:-1]] == ranks.max(0).tolist()
    for s in range(batch):
        assert alone[s][1] == c and float(err.discarded[s]) == float(alone[s][2].discarded[0])
        for q, site in enumerate(alone[s][0]):
            _, l, _, r = site.shape
            t = ts[q][s]
            assert torch.equal(t[:l, :, :r], site[0])
            assert not t[l:].any() and not t[:, :, r:].any()


@pytest.mark.parametrize("batch", [2, 5])
def test_threads_give_the_same_bits_as_one_thread(batch, monkeypatch):
    """Each sample's arithmetic is the same on any thread: two threads and one agree exactly (two
    samples run on two threads too)."""
    n = 8
    tokens = _tokens(n, batch, 3, seed=9, real=False)
    pools = []
    real_pool = mps_packed.thread_pool
    monkeypatch.setattr(mps_packed, "thread_pool", lambda w: pools.append(w) or real_pool(w))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = _run(tokens, n, batch, torch.complex128, max_bond=6)
        assert pools and set(pools) == {2}
        torch.set_num_threads(1)
        pools.clear()
        one = _run(tokens, n, batch, torch.complex128, max_bond=6)
        assert pools == []
    finally:
        torch.set_num_threads(before)
    assert torch.equal(two.to_dense(), one.to_dense()) and torch.equal(two.discarded_weight, one.discarded_weight)


@pytest.mark.parametrize("batch", [1, 3])
def test_edits_between_calls_reach_the_next_compiled_call(batch):
    """The state keeps plain tensors between compiled calls: replacing one in the list, giving one
    other data, or editing one in place is what the next call computes on (as on the torch route)."""
    rng = np.random.default_rng(6)
    gates = torch.stack([_haar(rng, 4) for _ in range(3)])
    h = torch.stack([G.H(dtype=torch.complex128)] * 6)
    psi = qt.MPS.zeros(6, batch=batch, dtype=torch.complex128, max_bond=4)
    ref = psi.copy()

    def edits():
        yield lambda ts: ts.__setitem__(3, ts[3] * -1j)  # a new tensor in the list
        yield lambda ts: setattr(ts[2], "data", ts[2] * 1j)  # other data, the same tensor object
        yield lambda ts: ts[4].mul_(-1)  # in place

    with torch.no_grad():
        psi.apply_layer(h)
        psi.apply_neighbour_gates(gates, [0, 2, 4])
        with mps_host.disabled():
            ref.apply_layer(h)
            ref.apply_neighbour_gates(gates, [0, 2, 4])
    for edit in edits():
        with torch.no_grad():
            psi.tensors = [t.clone() for t in psi.tensors]
            ref.tensors = [t.clone() for t in ref.tensors]
            edit(psi.tensors)
            edit(ref.tensors)
            psi.apply_neighbour_gates(gates[:2], [0, 2])
            with mps_host.disabled():
                ref.apply_neighbour_gates(gates[:2], [0, 2])
        torch.testing.assert_close(psi.to_dense(), ref.to_dense(), atol=1e-10, rtol=0)


def test_a_failing_sample_leaves_the_batch_as_it_was():
    n, batch = 6, 3
    psi = _run(_tokens(n, batch, 2, seed=1, real=False), n, batch, torch.complex128, max_bond=4)
    ts = [t.clone() for t in psi.tensors]
    ts[2][1, 0, 0, 0] = float("nan")  # sample 1's sites meet a NaN
    psi.tensors = ts
    before = (list(psi.tensors), psi.center, psi.discarded_weight.clone(), psi.fidelity_estimate.clone())
    with pytest.raises(np.linalg.LinAlgError):
        psi.apply_neighbour_gates(torch.stack([_haar(np.random.default_rng(0), 4)] * 3), [0, 2, 4])
    assert all(a is b for a, b in zip(psi.tensors, before[0])) and psi.center == before[1]
    assert torch.equal(psi.discarded_weight, before[2]) and torch.equal(psi.fidelity_estimate, before[3])


def test_a_non_unitary_layer_on_packed_sites_restores_the_canonical_form():
    n, batch = 6, 2
    psi = _run(_tokens(n, batch, 2, seed=2, real=False), n, batch, torch.complex128, max_bond=4)
    ref = psi.copy()
    damp = torch.tensor(np.stack([np.diag([1.0, 0.5 + 0.1 * q]) for q in range(n)])).to(torch.complex128)
    psi.apply_layer(damp)
    with mps_host.disabled():
        ref.apply_layer(damp)
    assert psi.center == ref.center == n - 1
    torch.testing.assert_close(psi.to_dense(), ref.to_dense(), atol=1e-12, rtol=0)
    for t in psi.tensors[:-1]:  # left isometries, every sample
        m = t.reshape(batch, -1, t.shape[3])
        eye = torch.eye(m.shape[2], dtype=m.dtype).expand(batch, -1, -1)
        nonzero = m.abs().sum(1) > 0  # (B, χr): padded columns are zero
        torch.testing.assert_close((m.mH @ m) * (nonzero[:, :, None] & nonzero[:, None, :]), eye * nonzero[:, None, :],
                                   atol=1e-10, rtol=0)


def test_autograd_and_other_dtypes_keep_the_torch_path(monkeypatch):
    layers = []
    real_layer = mps_packed.Packed.layer
    monkeypatch.setattr(mps_packed.Packed, "layer", lambda *a: layers.append(1) or real_layer(*a))
    cz = G.CZ(dtype=torch.complex128).expand(2, 4, 4)
    theta = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    psi = qt.MPS.zeros(5, batch=2, dtype=torch.complex128)
    psi.apply_layer(G.RY(theta).to(torch.complex128).expand(5, 2, 2))
    brickwork(psi, cz, 0)  # the sites require grad: the torch path
    psi.expect("Z0").sum().backward()
    assert layers == [] and theta.grad is not None
    brickwork(qt.MPS.zeros(5, batch=2, dtype=torch.complex64), cz.to(torch.complex64), 0)
    assert layers == []
    brickwork(qt.MPS.zeros(5, batch=2, dtype=torch.complex128), cz, 0)
    assert layers == [1]


def _token_ops(token):
    rot, first, second, after = token
    return [("1q", rot), ("2q", first, 0), ("2q", second, 1), ("1q", after)]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("real", [False, True])
def test_a_token_in_one_call_equals_its_layers_one_by_one(batch, real, monkeypatch):
    """memory.token_layers runs a token's four layers in one compiled call per sample: the same
    arithmetic in the same order as the layer calls, so the same bits; and the torch path's state."""
    circuits = []
    real_circuit = mps_jit._circuit
    monkeypatch.setattr(mps_jit, "_circuit", lambda *a: circuits.append(1) or real_circuit(*a))
    n = 7
    dtype = torch.float64 if real else torch.complex128
    tokens = _tokens(n, batch, 3, seed=4, real=real)
    if batch == 1:
        tokens = [(rot[0], first[0], second, after) for rot, first, second, after in tokens]
    policy = dict(max_bond=4, cutoff=1e-10)
    fused = qt.MPS.zeros(n, batch=batch, dtype=dtype, **policy)
    with torch.no_grad():
        for token in tokens:
            token_layers(fused, _token_ops(token))
    assert len(circuits) == 3 * batch
    by_layer = _run([(t[0][None], t[1][None], t[2], t[3]) if batch == 1 else t for t in tokens], n, batch, dtype,
                    **policy)
    assert torch.equal(fused.to_dense(), by_layer.to_dense()) and fused.center == by_layer.center
    # (the weights are the same numbers summed in another order: per token, not per layer)
    torch.testing.assert_close(fused.discarded_weight, by_layer.discarded_weight, atol=0, rtol=1e-14)
    with mps_host.disabled():
        ref = qt.MPS.zeros(n, batch=batch, dtype=dtype, **policy)
        with torch.no_grad():
            for token in tokens:
                token_layers(ref, _token_ops(token))
    assert len(circuits) == 3 * batch
    torch.testing.assert_close(fused.to_dense(), ref.to_dense(), atol=1e-10, rtol=0)
    torch.testing.assert_close(fused.fidelity_estimate, ref.fidelity_estimate, atol=1e-12, rtol=1e-9)
    assert float(ref.discarded_weight.max()) > 1e-6


def test_token_layers_on_a_statevector_and_under_autograd_go_layer_by_layer():
    n = 5
    token = _tokens(n, 1, 1, seed=8, real=False)[0]
    ops = _token_ops((token[0][0], token[1][0], token[2], token[3]))
    sv = qt.StateVector.zeros(n, dtype=torch.complex128)
    token_layers(sv, ops)
    psi = qt.MPS.zeros(n, dtype=torch.complex128)
    token_layers(psi, ops)
    torch.testing.assert_close(psi.to_dense(), sv.to_dense(), atol=1e-12, rtol=0)
    theta = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)  # a gate under autograd: torch path
    grad_ops = [("1q", G.RY(theta).to(torch.complex128).expand(n, 2, 2))] + ops[1:]
    psi = qt.MPS.zeros(n, dtype=torch.complex128)
    token_layers(psi, grad_ops)
    psi.expect("Z0").sum().backward()
    assert theta.grad is not None


def test_the_circuit_kernel_refuses_what_it_cannot_take():
    psi = qt.MPS.zeros(4, dtype=torch.complex128)
    flat, shapes = mps_jit.flatten([t.numpy()[0] for t in psi.tensors])
    ones = np.stack([np.eye(2, dtype=complex)] * 4)[None]
    twos, firsts = np.stack([np.eye(4, dtype=complex)] * 2), np.array([0, 2])
    with pytest.raises(ValueError, match="does not fit"):
        mps_jit.circuit(flat, shapes, 0, ones, twos, firsts, np.array([[0, 1, 1]]), psi.policy)
    with pytest.raises(ValueError, match="does not fit"):
        mps_jit.circuit(flat, shapes, 0, ones, twos, firsts, np.array([[1, 1, 3]]), psi.policy)
    with pytest.raises(ValueError, match="pairs must start"):
        mps_jit.circuit(flat, shapes, 0, ones, twos, np.array([0, 3]), np.array([[1, 0, 2]]), psi.policy)
    with pytest.raises(TypeError, match="one-qubit layers"):
        mps_jit.circuit(flat, shapes, 0, ones.real.copy(), twos, firsts, np.array([[0, 0, 0]]), psi.policy)
    with pytest.raises(TypeError, match="promote the state first"):
        mps_packed.Packed.pack(psi.tensors).circuit(0, [("2q", torch.zeros(2, 4, 4, dtype=torch.float64), [0, 2])],
                                                    psi.policy)


@pytest.mark.parametrize("batch", [1, 2])
def test_read_sites_that_now_require_grad_take_the_torch_path(batch):
    """Marking read tensors ``requires_grad_()`` changes neither their identity, data nor version:
    the packed buffer must still not stand in for them, or the graph would be cut."""
    n = 4
    psi = qt.MPS.zeros(n, batch=batch, dtype=torch.complex128)
    token_layers(psi, [("1q", torch.stack([G.H(dtype=torch.complex128)] * n))])
    leaf = psi.tensors[0].requires_grad_()
    brickwork(psi, G.CZ(dtype=torch.complex128).expand(2, 4, 4), 0)
    (grad,) = torch.autograd.grad(psi.expect("X0").sum(), leaf)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("how", ["data", "numpy"])
def test_an_edit_the_version_counter_misses_is_kept(batch, how):
    """At B=1 the read tensors view the buffer; at B > 1 they are copies, so once read they are
    packed afresh: an edit through ``t.data`` or numpy reaches the next compiled layer either way."""
    n = 4
    psi = qt.MPS.zeros(n, batch=batch, dtype=torch.complex128)
    token_layers(psi, [("1q", torch.stack([G.H(dtype=torch.complex128)] * n))])
    centre = psi.tensors[psi.center]
    if how == "data":
        centre.data.mul_(2)
    else:
        centre.numpy()[...] *= 2
    brickwork(psi, G.CZ(dtype=torch.complex128).expand(2, 4, 4), 0)
    torch.testing.assert_close(psi.norm(), torch.full((batch,), 2.0, dtype=torch.float64), atol=1e-12, rtol=0)


def _child_runs_a_batch(queue):
    psi = _run(_tokens(5, 3, 1, seed=1, real=False), 5, 3, torch.complex128, max_bond=4)
    queue.put(psi.norm().tolist())


def test_a_forked_child_runs_batches_with_pools_of_its_own():
    """A forked child inherits the thread pools without their threads: it must start its own."""
    import multiprocessing

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _run(_tokens(5, 3, 1, seed=1, real=False), 5, 3, torch.complex128, max_bond=4)  # the parent's pool
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_runs_a_batch, args=(queue,))
        child.start()
        child.join(60)
        hung = child.is_alive()
        if hung:
            child.kill()
    finally:
        torch.set_num_threads(before)
    assert not hung and child.exitcode == 0
    np.testing.assert_allclose(queue.get(timeout=5), [1.0] * 3, atol=1e-12)


def test_gates_of_the_wrong_shape_are_refused_before_any_kernel():
    n = 4
    for batch, gates in ((1, torch.zeros(2, 2, 2)), (2, torch.zeros(2, 2, 2, 2)), (2, torch.zeros(2, 4, 2))):
        psi = qt.MPS.zeros(n, batch=batch, dtype=torch.complex128)
        with pytest.raises(ValueError, match=r"must be \(P, 4, 4\)"):
            brickwork(psi, gates.to(torch.complex128), 0)
    psi = qt.MPS.zeros(n, dtype=torch.complex128)
    for bad in (torch.eye(2).expand(1, 2, 2), torch.zeros(n, 2, 1)):  # would broadcast into (n, 2, 2)
        with pytest.raises(ValueError, match="1q layer's gates must be"):
            token_layers(psi, [("1q", bad.to(torch.complex128))])
    flat, shapes = mps_jit.flatten([t.numpy()[0] for t in psi.tensors])
    with pytest.raises(ValueError, match="pairs must start"):
        mps_jit.layer(flat, shapes, 0, np.stack([np.eye(4, dtype=complex)]), [-1], psi.policy)
    with pytest.raises(ValueError, match=r"gates must be \(4, 2, 2\)"):
        mps_jit.physical(flat, shapes, np.zeros((n, 2, 1), dtype=complex))


def test_token_layers_casts_real_gates_for_a_complex_state_and_refuses_the_reverse():
    psi = qt.MPS.zeros(4, batch=2, dtype=torch.complex128)
    ref = psi.copy()
    cz = G.CZ(dtype=torch.float64).expand(2, 4, 4)
    h = torch.stack([G.H(dtype=torch.float64)] * 4)
    token_layers(psi, [("1q", h), ("2q", cz, 0)])
    with mps_host.disabled():
        ref.apply_layer(h)
        brickwork(ref, cz, 0)
    torch.testing.assert_close(psi.to_dense(), ref.to_dense(), atol=1e-12, rtol=0)
    with pytest.raises(TypeError, match="promote the state first"):
        token_layers(qt.MPS.zeros(4, dtype=torch.float64), [("1q", h.to(torch.complex128))])
