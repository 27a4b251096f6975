"""The hand-differentiated dense scan against the plain autograd path it replaces."""
import pytest
import torch

from qlam_tn import StateVector
from qlam_tn.dense_scan import dense_ry_scan, factored_ry_scan, gram_bloch, gram_bloch_grad, qubit_groups
from qlam_tn.memory import bloch_vectors, brickwork_factors, dense_unitary
from qlam_tn.models.qlam import QLAMClassifier


@pytest.mark.parametrize("n", [1, 3, 5, 8])
@pytest.mark.parametrize("kw", [dict(), dict(readout="xyz", readout_at="last"), dict(checkpoint_every=4),
                                dict(checkpoint_every=50), dict(entangler="su4", depth=3),
                                dict(readout_at="attn", checkpoint_every=4, query_heads=2),
                                dict(readout_at="segments", segments=8, segment_length=10, checkpoint_every=4)])
def test_fast_path_equals_reference(n, kw):
    _fast_equals_reference(n, kw, t_len=70)


@pytest.mark.parametrize("n,kw", [(2, dict(entangler="su4")), (6, dict(entangler="su4", depth=1)),
                                  (6, dict(entangler="cnot", checkpoint_every=5)), (9, dict(entangler="su4"))])
def test_factored_fast_path_equals_reference(n, kw):
    """Depth <= 2 runs the factored scan; n = 2 (one group), 6 and 9 (group A rounded up to even).
    (The default entangler, cz at depth 2, already takes it in the test above.)"""
    torch.manual_seed(0)
    model = QLAMClassifier(2, 5, n_qubits=n, backend="statevector", **kw)
    layers = model.qlam._layer_gates()
    assert brickwork_factors(n, [g for g, _ in layers], [l % 2 for l in range(len(layers))],
                             [r for _, r in layers] if layers[0][1] is not None else None) is not None
    _fast_equals_reference(n, kw, t_len=40 if n < 9 else 12)


def _fast_equals_reference(n, kw, t_len):
    x = torch.rand(3, t_len, 2, dtype=torch.float64)
    torch.manual_seed(1)
    fast = QLAMClassifier(2, 5, n_qubits=n, backend="statevector", fast_path=True, **kw).double()
    torch.manual_seed(1)
    ref = QLAMClassifier(2, 5, n_qubits=n, backend="statevector", fast_path=False, **kw).double()
    if fast.qlam.pool is not None:  # random pooling scores, the same in both
        with torch.no_grad():
            fast.qlam.pool.weight.normal_()
            ref.qlam.pool.weight.copy_(fast.qlam.pool.weight)
    assert fast.qlam.uses_fast_path and not ref.qlam.uses_fast_path
    y_f, y_r = fast(x), ref(x)
    torch.testing.assert_close(y_f, y_r, atol=1e-12, rtol=0)
    y_f.pow(2).sum().backward()
    y_r.pow(2).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-11, rtol=0, msg=name)


def test_scan_gradcheck():
    torch.manual_seed(0)
    n = 3
    angles = torch.rand(2, 5, n, dtype=torch.float64, requires_grad=True)
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    u = q.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, m: dense_ry_scan(a, m, checkpoint_every=2), (angles, u))


def test_single_token_bloch_by_hand():
    a = torch.tensor([[[0.4, -1.3]]], dtype=torch.float64)
    b = dense_ry_scan(a, torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(b[0, 0, :, 0], torch.sin(a[0, 0]), atol=1e-14, rtol=0)
    torch.testing.assert_close(b[0, 0, :, 1], torch.cos(a[0, 0]), atol=1e-14, rtol=0)


def test_groups_cover_qubits():
    for n in range(1, 13):
        gs = qubit_groups(n)
        assert sum(g for _, g in gs) == n and all(g <= 6 for _, g in gs)
        assert [s for s, _ in gs] == [sum(g for _, g in gs[:i]) for i in range(len(gs))]


def test_bad_arguments():
    with pytest.raises(ValueError):
        dense_ry_scan(torch.rand(2, 3), torch.eye(4))
    with pytest.raises(ValueError):
        dense_ry_scan(torch.rand(2, 3, 2), torch.eye(8))
    with pytest.raises(TypeError):
        dense_ry_scan(torch.rand(2, 3, 2), torch.eye(4, dtype=torch.complex64))


def _real_states(m, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    psi = torch.randn(m, 2 ** n, generator=g, dtype=torch.float64)
    return psi / psi.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("n", range(1, 11))
def test_gram_bloch_matches_bloch_vectors(n):
    """The Gram-matrix readout (every split of the qubits) equals the gather-based one, and its
    hand-written gradient equals autograd through the gather-based one."""
    psi = _real_states(5, n).requires_grad_()
    ref = bloch_vectors(StateVector.from_dense(psi))[..., [0, 2]]  # (M, n, 2): X, Z
    g = torch.randn(ref.shape, dtype=torch.float64)
    (ref_grad,) = torch.autograd.grad((ref * g).sum(), psi)
    for split in sorted({qubit_groups(n)[0][1]} | {s for s in range(1, n + 1) if s <= 6 and n - s <= 6}):
        torch.testing.assert_close(gram_bloch(psi.detach(), n, split), ref.detach(), atol=1e-13, rtol=0)
        torch.testing.assert_close(gram_bloch_grad(psi.detach(), g, n, split), ref_grad, atol=1e-13, rtol=0)


def _orth(d, gen):
    return torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))[0].contiguous()


