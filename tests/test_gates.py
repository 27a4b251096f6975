"""Gate matrices against their definitions (matrix exponentials, textbook forms)."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

import qlam_tn.gates as G

X = np.array([[0, 1], [1, 0]], dtype=complex)
Y = np.array([[0, -1j], [1j, 0]])
Z = np.diag([1.0 + 0j, -1.0])


@pytest.mark.parametrize("theta", [0.0, 0.37, -2.1, math.pi])
def test_rotations_are_matrix_exponentials(theta):
    for build, P in ((G.RX, X), (G.RY, Y), (G.RZ, Z)):
        np.testing.assert_allclose(build(theta).numpy(), scipy.linalg.expm(-0.5j * theta * P), atol=1e-14)
    for build, P in ((G.RXX, np.kron(X, X)), (G.RYY, np.kron(Y, Y)), (G.RZZ, np.kron(Z, Z))):
        np.testing.assert_allclose(build(theta).numpy(), scipy.linalg.expm(-0.5j * theta * P), atol=1e-14)


def test_controlled_and_u3():
    t, p, l = 0.3, -1.2, 2.2
    u3 = np.array([[math.cos(t / 2), -np.exp(1j * l) * math.sin(t / 2)],
                   [np.exp(1j * p) * math.sin(t / 2), np.exp(1j * (p + l)) * math.cos(t / 2)]])
    np.testing.assert_allclose(G.U3(t, p, l).numpy(), u3, atol=1e-14)
    for build in (G.RX, G.RY, G.RZ):
        c = build(t).numpy()
        want = np.eye(4, dtype=complex)
        want[2:, 2:] = c
        np.testing.assert_allclose(getattr(G, "C" + build.__name__)(t).numpy(), want, atol=1e-14)
    np.testing.assert_allclose(G.PHASE(t).numpy(), np.diag([1, np.exp(1j * t)]), atol=1e-14)


def test_fixed_gates_and_identities():
    np.testing.assert_allclose((G.H() @ G.Z() @ G.H()).numpy(), X, atol=1e-14)
    np.testing.assert_allclose((G.S() @ G.S()).numpy(), Z, atol=1e-14)
    np.testing.assert_allclose((G.T() @ G.T()).numpy(), G.S().numpy(), atol=1e-14)
    np.testing.assert_allclose((G.SX() @ G.SX()).numpy(), X, atol=1e-14)
    np.testing.assert_allclose(G.ISWAP().numpy(), scipy.linalg.expm(0.25j * math.pi * (np.kron(X, X) + np.kron(Y, Y))),
                               atol=1e-14)
    for g in (G.H, G.X, G.Y, G.Z, G.S, G.T, G.SX, G.CNOT, G.CZ, G.SWAP, G.ISWAP):
        assert G.is_unitary(g().to(torch.complex128))


def test_real_gates_are_real_and_batched_shapes():
    assert G.RY(0.2).dtype == torch.float64 and G.CZ().dtype == torch.float64
    assert G.RX(0.2).dtype == torch.complex128
    th = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    g = G.CRY(th)
    assert g.shape == (3, 4, 4)
    np.testing.assert_allclose(g[1].numpy(), G.CRY(0.2).numpy(), atol=1e-15)
    assert G.RX(torch.tensor([0.1], dtype=torch.float32)).dtype == torch.complex64


def test_angle_gradients_flow():
    th = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    (G.RY(th)[1, 0]).backward()
    assert abs(th.grad.item() - 0.5 * math.cos(0.2)) < 1e-14


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor([0.1, float("nan")])])
def test_nonfinite_angles_rejected(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        G.RX(bad)


def test_bad_angle_types():
    with pytest.raises(TypeError):
        G.RY("0.3")
    with pytest.raises(ValueError):
        G.RY(torch.zeros(2, 2))
    with pytest.raises(TypeError):
        G.RX(0.1, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
def test_is_unitary_decides_as_torchs_allclose(dtype):
    """The numpy check on CPU tensors against the plain rule, |U†U - I| <= atol everywhere (torch)."""
    rng = np.random.default_rng(0)
    q = torch.tensor(np.linalg.qr(rng.normal(size=(5, 4, 4)) + 1j * rng.normal(size=(5, 4, 4)))[0])
    base = q if dtype.is_complex else torch.tensor(np.linalg.qr(rng.normal(size=(5, 4, 4)))[0])
    nan = base.clone()
    nan[2, 1, 1] = float("nan")
    cases = [base, base * (1 + 3e-6), base * (1 + 3e-4), base.conj(), -base, base[:0], nan,
             torch.zeros(3, 2, 2), torch.eye(2).expand(6, 2, 2)]
    for g in cases:
        g = g.to(dtype)
        prod = g.conj().transpose(-2, -1) @ g
        want = bool(torch.allclose(prod, torch.eye(g.shape[-1], dtype=dtype).expand_as(prod), atol=1e-4, rtol=0))
        assert G.is_unitary(g, atol=1e-4) == want
    assert G.is_unitary(base.to(dtype), atol=1e-4) and not G.is_unitary(nan.to(dtype), atol=1e-4)
    assert not G.is_unitary(base.to(dtype) * (1 + 3e-4), atol=1e-4)
    if dtype == torch.float64:
        assert G.is_unitary(base * (1 + 3e-6), atol=1e-4) and not G.is_unitary(base * (1 + 3e-6), atol=1e-8)
    # at the boundary: |U†U - I| = atol exactly in the gate's own precision (torch compares in it)
    edge = torch.tensor([[1.0, 1e-3], [0.0, 1.0]], dtype=dtype)
    prod = edge.conj().T @ edge
    assert G.is_unitary(edge, atol=1e-3) == bool(torch.allclose(prod, torch.eye(2, dtype=dtype), atol=1e-3, rtol=0))
