"""Gradients through truncation: gradcheck, degenerate spectra, long sequences from |0...0>."""
import pytest
import torch

import qlam_tn as qt


def test_svd_gradcheck_random_full_rank_complex():
    torch.manual_seed(0)

    def loss(a):
        U, S, Vh = qt.svd(a)
        k = 2
        low = (U[..., :k] * S[..., None, :k].to(U.dtype)) @ Vh[..., :k, :]
        return (low.abs() ** 2).sum() + (low * a.conj()).real.sum() + S.sum()

    for shape in ((5, 4), (3, 6), (2, 4, 4)):
        a = torch.randn(*shape, dtype=torch.complex128, requires_grad=True)
        assert torch.autograd.gradcheck(loss, (a,))


def test_svd_backward_equals_torch_on_nondegenerate_inputs():
    torch.manual_seed(1)
    a = torch.randn(6, 5, dtype=torch.complex128)
    w = torch.randn(6, 5, dtype=torch.complex128)

    def f(svd_fn, x):
        U, S, Vh = svd_fn(x)
        low = (U[:, :3] * S[:3].to(U.dtype)) @ Vh[:3]
        return (low * w).real.sum() + (S ** 3).sum()

    x1 = a.clone().requires_grad_()
    f(qt.svd, x1).backward()
    x2 = a.clone().requires_grad_()
    f(lambda x: torch.linalg.svd(x, full_matrices=False), x2).backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-9, rtol=1e-9)


def test_degenerate_spectrum_finite_where_torch_is_nan():
    def f(svd_fn, x):
        a = torch.diag(torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64)) * (1 + x)
        U, S, Vh = svd_fn(a)
        return ((U[:, :1] * S[:1]) @ Vh[:1]).sum()

    x = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    f(lambda a: torch.linalg.svd(a, full_matrices=False), x).backward()
    assert torch.isnan(x.grad)
    x = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    f(qt.svd, x).backward()
    # The rank-1 cut keeps one of the degenerate pair, e.g. e0 e0^T (1+x): d/dx sum = 1.
    assert torch.isfinite(x.grad) and abs(x.grad.item() - 1.0) < 1e-12


def _circuit_observable(theta, max_bond, n=5, dtype=torch.complex128, grad_eps=1e-12, out=None, dense=False):
    if dense:
        psi = qt.StateVector.zeros(n, dtype=dtype)
    else:
        psi = qt.MPS.zeros(n, max_bond=max_bond, cutoff=0.0, dtype=dtype, grad_eps=grad_eps)
    if out is not None:
        out.append(psi)
    k = 0
    for layer in range(3):
        psi.apply_layer(torch.stack([qt.gates.RY(theta[k + q]) for q in range(n)]))
        k += n
        for q in range(layer % 2, n - 1, 2):
            psi.apply(qt.gates.CNOT(), (q, q + 1))
        psi.apply(qt.gates.RZZ(theta[layer]), (0, n - 1))
    return psi.expect("Z2") + 0.5 * psi.expect("X0 Y3") + psi.entropy()[:, 1]


def test_gradcheck_observable_through_truncation():
    torch.manual_seed(2)
    theta = (torch.rand(15, dtype=torch.float64) * 3).requires_grad_()
    # max_bond=2 truncates: the exact state needs bond 4 at the centre.
    states = []
    with torch.no_grad():
        _circuit_observable(theta, 2, out=states)
    assert states[0].discarded_weight.item() > 1e-3
    assert torch.autograd.gradcheck(lambda t: _circuit_observable(t, 2), (theta,))


def test_gradient_matches_finite_difference_and_exact_limit():
    """With an exact bond the MPS gradient equals the StateVector gradient.

    The Lorentzian broadening biases a pair of singular values with gap Δ (in s² units
    relative to s_max²) by about ε/Δ². Measured on this circuit: max |Δgrad| = 7e-7 at the
    default ε = 1e-12, 7e-11 at 1e-16, 1e-14 at 1e-20. The exact limit is checked at 1e-20.
    """
    torch.manual_seed(3)
    theta = (torch.rand(15, dtype=torch.float64) * 3)

    t1 = theta.clone().requires_grad_()
    _circuit_observable(t1, None, grad_eps=1e-20).sum().backward()
    t2 = theta.clone().requires_grad_()
    _circuit_observable(t2, None, dense=True).sum().backward()
    torch.testing.assert_close(t1.grad, t2.grad, atol=1e-9, rtol=0)


def test_first_token_on_product_state_has_finite_exact_gradient():
    """Every split of the first token sees an all-degenerate spectrum (one 1, rest 0)."""
    th = torch.tensor([0.3, 1.2, -0.4, 2.0], dtype=torch.float64, requires_grad=True)
    psi = qt.MPS.zeros(4, max_bond=2, batch=1)
    psi.apply_layer(qt.gates.RY(th))
    for q in range(3):
        psi.apply(qt.gates.CZ(), (q, q + 1))
    e = psi.expect("X1")
    e.sum().backward()
    assert torch.all(torch.isfinite(th.grad))
    sv = qt.StateVector.zeros(4)
    th2 = th.detach().clone().requires_grad_()
    sv.apply_layer(qt.gates.RY(th2))
    for q in range(3):
        sv.apply(qt.gates.CZ(), (q, q + 1))
    sv.expect("X1").sum().backward()
    torch.testing.assert_close(th.grad, th2.grad, atol=1e-12, rtol=0)