@pytest.mark.parametrize("n,na,w,with_fb", [(1, 1, 1, False), (2, 2, 0, False), (3, 2, 2, True), (5, 4, 2, True),
                                             (7, 4, 1, True), (8, 4, 5, True), (8, 4, 5, False), (8, 4, 8, True),
                                             (4, 1, 0, True)])
@pytest.mark.parametrize("every", [None, 7])
def test_factored_scan_equals_dense_scan(n, na, w, with_fb, every):
    """``U = (I ⊗ tail)(f_a ⊗ f_b)``: same Bloch vectors and gradients (angles, each factor)."""
    gen = torch.Generator().manual_seed(n * 100 + na * 10 + w)
    a = torch.randn(2, 40, n, generator=gen, dtype=torch.float64, requires_grad=True)
    f_a = _orth(2 ** na, gen).requires_grad_()
    f_b = _orth(2 ** (n - na), gen).requires_grad_() if with_fb and n > na else None
    tail = _orth(2 ** w, gen).requires_grad_() if w else None
    weight = torch.randn(2, 40, n, 2, generator=gen, dtype=torch.float64)
    inputs = [t for t in (a, f_a, f_b, tail) if t is not None]
    u = torch.kron(f_a, f_b if f_b is not None else torch.eye(2 ** (n - na), dtype=torch.float64))
    if tail is not None:
        u = torch.kron(torch.eye(2 ** (n - w), dtype=torch.float64), tail) @ u
    ref = dense_ry_scan(a, u, every)
    got = factored_ry_scan(a, f_a, f_b, tail, every)
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)
    g_ref = torch.autograd.grad((ref * weight).sum(), inputs)
    g_got = torch.autograd.grad((got * weight).sum(), inputs)
    for x, y in zip(g_got, g_ref):
        torch.testing.assert_close(x, y, atol=1e-11, rtol=0)


def test_factored_scan_gradcheck():
    """Exact gradients for non-orthogonal factors too (f_b inside the tail, folded into it)."""
    gen = torch.Generator().manual_seed(3)
    angles = torch.rand(2, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    near_eye = [(torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(d, d, generator=gen, dtype=torch.float64))
                .requires_grad_() for d in (16, 2, 4, 2)]
    f_a, f_b, tail, small_tail = near_eye
    assert torch.autograd.gradcheck(lambda *x: factored_ry_scan(*x, checkpoint_every=2), (angles, f_a, f_b, tail))
    assert torch.autograd.gradcheck(lambda *x: factored_ry_scan(*x), (angles, f_a, f_b, small_tail))


@pytest.mark.parametrize("n", range(2, 11))
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("with_rotations", [False, True])
def test_brickwork_factors_match_dense_unitary(n, depth, with_rotations):
    gen = torch.Generator().manual_seed(n)
    parities = [l % 2 for l in range(depth)]
    layers = [torch.stack([_orth(4, gen) for _ in range(p, n - 1, 2)]) if n - 1 > p else torch.zeros(0, 4, 4)
              for p in parities]
    rots = [torch.stack([_orth(2, gen) for _ in range(n)]) for _ in parities] if with_rotations else None
    factors = brickwork_factors(n, layers, parities, rots)
    if depth == 3:
        assert factors is None
        return
    f_a, f_b, tail = factors
    u = torch.kron(f_a, f_b if f_b is not None else torch.eye(1, dtype=torch.float64))
    if tail is not None:
        u = torch.kron(torch.eye(2 ** n // tail.shape[0], dtype=torch.float64), tail) @ u
    torch.testing.assert_close(u, dense_unitary(n, layers, parities, rots), atol=1e-13, rtol=0)


def test_factored_bad_arguments():
    a = torch.rand(2, 3, 4)
    with pytest.raises(ValueError):
        factored_ry_scan(a, torch.eye(3), None, None)  # not a power of two
    with pytest.raises(ValueError):
        factored_ry_scan(a, torch.eye(4), torch.eye(8), None)  # f_b does not fit the other 2 qubits
    with pytest.raises(ValueError):
        factored_ry_scan(a, torch.eye(4), None, torch.eye(32))  # tail wider than the state
    with pytest.raises(TypeError):
        factored_ry_scan(a, torch.eye(4, dtype=torch.complex64), None, None)
