"""``qlam_tn.environments`` against the dense state vector (numpy), on random batched MPS with
the centre at every site, real and complex, normalised or not."""
import itertools

import numpy as np
import pytest
import torch

import qlam_tn as qt
from qlam_tn import environments as env, mps_host, routes
from qlam_tn.measure import pauli_matrix

N, B = 6, 3
TOL = 1e-12
DTYPES = [torch.float64, torch.complex128]


def _random_mps(dtype, center, seed=0, n=N, batch=B, max_bond=None, scale=1.0):
    """A random state as an MPS with its centre at ``center``; ``scale`` multiplies the centre
    tensor (an unnormalised state)."""
    g = torch.Generator().manual_seed(seed)
    vec = torch.randn(batch, 2 ** n, dtype=dtype, generator=g)
    psi = qt.MPS.from_dense(vec / vec.norm(dim=-1, keepdim=True), max_bond=max_bond, cutoff=0.0)
    psi.move_center(center)
    ts = list(psi.tensors)
    ts[center] = ts[center] * scale
    return qt.MPS(ts, center, psi.policy)


def _dense(psi) -> np.ndarray:
    """``(B, 2, ..., 2)`` numpy amplitudes of the state (big-endian)."""
    v = psi.to_dense().detach().numpy()
    return v.reshape((v.shape[0],) + (2,) * psi.n_qubits)


def _dense_rdm(v: np.ndarray, qubits) -> np.ndarray:
    b, k = v.shape[0], len(qubits)
    m = np.moveaxis(v, [1 + q for q in qubits], list(range(1, 1 + k))).reshape(b, 2 ** k, -1)
    rho = m @ m.conj().transpose(0, 2, 1)
    return rho / np.trace(rho, axis1=1, axis2=2)[:, None, None]


def _dense_expect(v: np.ndarray, ops) -> np.ndarray:
    """``<v|Π O_q|v> / <v|v>`` (real part); an op may be ``(2, 2)`` or ``(B, 2, 2)``."""
    w = v.astype(np.complex128)
    for q, m in ops.items():
        m = np.asarray(m)
        w = np.moveaxis(w, 1 + q, -1)
        w = np.einsum("bji,b...i->b...j" if m.ndim == 3 else "ji,b...i->b...j", m, w)
        w = np.moveaxis(w, -1, 1 + q)
    b = v.shape[0]
    num = (v.conj().reshape(b, -1) * w.reshape(b, -1)).sum(-1)
    den = (abs(v.reshape(b, -1)) ** 2).sum(-1)
    return (num / den).real


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _check(got: torch.Tensor, want: np.ndarray, tol=TOL):
    np.testing.assert_allclose(_np(got), want, atol=tol, rtol=0)


