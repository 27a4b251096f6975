"""The Gram-``eigh`` split under autograd (``linalg.gram_split``, ``TruncationPolicy(split="gram")``)
against its references: ``torch.autograd.gradcheck`` (finite differences), the SVD route
(``linalg.svd_split``, the reference with the same signature) and the dense statevector; and the
centre moves' one-QR backward (``linalg.with_qr_backward``) against torch's QR backward."""
import dataclasses

import pytest
import torch

import qlam_tn as qt
from qlam_tn import linalg
from qlam_tn.linalg import gram_split, svd_split, truncated_split

F64 = torch.float64


def _random(b, m, n, dtype=F64, seed=0, spectrum=None):
    """``(b, m, n)`` Gaussian matrices, or with the given singular values (random isometries)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(b, m, n, dtype=dtype, generator=g)
    if spectrum is None:
        return a
    k = len(spectrum)
    u = torch.linalg.qr(torch.randn(b, m, k, dtype=dtype, generator=g))[0]
    v = torch.linalg.qr(torch.randn(b, n, k, dtype=dtype, generator=g))[0]
    return u @ torch.diag_embed(torch.tensor(spectrum, dtype=u.real.dtype).to(dtype)) @ v.mH


def _loss(split, a, policy, absorb, w):
    """A loss every MPS has: a function of the kept state ``left @ right`` and of the weights
    (invariant to rotations inside the kept space, as every observable of the state is)."""
    left, right, disc, kept2 = split(a, policy, absorb)
    state = left @ right
    return (state * w).real.sum() + (state.abs() ** 2).sum() * 0.3 + disc.sum() * 0.7 + kept2.sqrt().sum() * 0.2


@pytest.mark.parametrize("dtype", [F64, torch.complex128])
@pytest.mark.parametrize("absorb", ["right", "left"])
def test_gram_split_gradcheck_generic(dtype, absorb):
    # Generic spectrum, cut from 6 to 3: finite differences agree to 1e-8.
    a = _random(2, 6, 6, dtype, seed=1).requires_grad_(True)
    w = _random(2, 6, 6, dtype, seed=2)
    pol = qt.TruncationPolicy(max_bond=3, split="gram")
    assert torch.autograd.gradcheck(lambda x: _loss(gram_split, x, pol, absorb, w), (a,), atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("mode,cutoff", [("abs", 0.3), ("rel", 0.2), ("sum2", 0.05), ("rsum2", 0.01)])
@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("absorb", ["right", "left"])
def test_gram_gradient_equals_svd_route_every_cutoff_mode(mode, cutoff, renormalize, absorb):
    # Spectra with gaps at the cuts: both routes' gradients are the exact ones (1e-8), for every
    # cutoff mode, with per-sample ranks (the samples' spectra differ) and renormalisation.
    spectra = [[2.0, 1.3, 0.9, 0.35, 0.1, 0.01], [1.0, 0.8, 0.05, 0.04, 0.02, 0.001]]
    a = torch.cat([_random(1, 6, 8, seed=s, spectrum=sp) for s, sp in enumerate(spectra)])
    w = _random(2, 6, 8, seed=5)
    pol = qt.TruncationPolicy(cutoff=cutoff, cutoff_mode=mode, renormalize=renormalize, split="gram")
    ranks = [int(r) for r in pol.ranks(torch.linalg.svdvals(a))]
    assert ranks[0] != ranks[1] or mode == "abs"  # per-sample ranks exercised
    grads = []
    for split in (gram_split, svd_split):
        x = a.clone().requires_grad_(True)
        _loss(split, x, pol, absorb, w).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-8, rtol=0)


def test_gram_split_degenerate_spectra_finite_and_equal_to_svd_where_defined():
    # A degenerate kept pair (a Bell pair's Schmidt values) and a degenerate cut pair, with a gap at
    # the cut: the gradient is defined; both routes give it (1e-8) and it matches finite differences.
    a = _random(1, 6, 6, spectrum=[0.7, 0.7, 0.3, 0.1, 0.1, 0.0], seed=3)
    w = _random(1, 6, 6, seed=4)
    pol = qt.TruncationPolicy(max_bond=3, split="gram")
    grads = []
    for split in (gram_split, svd_split):
        x = a.clone().requires_grad_(True)
        _loss(split, x, pol, "right", w).backward()
        grads.append(x.grad)
    assert torch.isfinite(grads[0]).all()
    torch.testing.assert_close(grads[0], grads[1], atol=1e-8, rtol=0)
    x = a.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda y: _loss(gram_split, y, pol, "right", w), (x,), atol=1e-6)
    # Cut inside a degenerate pair (no gradient exists): finite on both routes, no NaN/inf.
    b = _random(1, 3, 3, spectrum=[1.0, 1.0, 0.5], seed=6).requires_grad_(True)
    _loss(gram_split, b, qt.TruncationPolicy(max_bond=1, split="gram"), "right", _random(1, 3, 3)).backward()
    assert torch.isfinite(b.grad).all()


@pytest.mark.parametrize("absorb", ["right", "left"])
def test_gram_split_padded_bonds_finite_and_equal_to_svd(absorb):
    # Sample 0 has rank 1 (a product state's bond), sample 1 rank 3; the batch shares width 3 and
    # sample 0's extra values are zero (padded). Zero and repeated eigenvalues: finite gradients,
    # equal to the SVD route's (there defined: the cuts sit at gaps).
    a = torch.cat([_random(1, 4, 4, spectrum=[1.0, 0.0, 0.0, 0.0], seed=7),
                   _random(1, 4, 4, spectrum=[0.8, 0.5, 0.3, 0.0], seed=8)])
    w = _random(2, 4, 4, seed=9)
    pol = qt.TruncationPolicy(cutoff=1e-12, split="gram")
    grads = []
    for split in (gram_split, svd_split):
        x = a.clone().requires_grad_(True)
        left, right, disc, kept2 = split(x, pol, absorb)
        assert left.shape[-1] == 3
        _loss(split, x, pol, absorb, w).backward()
        grads.append(x.grad)
    assert all(torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-8, rtol=0)


def test_split_policy_decides_the_route(mocker):
    # One decision: "gram" takes eigh with and without autograd, "svd" never, "auto" only outside
    # autograd in float64.
    a = _random(2, 4, 8)
    eigh = mocker.spy(torch.linalg, "eigh")
    for split, grad, uses in [("gram", True, True), ("gram", False, True), ("svd", False, False),
                              ("auto", False, True), ("auto", True, False)]:
        x = a.clone().requires_grad_(grad)
        before = eigh.call_count
        truncated_split(x, qt.TruncationPolicy(max_bond=2, split=split), absorb="right")
        assert (eigh.call_count > before) == uses, (split, grad)
    # float32: "auto" keeps the SVD, "gram" takes eigh.
    assert not linalg.uses_gram_split(a.float(), qt.TruncationPolicy(), "right")
    assert linalg.uses_gram_split(a.float(), qt.TruncationPolicy(split="gram"), "right")
    # The isometry on the larger side: the SVD for every split mode.
    assert not linalg.uses_gram_split(_random(1, 8, 4), qt.TruncationPolicy(split="gram"), "right")


def _brickwork_run(state, angles):
    """Tokens of RY rotations and a CZ brickwork (both parities), then Σ_q <Z_q> per sample."""
    n = state.n_qubits
    cz = qt.gates.CZ(dtype=F64)
    for x in angles:
        state.apply_layer(qt.gates.RY(x.reshape(-1)).reshape(x.shape[0], n, 2, 2))
        for q in list(range(0, n - 1, 2)) + list(range(1, n - 1, 2))[::-1]:
            state.apply(cz, (q, q + 1))
    return sum(state.expect(f"Z{q}") for q in range(n))


@pytest.mark.parametrize("renormalize", [False, True])
def test_mps_gram_gradients_equal_dense_statevector_with_per_sample_ranks(renormalize):
    # Sample 0 stays |0...0> (rank 1 on every bond: padded bonds, singular R on moves), sample 1
    # entangles; no truncation beyond the cutoff: gradients are the statevector's to 1e-8.
    n = 6
    g = torch.Generator().manual_seed(5)
    a = [torch.rand(2, n, generator=g, dtype=F64) * 3 for _ in range(3)]
    for x in a:
        x[0] = 0.0

    def grads(state):
        xs = [x.clone().requires_grad_(True) for x in a]
        _brickwork_run(state, xs).sum().backward()
        return [x.grad for x in xs]

    mps = qt.MPS.zeros(n, batch=2, cutoff=1e-12, renormalize=renormalize, dtype=F64)
    mps.policy = dataclasses.replace(mps.policy, split="gram")
    g_mps = grads(mps)
    g_sv = grads(qt.StateVector.zeros(n, batch=2, dtype=F64))
    for gm, gs in zip(g_mps, g_sv):
        assert torch.isfinite(gm).all()
        torch.testing.assert_close(gm, gs, atol=1e-8, rtol=0)


def test_qlam_token_gradient_gram_equals_statevector():
    # A QLAM with su4 entanglers on an untruncated MPS with Gram splits: every parameter's gradient
    # equals the dense statevector model's (float64, 1e-8).
    from qlam_tn.models.qlam import QLAM

    torch.manual_seed(3)
    kw = dict(n_qubits=5, depth=2, entangler="su4", bond_dim=None, encoding_scale=1.0)
    mps = QLAM(6, backend="mps", split="gram", **kw).double()
    sv = QLAM(6, backend="statevector", fast_path=False, **kw).double()
    sv.load_state_dict(mps.state_dict())
    x = torch.randn(3, 4, 6, dtype=F64)
    for model in (mps, sv):
        model(x).square().sum().backward()
    for (name, p), q in zip(mps.named_parameters(), sv.parameters()):
        assert torch.isfinite(p.grad).all(), name
        torch.testing.assert_close(p.grad, q.grad, atol=1e-8, rtol=0, msg=name)


def test_qlam_config_split_reaches_the_memory():
    from qlam_tn.models.qlam import QLAM

    q = QLAM(4, n_qubits=4, backend="mps", bond_dim=4, split="gram")
    assert q.new_memory(2).policy.split == "gram"
    with pytest.raises(ValueError, match="unknown split"):
        QLAM(4, n_qubits=4, backend="mps", split="qr")


def test_float32_gram_gradients_close_to_float64_svd_on_saturated_bonds():
    # The fast configuration: float32, Gram splits, bonds capped (a saturated chain). Its gradients
    # are those of the float64 SVD reference to float32's precision through the squared condition
    # number (relative 1e-3 of the largest).
    from qlam_tn.models.qlam import QLAM

    torch.manual_seed(4)
    kw = dict(n_qubits=8, depth=2, entangler="su4", bond_dim=4, encoding_scale=1.0, backend="mps")
    fast = QLAM(6, split="gram", **kw)
    ref = QLAM(6, split="svd", **kw).double()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(4, 6, 6)
    fast(x).square().sum().backward()
    ref(x.double()).square().sum().backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        scale = float(q.grad.abs().max())
        assert float((p.grad.double() - q.grad).abs().max()) <= 1e-3 * scale + 1e-7, name


@pytest.mark.parametrize("dtype", [F64, torch.complex128])
def test_with_qr_backward_equals_torch_qr(dtype):
    m = _random(3, 8, 5, dtype, seed=11).requires_grad_(True)
    w1, w2 = _random(3, 8, 5, dtype, seed=12), _random(3, 5, 5, dtype, seed=13)
    grads = []
    for mine in (True, False):
        x = m.detach().clone().requires_grad_(True)
        if mine:
            with torch.no_grad():
                q, r = torch.linalg.qr(x)
            q, r = linalg.with_qr_backward(x, q, r)
        else:
            q, r = torch.linalg.qr(x)
        ((q * w1).sum() + (r * w2).sum()).real.backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-12, rtol=0)


def test_singular_move_computes_one_qr_and_the_svd_of_r(mocker):
    # A rank-deficient move under autograd: one QR of the site, then the SVD of R (k x k, not the
    # site's p x k); the factors and gradient are those of the SVD of the site itself (the route
    # this replaces: linalg.svd with the broadened backward).
    import qlam_tn.mps_update as M

    g = torch.Generator().manual_seed(14)
    m = (torch.randn(2, 8, 2, dtype=F64, generator=g) @ torch.randn(2, 2, 4, dtype=F64, generator=g))
    w = torch.randn(2, 8, 4, dtype=F64, generator=g)
    qr, svd = mocker.spy(torch.linalg, "qr"), mocker.spy(torch.linalg, "svd")
    x = m.clone().requires_grad_(True)
    q, r = M.qr_move(x, 1e-12, True)
    assert qr.call_count == 1 and svd.call_count == 1
    assert tuple(svd.call_args[0][0].shape) == (2, 4, 4)
    torch.testing.assert_close(q @ r, m, atol=1e-12, rtol=0)
    w2 = torch.randn(2, 8, 8, dtype=F64, generator=g)

    def loss(u, c):  # the state and the projector on the rank-2 range (sign-free)
        return (u @ c * w).sum() + (u[..., :2] @ u[..., :2].mH * w2).sum()

    loss(q, r).backward()
    y = m.clone().requires_grad_(True)
    u, s, vh = linalg.svd(y, 1e-12, absorb="right")
    loss(u, s.unsqueeze(-1) * vh).backward()
    torch.testing.assert_close(x.grad, y.grad, atol=1e-10, rtol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("split", ["gram", "svd"])
def test_cuda_split_and_gradient_equal_cpu(split):
    # The batched CUDA drivers (gesvdj / batched eigh) give the CPU route's values and gradients.
    a = _random(16, 8, 8, seed=15)
    w = _random(16, 8, 8, seed=16)
    pol = qt.TruncationPolicy(max_bond=4, split=split)
    grads = []
    for dev in ("cpu", "cuda"):
        x = a.to(dev).requires_grad_(True)
        _loss(truncated_split, x, pol, "right", w.to(dev)).backward()
        grads.append(x.grad.cpu())
    torch.testing.assert_close(grads[1], grads[0], atol=1e-8, rtol=0)


def test_gram_eigh_redoes_non_finite_float32_samples_in_float64(mocker):
    # LAPACK's float32 syevd can return NaN for a graded Gram matrix with subnormal entries (seen
    # on a nearly product state); such samples are redone in float64, the others kept.
    a = _random(3, 6, 6, torch.float32, seed=17)
    G = a @ a.mT
    real_eigh = torch.linalg.eigh

    def flaky(g):
        L, V = real_eigh(g)
        if g.dtype == torch.float32:
            L, V = L.clone(), V.clone()
            L[1], V[1] = float("nan"), float("nan")
        return L, V

    mocker.patch.object(torch.linalg, "eigh", flaky)
    L, V = linalg.gram_eigh(G)
    Lr, Vr = real_eigh(G.double())
    assert torch.isfinite(L).all() and torch.isfinite(V).all()
    torch.testing.assert_close(L[1].double(), Lr[1], atol=1e-5, rtol=0)
    torch.testing.assert_close((V[1] @ V[1].mT).double(), torch.eye(6, dtype=F64), atol=1e-6, rtol=0)
    torch.testing.assert_close(L[0], real_eigh(G)[0][0])


@pytest.mark.parametrize("dtype", [F64, torch.complex128])
def test_fused_gram_backward_equals_autograd_through_stable_eigh(dtype):
    # gram_split's one-node backward against plain autograd through the Gram product, stable_eigh
    # and the projection (the same chain, composed), with per-sample ranks and renormalisation.
    a = torch.cat([_random(1, 5, 7, dtype, seed=18, spectrum=[1.0, 0.6, 0.3, 1e-3, 1e-9]),
                   _random(1, 5, 7, dtype, seed=19)])
    w = _random(2, 5, 7, dtype, seed=20)
    pol = qt.TruncationPolicy(cutoff=1e-4, renormalize=True, split="gram")

    def composed(x, policy, absorb):
        _, V = linalg.stable_eigh(x @ x.mH, policy.grad_eps)
        Cf = V.mH @ x
        S2 = (Cf.abs() ** 2).sum(-1)
        ranks = linalg.rank_rule(S2.detach(), S2.detach().cumsum(-1), policy)
        r, k = int(ranks.max()), S2.shape[-1]
        keep = (torch.arange(r) < ranks.unsqueeze(-1)).to(x.dtype).unsqueeze(-1)
        kept2 = torch.stack([S2[b, k - int(ranks[b]):].sum() for b in range(x.shape[0])])
        C = Cf[..., k - r:, :].flip(-2) * keep / kept2.sqrt().to(x.dtype)[:, None, None]
        return V[..., k - r:].flip(-1), C, S2.sum(-1) - kept2, kept2

    grads = []
    for split in (gram_split, composed):
        x = a.clone().requires_grad_(True)
        _loss(split, x, pol, "right", w).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_small_svds_take_the_batched_jacobi_driver(mocker):
    svd = mocker.spy(torch.linalg, "svd")
    a = _random(32, 16, 8, seed=21).cuda()
    u, s, vh = linalg.batched_svd(a)
    assert svd.call_args.kwargs.get("driver") == "gesvdj"
    torch.testing.assert_close((u * s.unsqueeze(-2)) @ vh, a, atol=1e-10, rtol=0)
    torch.testing.assert_close(s.cpu(), torch.linalg.svdvals(a.cpu()), atol=1e-10, rtol=0)
    linalg.batched_svd(_random(2, 40, 40, seed=22).cuda())  # too large for the batched driver
    assert svd.call_args.kwargs.get("driver") is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_qlam_gram_gradients_equal_cpu():
    from qlam_tn.models.qlam import QLAM

    torch.manual_seed(23)
    model = QLAM(6, n_qubits=8, depth=2, entangler="su4", bond_dim=8, backend="mps", split="gram").double()
    x = torch.randn(8, 5, 6, dtype=F64)
    grads = []
    for dev in ("cpu", "cuda"):
        model.to(dev).zero_grad()
        model(x.to(dev)).square().sum().backward()
        grads.append([p.grad.cpu() for p in model.parameters()])
    for gc, gg in zip(*grads):
        torch.testing.assert_close(gg, gc, atol=1e-8, rtol=0)


def test_batched_svd_on_cpu_is_torch_svd():
    a = _random(3, 6, 4, seed=24)
    u, s, vh = linalg.batched_svd(a)
    torch.testing.assert_close(s, torch.linalg.svdvals(a))
    torch.testing.assert_close((u * s.unsqueeze(-2)) @ vh, a, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype,scale", [(torch.float32, 1e-10), (F64, 1e-80)])
@pytest.mark.parametrize("split", [gram_split, svd_split])
def test_small_state_gradients_finite_and_scale_exact(dtype, scale, split):
    # A product state's split (rank 1: zero and repeated values, all kept) of a state with tiny
    # norm: the broadening ε = eps_rel · s_max⁴ underflowed to 0 there and 0/0 gave NaN (float32
    # from norms ~1e-10, float64 ~1e-75). Every value kept: the split's state is A itself, so the
    # gradient is w (a hand calculation), at every scale; the Gram route gets it to rounding, the
    # SVD route's broadened 1/s on the zero values does not (finite only).
    w = _random(2, 4, 6, F64, seed=25).to(dtype)
    pol = qt.TruncationPolicy(cutoff=0.0, renormalize=False)
    u = _random(2, 4, 1, F64, seed=26).to(dtype)
    v = _random(2, 1, 6, F64, seed=27).to(dtype)
    for s in (1.0, scale):
        a = ((u @ v) * s).requires_grad_(True)
        left, right, _, _ = split(a, pol, "right")
        assert left.shape[-1] == 4
        ((left @ right) * w).sum().backward()
        assert torch.isfinite(a.grad).all(), s
        if split is gram_split:
            torch.testing.assert_close(a.grad, w, atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0)


@pytest.mark.parametrize("absorb", ["right", "left"])
def test_gram_gradient_exact_with_tiny_kept_values(absorb):
    # No cutoff: values down to 1e-9 of the largest kept, so the split's state is A itself and the
    # gradient of <w, state> is w (a hand calculation). The Gram backward has no 1/s and gets it to
    # rounding; the SVD route's broadened 1/s (ε = 1e-12 · s_max²) is off by O(1) there (not pinned).
    a = _random(2, 5, 5, F64, seed=28, spectrum=[1.0, 1e-3, 1e-5, 1e-7, 1e-9])
    w = _random(2, 5, 5, F64, seed=29)
    x = a.clone().requires_grad_(True)
    left, right, _, _ = gram_split(x, qt.TruncationPolicy(cutoff=0.0), absorb)
    assert left.shape[-1] == 5
    ((left @ right) * w).sum().backward()
    torch.testing.assert_close(x.grad, w, atol=1e-12, rtol=0)


def test_second_derivatives_raise_instead_of_silently_wrong():
    # The hand-written backwards run on factors saved without a graph: a second derivative through
    # them would miss the factors' own dependence on the input (through the one-QR move it came
    # out 246 where torch's QR gives 220). They refuse instead.
    import qlam_tn.mps_update as M

    x = _random(2, 6, 3, seed=30).requires_grad_(True)
    q, r = M.qr_move(x, 1e-12, True)
    g, = torch.autograd.grad(((q * _random(2, 6, 3, seed=31)).sum() + r.square().sum()), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.square().sum().backward()
    y = _random(2, 4, 6, seed=32).requires_grad_(True)
    for split in (gram_split, svd_split):
        left, right, _, _ = split(y, qt.TruncationPolicy(max_bond=2), "right")
        g, = torch.autograd.grad((left @ right).square().sum(), y, create_graph=True)
        with pytest.raises(RuntimeError, match="once_differentiable"):
            g.square().sum().backward()


@pytest.mark.parametrize("decades", [4, 6])
def test_float32_gram_split_gradient_error_scales_as_eps_over_smallest_kept_squared(decades):
    # gram_split's documented float32 accuracy: a split's gradient is off by ~eps / (s_r / s_max)²
    # relative (s_r the smallest kept value; eigenvectors of the Gram matrix carry eps · λ_max / gap),
    # where the float32 SVD stays near eps / (s_r / s_max). Reference: the float64 SVD route with
    # the same broadening. Spectra over 4 and 6 decades, cut to 4 of 8 (s_r = 1.9e-2, 2.7e-3).
    spectrum = torch.logspace(0, -decades, 8, dtype=F64).tolist()
    s_r = spectrum[3]
    eps = torch.finfo(torch.float32).eps
    pol = qt.TruncationPolicy(max_bond=4, split="gram")
    for seed in range(3):
        a = _random(1, 8, 16, seed=40 + seed, spectrum=spectrum)
        w = _random(1, 8, 16, seed=50 + seed)
        x = a.clone().requires_grad_(True)
        _loss(svd_split, x, pol, "right", w).backward()
        ref, scale = x.grad, float(x.grad.abs().max())
        err = {}
        for split in (gram_split, svd_split):
            y = a.float().requires_grad_(True)
            _loss(split, y, pol, "right", w.float()).backward()
            err[split] = float((y.grad.double() - ref).abs().max()) / scale
        assert err[gram_split] <= 4 * eps / s_r ** 2, (seed, err)
        assert err[svd_split] <= 10 * eps / s_r, (seed, err)