def test_no_nan_over_2000_random_tokens():
    torch.manual_seed(4)
    n, B = 6, 2
    w = torch.randn(n, dtype=torch.float64, requires_grad=True)
    psi = qt.MPS.zeros(n, batch=B, max_bond=4, dtype=torch.float64)
    cz = qt.gates.CZ()
    tokens = torch.rand(2000, B, dtype=torch.float64)
    for t in range(2000):
        ang = tokens[t][:, None] * w[None, :]  # (B, n)
        psi.apply_layer(qt.gates.RY(ang.reshape(-1)).reshape(B, n, 2, 2))
        for p in (0, 1):
            for q in range(p, n - 1, 2):
                psi.apply(cz, (q, q + 1))
        if t % 100 == 99:
            # Keep the graph bounded like truncated BPTT would; the gradient still crosses 100 tokens.
            loss = psi.expect("Z0").sum() + psi.expect("X3").sum()
            loss.backward()
            assert torch.all(torch.isfinite(w.grad)), f"NaN/inf gradient at token {t}"
            psi.tensors = [x.detach() for x in psi.tensors]
            psi.discarded_weight = psi.discarded_weight.detach()
            psi.log_fidelity = psi.log_fidelity.detach()
            w.grad = None
    assert psi.discarded_weight.min() > 0  # it did truncate


@pytest.mark.parametrize("max_bond", [None, 2])
def test_degenerate_schmidt_values_differentiate_exactly(max_bond):
    """Clifford prefixes give exactly equal Schmidt values (Bell/GHZ bonds); the backward's gauge
    form differentiates kept degenerate pairs exactly, where the textbook form is 0/0."""

    def value(t, dense):
        n = 4
        psi = qt.StateVector.zeros(n) if dense else qt.MPS.zeros(n, max_bond=max_bond)
        psi.apply(qt.gates.H(), 0)
        for q in range(n - 1):
            psi.apply(qt.gates.CNOT(), (q, q + 1))  # GHZ: every bond has s = (1/√2, 1/√2)
        psi.apply(qt.gates.U3(t[0], t[1], 0.3), 3)
        psi.apply(qt.gates.CRY(t[2]), (3, 1))
        psi.apply(qt.gates.RXX(t[3]), (0, 2))
        return psi.expect("Z0 X2") + psi.expect("Y1")

    theta = torch.tensor([-1.2, 0.7, 0.4, 1.1], dtype=torch.float64)
    grads = []
    for dense in (True, False):
        t = theta.clone().requires_grad_()
        value(t, dense).sum().backward()
        grads.append(t.grad)
    if max_bond is None:
        torch.testing.assert_close(grads[1], grads[0], atol=1e-9, rtol=0)
    else:  # truncated: compare with central differences of the truncated map itself
        h = 1e-6
        num = torch.stack([(value(theta + h * e, False) - value(theta - h * e, False)).sum() / (2 * h)
                           for e in torch.eye(4, dtype=torch.float64)])
        torch.testing.assert_close(grads[1], num, atol=1e-6, rtol=0)


def test_centre_moves_under_autograd_use_qr_and_fall_back_on_padded_bonds(mocker):
    # Sample 0 stays |0...0> (rank 1 on every bond), sample 1 entangles: the batch's shared bonds
    # are wider than sample 0's rank, so some moves see a singular R and must take the SVD; the
    # others take QR. Gradients of Σ<Z_q> equal the statevector's (exact) ones for both samples.
    import qlam_tn.mps_update as M

    n = 6
    g = torch.Generator().manual_seed(5)
    a1 = torch.rand(2, n, generator=g, dtype=torch.float64) * 3
    a2 = torch.rand(2, n, generator=g, dtype=torch.float64) * 3
    a1[0] = a2[0] = 0.0
    cz = qt.gates.CZ(dtype=torch.float64)

    def run(state):
        x1, x2 = a1.clone().requires_grad_(True), a2.clone().requires_grad_(True)
        for x in (x1, x2):
            state.apply_layer(qt.gates.RY(x.reshape(-1)).reshape(2, n, 2, 2))
            for q in list(range(0, n - 1, 2)) + list(range(1, n - 1, 2))[::-1]:
                state.apply(cz, (q, q + 1))
        loss = sum(state.expect(f"Z{q}").sum() for q in range(n))
        loss.backward()
        return x1.grad, x2.grad

    qr, svd = mocker.spy(torch.linalg, "qr"), mocker.spy(M, "svd")
    g_mps = run(qt.MPS.zeros(n, batch=2, cutoff=1e-12, dtype=torch.float64))
    assert 0 < svd.call_count < qr.call_count  # every move tries QR; some fall back
    g_sv = run(qt.StateVector.zeros(n, batch=2, dtype=torch.float64))
    for gm, gs in zip(g_mps, g_sv):
        assert torch.isfinite(gm).all()
        torch.testing.assert_close(gm, gs, atol=1e-8, rtol=0)