# ----------------------------------------------------------------------------- density matrices

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("center", range(N))
def test_rdm1_and_every_rdm2_match_the_dense_state(dtype, center):
    psi = _random_mps(dtype, center, seed=center, scale=1.7)
    v = _dense(psi)
    e = env.MPSEnvironment(psi.tensors, psi.center)
    rho1 = env.rdm1(psi.tensors, psi.center)
    assert rho1.shape == (B, N, 2, 2) and rho1.dtype == dtype
    for q in range(N):
        _check(rho1[:, q], _dense_rdm(v, [q]))
    for i, j in itertools.permutations(range(N), 2):  # adjacent, distant, both orders
        _check(e.rdm2(i, j), _dense_rdm(v, [i, j]))
    _check(env.rdm2(psi.tensors, psi.center, 4, 1), _dense_rdm(v, [4, 1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("center", [0, 2, 5])
def test_k_site_marginals_and_probabilities_match_the_dense_state(dtype, center):
    psi = _random_mps(dtype, center, seed=10 + center, max_bond=3, scale=0.6)
    v = _dense(psi)
    e = env.MPSEnvironment(psi.tensors, psi.center)
    for qubits in [(0, 2, 5), (4, 1, 3), (3, 2, 1), (5, 0, 1, 3), (2,), tuple(range(N))]:
        rho = e.rdm(qubits)
        assert rho.shape == (B, 2 ** len(qubits), 2 ** len(qubits))
        want = _dense_rdm(v, list(qubits))
        _check(rho, want)
        _check(e.probs(qubits), np.real(np.diagonal(want, axis1=1, axis2=2)))
    _check(env.rdm(psi.tensors, psi.center, [5, 2, 0]), _dense_rdm(v, [5, 2, 0]))
    _check(env.probs(psi.tensors, psi.center, np.array([1, 4])),
           np.real(np.diagonal(_dense_rdm(v, [1, 4]), axis1=1, axis2=2)))


# ----------------------------------------------------------------------------- expectation values

def _hermitian(rng, complex_):
    m = rng.normal(size=(2, 2)) + (1j * rng.normal(size=(2, 2)) if complex_ else 0)
    return m + m.conj().T


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("center", [0, 3, 5])
def test_products_of_one_site_operators_match_the_dense_state(dtype, center):
    psi = _random_mps(dtype, center, seed=20 + center, scale=2.5)
    v = _dense(psi)
    rng = np.random.default_rng(center)
    e = env.MPSEnvironment(psi.tensors, psi.center)
    for sites in [(0,), (5,), (1, 4), (0, 2, 5), (center,), (3, 4)]:
        ops = {q: _hermitian(rng, complex_=bool(q % 2)) for q in sites}  # complex on a real state too
        got = e.expect_product({q: torch.as_tensor(m) for q, m in ops.items()})
        assert got.shape == (B,) and not got.is_complex()
        _check(got, _dense_expect(v, ops))
    per_sample = rng.normal(size=(B, 2, 2))
    per_sample = per_sample + per_sample.transpose(0, 2, 1)
    ops = {1: per_sample, 4: _hermitian(rng, True)}
    got = env.expect_product(psi.tensors, psi.center, {q: torch.as_tensor(m) for q, m in ops.items()})
    _check(got, _dense_expect(v, ops))
    _check(env.expect_product(psi.tensors, psi.center, {}), np.ones(B))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("center", [0, 2, 5])
def test_neighbour_correlators_of_any_pair_match_the_dense_state(dtype, center):
    psi = _random_mps(dtype, center, seed=30 + center, max_bond=4, scale=0.3)
    v = _dense(psi)
    rng = np.random.default_rng(center)
    a, b = _hermitian(rng, False), _hermitian(rng, True)
    got = env.neighbour_correlators(psi.tensors, psi.center, torch.as_tensor(a), torch.as_tensor(b))
    assert got.shape == (B, N - 1)
    want = np.stack([_dense_expect(v, {i: a, i + 1: b}) for i in range(N - 1)], axis=-1)
    _check(got, want)
    one = _random_mps(dtype, 0, n=1)
    assert env.neighbour_correlators(one.tensors, 0, torch.as_tensor(a), torch.as_tensor(b)).shape == (B, 0)


# ----------------------------------------------------------------------------- transfer matrices, overlaps

def _raw_tensors(dtype, bonds, seed, batch=B):
    """Random site tensors in no particular gauge, bond dimensions ``bonds`` (outer ones 1)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, bonds[k], 2, bonds[k + 1], dtype=dtype, generator=g) for k in range(len(bonds) - 1)]


def _raw_dense(ts) -> np.ndarray:
    v = _np(ts[0]).reshape(ts[0].shape[0], 2, -1)
    for t in ts[1:]:
        v = np.einsum("bpx,bxjy->bpjy", v, _np(t)).reshape(v.shape[0], -1, t.shape[3])
    return v.reshape(v.shape[0], -1)


@pytest.mark.parametrize("bra_dtype,ket_dtype", [(torch.float64, torch.float64), (torch.complex128, torch.complex128),
                                                 (torch.float64, torch.complex128), (torch.complex128, torch.float64)])
def test_overlap_matches_the_dense_inner_product(bra_dtype, ket_dtype):
    bra = _raw_tensors(bra_dtype, [1, 2, 4, 3, 2, 1], seed=1)
    ket = _raw_tensors(ket_dtype, [1, 2, 3, 5, 2, 1], seed=2)
    got = env.overlap(bra, ket)
    want = (_raw_dense(bra).conj() * _raw_dense(ket)).sum(-1)
    assert got.shape == (B,) and got.is_complex() == (bra_dtype.is_complex or ket_dtype.is_complex)
    np.testing.assert_allclose(_np(got), want, atol=1e-10, rtol=1e-12)
    np.testing.assert_allclose(_np(env.overlap(ket, bra)), want.conj(), atol=1e-10, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transfer_matrices_sweep_to_norms_and_expectations(dtype):
    ts = _raw_tensors(dtype, [1, 2, 4, 3, 1], seed=3)
    v = _raw_dense(ts)
    n2 = (abs(v) ** 2).sum(-1)
    z = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=dtype)
    left = right = None
    for t in ts:
        left = env.transfer_left(left, t)
    for t in reversed(ts):
        right = env.transfer_right(right, t)
    _check(left.reshape(-1).real, n2, tol=1e-10)
    _check(right.reshape(-1).real, n2, tol=1e-10)
    zsign = np.array([1.0, -1.0])
    want = ((abs(v.reshape(B, 2, 2, 2, 2)) ** 2) * zsign[None, None, :, None, None]).sum((1, 2, 3, 4))
    left = None
    for k, t in enumerate(ts):
        left = env.transfer_left(left, t, z if k == 1 else None)
    right = None
    for k in range(len(ts) - 1, -1, -1):
        right = env.transfer_right(right, ts[k], z if k == 1 else None)
    _check(left.reshape(-1).real, want, tol=1e-10)
    _check(right.reshape(-1).real, want, tol=1e-10)


def test_environments_are_built_once_and_identity_around_the_centre():
    psi = _random_mps(torch.complex128, 2)
    e = env.MPSEnvironment(psi.tensors, psi.center)
    assert e.left(0) is None and e.left(2) is None and e.right(2) is None and e.right(5) is None
    assert e.left(5) is e.left(5) and e.right(0) is e.right(0)
    # L[k] is the identity on the bond left of k for k <= center: the left sites are isometries.
    l3 = e.left(3)
    torch.testing.assert_close(l3, env.transfer_left(None, psi.tensors[2]), atol=0, rtol=0)


# ----------------------------------------------------------------------------- the numpy rdm1 sweep

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("n,max_bond", [(1, None), (2, None), (7, 3), (9, None)])
def test_host_rdm1_equals_the_torch_sweep_and_the_dense_state(dtype, batch, n, max_bond):
    for center in range(n):  # the centre at every site; bonds uneven where max_bond truncates
        psi = _random_mps(dtype, center, seed=60 + center, n=n, batch=batch, max_bond=max_bond, scale=0.6)
        v = _dense(psi)
        fast = mps_host.rdm1(psi.tensors, psi.center)
        ref = env.MPSEnvironment(psi.tensors, psi.center).rdm1_reference()
        assert fast.shape == (batch, n, 2, 2) and fast.dtype == dtype
        torch.testing.assert_close(fast, ref, atol=TOL, rtol=0)
        for q in range(n):
            _check(fast[:, q], _dense_rdm(v, [q]))


def test_rdm1_takes_the_numpy_sweep_only_outside_autograd_on_cpu_float64():
    psi = _random_mps(torch.complex128, 2, seed=70)
    ts = list(psi.tensors)
    assert routes.choose("rdm1", ts) == "host"
    with mps_host.disabled():
        assert routes.choose("rdm1", ts) == "torch"
        ref = env.rdm1(ts, 2)
    torch.testing.assert_close(env.rdm1(ts, 2), ref, atol=TOL, rtol=0)
    assert routes.choose("rdm1", [t.to(torch.complex64) for t in ts]) == "torch"
    centre = ts[2].clone().requires_grad_()
    grad_ts = ts[:2] + [centre] + ts[3:]
    assert routes.choose("rdm1", grad_ts) == "torch"
    rho = env.rdm1(grad_ts, 2)  # the torch sweep: a gradient flows to the centre
    assert rho.requires_grad
    with torch.no_grad():
        assert routes.choose("rdm1", grad_ts) == "host"
        torch.testing.assert_close(env.rdm1(grad_ts, 2), rho.detach(), atol=TOL, rtol=0)


# ----------------------------------------------------------------------------- the MPS methods of today

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("center", [0, 3, 5])
def test_equals_the_mps_methods(dtype, center):
    psi = _random_mps(dtype, center, seed=40 + center, max_bond=5)
    ts, c = psi.tensors, psi.center
    torch.testing.assert_close(env.rdm1(ts, c), psi.rdm1(), atol=TOL, rtol=0)
    for i, j in [(0, 1), (4, 1), (0, 5), (2, 3)]:
        torch.testing.assert_close(env.rdm2(ts, c, i, j), psi.rdm2(i, j), atol=TOL, rtol=0)
    z = pauli_matrix("Z", dtype, "cpu")
    torch.testing.assert_close(env.neighbour_correlators(ts, c, z, z), psi.neighbour_zz(), atol=TOL, rtol=0)
    for label in ["Z0", "X1 Y4", "Z0 X2 Z5", "Y3", "X5"]:
        ops = {q: pauli_matrix(p, dtype, "cpu") for q, p in qt.measure.parse_pauli(label, N).items()}
        torch.testing.assert_close(env.expect_product(ts, c, ops), psi.expect(label), atol=TOL, rtol=0)


# ----------------------------------------------------------------------------- autograd, dtypes, devices

def _dense_torch(ts):
    v = ts[0].reshape(ts[0].shape[0], 2, -1)
    for t in ts[1:]:
        v = torch.einsum("bpx,bxjy->bpjy", v, t).reshape(v.shape[0], -1, t.shape[3])
    return v.reshape(v.shape[0], -1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_equal_those_of_the_dense_reference(dtype):
    # The environments take the sites left and right of the centre as isometries (that is what
    # mixed-canonical form means), so the gradient is compared where the two formulas are the same
    # function: with respect to the centre tensor, the other sites held fixed.
    psi = _random_mps(dtype, 2, seed=50, n=4)
    fixed = [t.detach() for t in psi.tensors]
    y = torch.tensor([[0, -1j], [1j, 0]], dtype=torch.complex128)
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    weights = torch.arange(1, 1 + 16, dtype=torch.float64).reshape(4, 4)

    def by_env(centre):
        e = env.MPSEnvironment(fixed[:2] + [centre] + fixed[3:], 2)
        rho = e.rdm((3, 0))
        return ((rho.real * weights).sum() + (rho.imag.sum() if rho.is_complex() else 0)
                + e.expect_product({0: y, 3: x}).sum() + e.rdm1()[:, 3, 0, 1].real.sum())

    def by_dense(centre):
        v = _dense_torch(fixed[:2] + [centre] + fixed[3:])
        n2 = (v.conj() * v).real.sum(-1)
        w = v.reshape(B, 2, 2, 2, 2)
        m = w.permute(0, 4, 1, 2, 3).reshape(B, 4, 4)  # rows 2*b3 + b0
        rho = m @ m.conj().mT / n2[:, None, None]
        wc = w.to(torch.complex128)
        yx = torch.einsum("ji,bklmi->bklmj", x.to(torch.complex128), torch.einsum("ji,biklm->bjklm", y, wc))
        ex = (wc.conj() * yx).sum((1, 2, 3, 4)).real / n2
        m3 = w.permute(0, 4, 1, 2, 3).reshape(B, 2, 8)
        rho3 = m3 @ m3.conj().mT / n2[:, None, None]
        return ((rho.real * weights).sum() + (rho.imag.sum() if rho.is_complex() else 0)
                + ex.sum() + rho3[:, 0, 1].real.sum())

    c_env = fixed[2].clone().requires_grad_()
    c_dense = fixed[2].clone().requires_grad_()
    f_env, f_dense = by_env(c_env), by_dense(c_dense)
    torch.testing.assert_close(f_env, f_dense, atol=1e-12, rtol=0)
    (g_env,), (g_dense,) = torch.autograd.grad(f_env, c_env), torch.autograd.grad(f_dense, c_dense)
    torch.testing.assert_close(g_env, g_dense, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_overlap_gradients_equal_those_of_the_dense_inner_product(dtype):
    bra = [t.requires_grad_() for t in _raw_tensors(dtype, [1, 2, 3, 2, 1], seed=4)]
    ket = [t.requires_grad_() for t in _raw_tensors(dtype, [1, 2, 2, 2, 1], seed=5)]
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def loss(ov):
        return (ov.real * weights).sum() + (ov.imag.sum() if ov.is_complex() else 0)

    g_env = torch.autograd.grad(loss(env.overlap(bra, ket)), bra + ket)
    g_dense = torch.autograd.grad(loss((_dense_torch(bra).conj() * _dense_torch(ket)).sum(-1)), bra + ket)
    for a, b in zip(g_env, g_dense):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype,cdtype", [(torch.float32, torch.complex64), (torch.complex64, torch.complex64)])
def test_results_follow_the_state_dtype(dtype, cdtype):
    psi = _random_mps(torch.float64 if dtype == torch.float32 else torch.complex128, 1).to(dtype=dtype)
    v = _dense(psi.to(dtype=torch.complex128))
    e = env.MPSEnvironment(psi.tensors, psi.center)
    real = torch.float32
    assert e.rdm1().dtype == dtype and e.rdm((0, 4)).dtype == dtype and e.probs((2,)).dtype == real
    y = pauli_matrix("Y", torch.complex128, "cpu")  # a complex128 operator is taken at the state's precision
    got = e.expect_product({3: y})
    assert got.dtype == real
    _check(got, _dense_expect(v, {3: _np(y)}), tol=1e-5)
    assert env.neighbour_correlators(psi.tensors, psi.center, y, y).dtype == real
    assert env.overlap(psi.tensors, psi.tensors).dtype == dtype


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_on_cuda_matches_cpu(dtype):
    psi = _random_mps(dtype, 2, seed=60)
    gpu = [t.cuda() for t in psi.tensors]
    z = pauli_matrix("Z", dtype, "cpu")
    for got, want in [(env.rdm1(gpu, 2), env.rdm1(psi.tensors, 2)),
                      (env.rdm(gpu, 2, (5, 0, 3)), env.rdm(psi.tensors, 2, (5, 0, 3))),
                      (env.expect_product(gpu, 2, {0: z, 4: z}), env.expect_product(psi.tensors, 2, {0: z, 4: z})),
                      (env.overlap(gpu, gpu), env.overlap(psi.tensors, psi.tensors))]:
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), want, atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- refusals

def test_clear_errors():
    psi = qt.MPS.zeros(11, batch=2)
    ts, c = psi.tensors, psi.center
    with pytest.raises(ValueError, match="at most 10"):
        env.rdm(ts, c, range(11))
    with pytest.raises(ValueError, match="at most 10"):
        env.probs(ts, c, range(11))
    assert env.probs(ts, c, range(10)).shape == (2, 2 ** 10)
    with pytest.raises(ValueError, match="repeated qubit"):
        env.rdm(ts, c, (1, 3, 1))
    with pytest.raises(ValueError, match="repeated qubit"):
        env.rdm2(ts, c, 2, 2)
    with pytest.raises(ValueError, match="out of range"):
        env.rdm2(ts, c, 0, 11)
    with pytest.raises(ValueError, match="at least one qubit"):
        env.rdm(ts, c, ())
    with pytest.raises(ValueError, match="one-site operator"):
        env.expect_product(ts, c, {0: torch.eye(4)})
    with pytest.raises(ValueError, match="one-site operator"):
        env.neighbour_correlators(ts, c, torch.eye(2).expand(3, 2, 2), torch.eye(2))
    with pytest.raises(ValueError, match="center 11 out of range"):
        env.MPSEnvironment(ts, 11)
    with pytest.raises(ValueError, match="expected shape"):
        env.rdm1([torch.zeros(2, 1, 3, 1)], 0)
    with pytest.raises(ValueError, match="6 and 11 qubits"):
        env.overlap(qt.MPS.zeros(6, batch=2).tensors, ts)
    with pytest.raises(ValueError, match="batches 3 and 2"):
        env.overlap(qt.MPS.zeros(11, batch=3).tensors, ts)
