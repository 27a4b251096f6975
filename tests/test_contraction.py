"""Tests of ``qlam_tn.contraction``: planner, plan cache, FLOP accounting, exact oracle.

Every value is checked against an independent reference: ``torch.einsum`` / ``numpy.einsum``
for the planner, hand counts for FLOPs, and a small dense simulator written here (checked
itself against the definition of a gate on chosen qubits) for the oracle. The last section
holds the oracle against the engine's MPS.
"""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qlam_tn
from qlam_tn.contraction import (
    cache_info,
    clear_cache,
    contract,
    measure_matmul_peak,
    plan,
    readout_cost,
    set_cache_maxsize,
    token_update_cost,
)
from qlam_tn.contraction import oracle
from qlam_tn.contraction.cost import bond_dims, brickwork_pairs, qr_flops, svd_flops
from qlam_tn.contraction.planner import DEFAULT_CACHE_MAXSIZE


@pytest.fixture
def fresh_cache():
    clear_cache()
    yield
    set_cache_maxsize(DEFAULT_CACHE_MAXSIZE)
    clear_cache()


def _rand(shape, dtype, requires_grad=False):
    t = torch.randn(tuple(shape), dtype=dtype)
    return t.requires_grad_(requires_grad)


# ---------------------------------------------------------------------------- planner

# (equation, shapes) at engine-like sizes: B=3, chi 4/5
EQUATIONS = [
    ("bixj,bjyk->bixyk", [(3, 4, 2, 5), (3, 5, 2, 4)]),  # two-site merge
    ("bpqxy,blxyr->blpqr", [(3, 2, 2, 2, 2), (3, 4, 2, 2, 5)]),  # 2q gate on theta
    ("bklij,bxiy,byjz->bxklz", [(3, 2, 2, 2, 2), (3, 4, 2, 5), (3, 5, 2, 4)]),  # fused
    ("bxw,bxiy,ji,bwjz->byz", [(3, 4, 4), (3, 4, 2, 5), (2, 2), (3, 4, 2, 5)]),  # env + op
    ("blpr,blqr->bpq", [(3, 4, 2, 5), (3, 4, 2, 5)]),  # 1-site rdm
    ("...ij,...jk", [(3, 2, 4, 5), (2, 5, 3)]),  # ellipsis, implicit output
    ("bii->bi", [(3, 4, 4)]),  # diagonal
    ("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)]),  # chain
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("equation,shapes", EQUATIONS)
def test_contract_matches_einsum_values_and_gradients(fresh_cache, equation, shapes, dtype):
    ops = [_rand(s, dtype, requires_grad=True) for s in shapes]
    got = contract(equation, *ops)
    ref = torch.einsum(equation, *ops)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)

    w = _rand(ref.shape, dtype)
    g_got = torch.autograd.grad((got * w.conj()).real.sum(), ops)
    g_ref = torch.autograd.grad((ref * w.conj()).real.sum(), ops)
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_strategy_einsum_for_pairs_pairwise_for_more(fresh_cache):
    assert plan("bixj,bjyk->bixyk", (1, 4, 2, 4), (1, 4, 2, 4)).strategy == "einsum"
    p = plan("bxw,bxiy,ji,bwjz->byz", (1, 4, 4), (1, 4, 2, 4), (2, 2), (1, 4, 2, 4))
    assert p.strategy == "pairwise" and len(p.path) == 3


@st.composite
def _random_einsum(draw):
    """A random einsum over labels 'abcdef' with sizes 1-3: (equation, shapes)."""
    sizes = dict(zip("abcdef", draw(st.lists(st.integers(1, 3), min_size=6, max_size=6))))
    n_ops = draw(st.integers(1, 4))
    terms = [
        "".join(draw(st.lists(st.sampled_from("abcdef"), min_size=0, max_size=4)))
        for _ in range(n_ops)
    ]
    used = sorted(set("".join(terms)))
    out = draw(st.permutations(used))[: draw(st.integers(0, len(used)))]
    equation = ",".join(terms) + "->" + "".join(out)
    return equation, [tuple(sizes[c] for c in t) for t in terms]


@settings(max_examples=60, deadline=None)
@given(_random_einsum(), st.sampled_from([torch.float64, torch.complex128]))
def test_contract_matches_numpy_einsum_on_random_equations(case, dtype):
    equation, shapes = case
    ops = [_rand(s, dtype) for s in shapes]
    ref = np.einsum(equation, *[o.numpy() for o in ops])
    got = contract(equation, *ops)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_contract_on_views_and_non_contiguous_operands(fresh_cache):
    a = _rand((3, 5, 2, 4), torch.complex128).transpose(1, 3)  # (3, 4, 2, 5), strided
    b = _rand((3, 5, 2, 4), torch.complex128)
    torch.testing.assert_close(contract("bixj,bjyk->bixyk", a, b), torch.einsum("bixj,bjyk->bixyk", a, b))


@pytest.mark.cuda
def test_contract_on_cuda_matches_cpu(fresh_cache):
    for equation, shapes in EQUATIONS:
        ops = [_rand(s, torch.complex128) for s in shapes]
        dev = [o.cuda().requires_grad_() for o in ops]
        got = contract(equation, *dev)
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), torch.einsum(equation, *ops), rtol=1e-12, atol=1e-12)
        grads = torch.autograd.grad(got.abs().sum(), dev)
        assert all(g.device.type == "cuda" and torch.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------------------- cache

def test_cache_plans_each_signature_once(fresh_cache):
    eq = "bixj,bjyk->bixyk"
    a, b = _rand((2, 4, 2, 4), torch.float64), _rand((2, 4, 2, 4), torch.float64)
    for _ in range(3):
        contract(eq, a, b)
    info = cache_info()
    assert (info.misses, info.hits, info.size) == (1, 2, 1)

    # plan() with the same signature returns the very plan contract runs
    p = plan(eq, (2, 4, 2, 4), (2, 4, 2, 4), dtype=torch.float64)
    assert cache_info().hits == 3 and p.flops == 2 * 2 * 4 * 2 * 4 * 2 * 4

    contract(eq, _rand((3, 4, 2, 4), torch.float64), _rand((3, 4, 2, 4), torch.float64))  # shapes
    contract(eq, a.to(torch.complex128), b.to(torch.complex128))  # dtype
    info = cache_info()
    assert (info.misses, info.size) == (3, 3)


def test_cache_bound_evicts_least_recently_used(fresh_cache):
    set_cache_maxsize(2)
    shapes = {k: ((k, 2), (2, 3)) for k in (1, 2, 3)}
    plan("ab,bc->ac", *shapes[1])
    plan("ab,bc->ac", *shapes[2])
    plan("ab,bc->ac", *shapes[1])  # 1 is now the most recent
    plan("ab,bc->ac", *shapes[3])  # evicts 2
    info = cache_info()
    assert (info.size, info.maxsize, info.evictions, info.misses, info.hits) == (2, 2, 1, 3, 1)
    plan("ab,bc->ac", *shapes[1])
    assert cache_info().hits == 2
    plan("ab,bc->ac", *shapes[2])  # re-planned
    assert cache_info().misses == 4
    set_cache_maxsize(1)
    assert cache_info().size == 1
    with pytest.raises(ValueError, match="maxsize"):
        set_cache_maxsize(0)


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "equation,shapes,match",
    [
        ("bixj,bjyk->bixyk", [(1, 4, 2, 4), (1, 5, 2, 4)], r"index 'j' has size 4 .* size 5"),
        ("ab,bc->ac", [(2, 3), (1, 4)], r"index 'b' has size 3 .* size 1"),
        ("ab,bc->a-c", [(2, 3), (3, 4)], "does not parse"),
        ("ab,bc->ac->a", [(2, 3), (3, 4)], "more than one '->'"),
        ("a1,bc->ac", [(2, 3), (3, 4)], "must be ASCII letters"),
        ("ab,bc->ad", [(2, 3), (3, 4)], "output index 'd' does not appear"),
        ("ab,bc->aa", [(2, 3), (3, 4)], "output index 'a' is repeated"),
        ("ab,bc,cd->ad", [(2, 3), (3, 4)], "3 input term"),
        ("ab->ab", [(2, 3), (3, 4)], "1 input term"),
        ("abc,bc->a", [(2, 3), (3, 4)], "operand 0 has 2 dimension"),
        ("a...b...->ab", [(2, 3)], "more than one ellipsis"),
        ("a.b->ab", [(2, 3)], r"contains '\.'"),
        ("", [(2,)], "0 index label|1 dimension"),
    ],
)
def test_bad_equations_raise_clear_value_errors(fresh_cache, equation, shapes, match):
    ops = [torch.ones(s) for s in shapes]
    with pytest.raises(ValueError, match=match):
        contract(equation, *ops)
    with pytest.raises(ValueError, match=match):
        plan(equation, *shapes)
    assert cache_info().size == 0  # nothing half-planned is kept


def test_bad_operands_raise(fresh_cache):
    with pytest.raises(ValueError, match="operand 0 is torch.float64 but operand 1 is torch.complex128"):
        contract("ab,bc->ac", torch.ones(2, 3, dtype=torch.float64), torch.ones(3, 4, dtype=torch.complex128))
    with pytest.raises(TypeError, match="ndarray"):
        contract("ab,bc->ac", np.ones((2, 3)), np.ones((3, 4)))
    with pytest.raises(TypeError, match="list"):
        contract("ab,bc->ac", torch.ones(2, 3), [[1.0]])
    with pytest.raises(ValueError, match="at least one operand"):
        contract("->")
    with pytest.raises(ValueError, match="equation must be a string"):
        contract(None, torch.ones(2))
    with pytest.raises(ValueError, match="non-negative ints"):
        plan("ab", (2, -1))
    with pytest.raises(ValueError, match="torch.dtype"):
        plan("ab", (2, 1), dtype="float64")


# ---------------------------------------------------------------------------- FLOPs

@pytest.mark.parametrize("dtype,madd", [(torch.float64, 2), (torch.float32, 2), (torch.complex128, 8)])
def test_two_site_gate_flops_match_hand_count(fresh_cache, dtype, madd):
    B, l, m, r = 3, 4, 5, 6
    # applying a (B,2,2,2,2) gate to theta (B,l,2,2,r): every output element (B*l*2*2*r of
    # them) sums over the two input legs x, y (4 terms)
    p = plan("bpqxy,blxyr->blpqr", (B, 2, 2, 2, 2), (B, l, 2, 2, r), dtype=dtype)
    assert p.flops == madd * (B * l * 2 * 2 * r) * 4
    assert p.largest_intermediate == B * l * 4 * r and p.path == [(0, 1)]
    assert p.largest_intermediate_bytes == B * l * 4 * r * dtype.itemsize

    # the fused update (gate, A_i, A_i+1): merging the sites first costs B*l*2*m*2*r madds,
    # then the gate B*l*4*4*r; the other order (gate into A_i first) costs
    # B*4*2*l*m + B*l*4*r*2*m = 4608 madds, more than the 1920 + 1152 of merge-first
    p = plan("bklij,bxiy,byjz->bxklz", (B, 2, 2, 2, 2), (B, l, 2, m), (B, m, 2, r), dtype=dtype)
    merge, gate = B * l * 2 * m * 2 * r, B * l * 16 * r
    assert (merge, gate) == (1440, 1152)
    assert p.flops == madd * (merge + gate)
    assert p.path == [(1, 2), (0, 1)]
    assert p.largest_intermediate == B * l * 4 * r
    assert p.naive_flops > p.flops


def test_qr_and_svd_estimates():
    # square QR: 4n^3 - 4n^3/3 = 8n^3/3; m >= n thin QR: 4mn^2 - 4n^3/3
    assert qr_flops(3, 3, real=True) == 72
    assert qr_flops(6, 3, real=True) == 4 * 6 * 9 - 36
    assert qr_flops(6, 3, real=False) == 4 * qr_flops(6, 3, real=True)
    # wide QR: geqrf 2nm^2 - 2m^3/3 plus orgqr of the m x m Q, 4m^3/3
    assert qr_flops(3, 6, real=True) == 2 * 6 * 9 - 18 + 36
    # thin SVD, Golub-Reinsch: 14mn^2 + 8n^3, transposed for wide matrices
    assert svd_flops(6, 4, real=True) == 14 * 6 * 16 + 8 * 64 == svd_flops(4, 6, real=True)
    assert svd_flops(6, 4) == 4 * svd_flops(6, 4, real=True)


def test_token_update_cost_matches_planned_contractions(fresh_cache):
    n, chi, B, depth = 7, 4, 3, 2
    bonds = bond_dims(n, chi)
    assert bonds == [1, 2, 4, 4, 4, 4, 2, 1]
    pairs = brickwork_pairs(n)
    assert pairs == [(0, 1), (2, 3), (4, 5), (1, 2), (3, 4), (5, 6)]
    for real, dtype in [(True, torch.float64), (False, torch.complex128)]:
        cost = token_update_cost(n, chi, B, depth=depth, real=real)
        f = lambda eq, *shapes: plan(eq, *shapes, dtype=dtype).flops  # noqa: E731
        rot = sum(f("bpq,blqr->blpr", (B, 2, 2), (B, bonds[i], 2, bonds[i + 1])) for i in range(n))
        merge = sum(
            f("blxm,bmyr->blxyr", (B, bonds[i], 2, bonds[i + 1]), (B, bonds[i + 1], 2, bonds[i + 2]))
            for i, _ in pairs
        )
        gate = sum(
            f("bpqxy,blxyr->blpqr", (B, 2, 2, 2, 2), (B, bonds[i], 2, 2, bonds[i + 2]))
            for i, _ in pairs
        )
        assert cost.breakdown["rotations"] == rot
        assert cost.breakdown["merge"] == depth * merge
        assert cost.breakdown["gate"] == depth * gate
        svd = sum(
            B * svd_flops(2 * bonds[i], 2 * bonds[i + 2], real)
            + (1 if real else 2) * B * bonds[i + 1] * 2 * bonds[i + 2]
            for i, _ in pairs
        )
        assert cost.breakdown["svd"] == depth * svd
        assert cost.flops == sum(cost.breakdown.values()) == cost.as_dict()["total"]

        read = readout_cost(n, chi, B, real=real)
        rdm = sum(f("blpr,blqr->bpq", (B, bonds[i], 2, bonds[i + 1]), (B, bonds[i], 2, bonds[i + 1]))
                  for i in range(n))
        assert read.breakdown["rdm"] == rdm
        assert read.flops == sum(read.breakdown.values())

    complex_cost = token_update_cost(n, chi, B, depth=depth)
    real_cost = token_update_cost(n, chi, B, depth=depth, real=True)
    for part in ("rotations", "merge", "gate", "canonicalize"):
        assert complex_cost.breakdown[part] == 4 * real_cost.breakdown[part]
    assert token_update_cost(n, chi, 2 * B, depth=depth).flops == 2 * complex_cost.flops
    assert token_update_cost(n, chi, B, depth=0).flops == complex_cost.breakdown["rotations"]


def test_cost_bad_config():
    with pytest.raises(ValueError, match="chi"):
        token_update_cost(8, 0, 1)
    with pytest.raises(ValueError, match="adjacent pair"):
        token_update_cost(8, 4, 1, pairs=[(0, 2)])
    with pytest.raises(ValueError, match="n_qubits"):
        readout_cost(0, 4, 1)


def test_measure_matmul_peak_reports_positive_rates():
    peak = measure_matmul_peak(dtypes=(torch.float64, torch.float32), sizes=(32, 64), min_time=0.005)
    assert set(peak.gflops) == {"float64", "float32"}
    assert set(peak.table) == {(d, s) for d in ("float64", "float32") for s in (32, 64)}
    assert all(g > 0 for g in peak.table.values())
    assert peak.gflops["float64"] == max(peak.table[("float64", s)] for s in (32, 64))


# ---------------------------------------------------------------------------- dense reference

def _apply_dense(psi, gate, qubits):
    """Apply a 2^k x 2^k gate to axes ``qubits`` of psi (2,)*n; row index big-endian in qubits."""
    k = len(qubits)
    g = np.asarray(gate, dtype=np.complex128).reshape((2,) * (2 * k))
    out = np.tensordot(g, psi, axes=(list(range(k, 2 * k)), list(qubits)))
    return np.moveaxis(out, list(range(k)), list(qubits))


def _dense_state(n, ops):
    psi = np.zeros((2,) * n, dtype=np.complex128)
    psi[(0,) * n] = 1
    for gate, qubits in ops:
        if hasattr(gate, "detach"):
            gate = gate.detach().numpy()
        qubits = (qubits,) if isinstance(qubits, int) else tuple(qubits)
        psi = _apply_dense(psi, gate, qubits)
    return psi


_PAULI = {
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]]),
    "Z": np.diag([1.0 + 0j, -1.0]),
}


def _dense_expectation(psi, terms):
    phi = psi
    for q, p in terms.items():
        phi = _apply_dense(phi, _PAULI[p], (q,))
    return float(np.vdot(psi.ravel(), phi.ravel()).real)


def _random_unitary(d, rng, strength=None):
    """Haar-random U(d), or exp(i * strength * H) for a random Hermitian H (near identity)."""
    z = (rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))) / math.sqrt(2)
    if strength is None:
        q, r = np.linalg.qr(z)
        return q * (np.diag(r) / np.abs(np.diag(r)))
    w, v = np.linalg.eigh((z + z.conj().T) / 2)
    return (v * np.exp(1j * strength * w)) @ v.conj().T


def _brickwork_ops(n, layers, rng, strength=None, as_torch=True):
    """``layers`` x (a 1-qubit gate on every qubit, then 2-qubit gates on (0,1),(2,3),... and
    (1,2),(3,4),...)."""
    conv = torch.from_numpy if as_torch else (lambda a: a)
    ops = []
    for _ in range(layers):
        ops += [(conv(_random_unitary(2, rng, strength)), (q,)) for q in range(n)]
        for start in (0, 1):
            ops += [(conv(_random_unitary(4, rng, strength)), (q, q + 1)) for q in range(start, n - 1, 2)]
    return ops


def test_dense_reference_matches_gate_definition():
    """The reference simulator against <x'|G_q|x> = G[x'_q, x_q] * delta(x' = x off q)."""
    rng = np.random.default_rng(0)
    n = 4
    for qubits in [(0,), (2,), (0, 1), (3, 1), (2, 0, 3)]:
        k = len(qubits)
        g = _random_unitary(2**k, rng)
        full = np.zeros((2**n, 2**n), dtype=complex)
        for xo, xi in itertools.product(itertools.product((0, 1), repeat=n), repeat=2):
            if all(xo[q] == xi[q] for q in range(n) if q not in qubits):
                row = int("".join(str(xo[q]) for q in qubits), 2)
                col = int("".join(str(xi[q]) for q in qubits), 2)
                full[int("".join(map(str, xo)), 2), int("".join(map(str, xi)), 2)] = g[row, col]
        psi = rng.normal(size=2**n) + 1j * rng.normal(size=2**n)
        got = _apply_dense(psi.reshape((2,) * n), g, qubits).ravel()
        np.testing.assert_allclose(got, full @ psi, atol=1e-12)


# ---------------------------------------------------------------------------- oracle

def _random_circuit(n, n_gates, rng):
    ops = []
    for k in range(n_gates):
        width = 1 if n == 1 else int(rng.choice([1, 2, 2, 3] if n >= 3 else [1, 2]))
        qubits = tuple(int(q) for q in rng.choice(n, size=width, replace=False))
        g = _random_unitary(2**width, rng)
        # torch (some tracking gradients) and numpy gates both accepted
        gate = torch.from_numpy(g).requires_grad_(k % 3 == 0) if k % 2 == 0 else g
        ops.append((gate, qubits))
    return ops


def _random_pauli(n, rng):
    k = int(rng.integers(1, min(n, 3) + 1))
    qubits = rng.choice(n, size=k, replace=False)
    return {int(q): str(rng.choice(list("XYZ"))) for q in qubits}


@pytest.mark.parametrize("n,seed", [(1, 0), (2, 1), (5, 2), (9, 3), (12, 4)])
def test_oracle_matches_dense_statevector(n, seed):
    rng = np.random.default_rng(seed)
    ops = _random_circuit(n, 3 * n + 4, rng)
    ref = _dense_state(n, ops)
    circ = oracle.ExactCircuit(n, ops)

    np.testing.assert_allclose(circ.statevector(), ref.ravel(), rtol=0, atol=1e-10)
    for _ in range(4):
        bits = [int(b) for b in rng.integers(0, 2, size=n)]
        assert abs(circ.amplitude(bits) - ref[tuple(bits)]) < 1e-10
        assert abs(oracle.amplitude(n, ops, "".join(map(str, bits))) - ref[tuple(bits)]) < 1e-10
    for _ in range(4):
        terms = _random_pauli(n, rng)
        want = _dense_expectation(ref, terms)
        as_str = " ".join(f"{p}{q}" for q, p in terms.items())
        assert abs(circ.expectation(as_str) - want) < 1e-10
        assert abs(oracle.expectation(n, ops, terms) - want) < 1e-10


def test_oracle_qubit_order_is_big_endian():
    X = np.array([[0, 1], [1, 0]])
    CNOT = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    H = np.array([[1, 1], [1, -1]]) / math.sqrt(2)
    # X on qubit 0 gives |10>, index 2; CNOT(0 -> 1) then gives |11>
    assert abs(oracle.statevector(2, [(X, 0)])[2] - 1) < 1e-14
    assert abs(oracle.amplitude(2, [(X, 0), (CNOT, (0, 1))], "11") - 1) < 1e-14
    # with the control on qubit 1 (still |0>), nothing flips
    assert abs(oracle.amplitude(2, [(X, 0), (CNOT, (1, 0))], "10") - 1) < 1e-14
    bell = [(H, 0), (CNOT, (0, 1))]
    assert abs(oracle.expectation(2, bell, "Z0 Z1") - 1) < 1e-12
    assert abs(oracle.expectation(2, bell, "X0 X1") - 1) < 1e-12
    assert abs(oracle.expectation(2, bell, "Y0 Y1") + 1) < 1e-12
    assert abs(oracle.expectation(2, bell, "Z1")) < 1e-12
    assert oracle.expectation(2, bell, "I0") == 1.0


def _light_cone_window(n, ops, qubits):
    """Qubits in the backward light cone of ``qubits`` (walking the ops backwards)."""
    cone = set(qubits)
    for _, qs in reversed(ops):
        if cone & set(qs):
            cone |= set(qs)
    return sorted(cone)


def test_oracle_light_cone_expectations_at_60_qubits():
    """On 60 qubits, <P> equals a dense simulation of just the light-cone window."""
    rng = np.random.default_rng(7)
    n = 60
    ops = _brickwork_ops(n, 3, rng)
    circ = oracle.ExactCircuit(n, ops)
    for terms in ({0: "Z"}, {30: "X", 31: "Z"}, {59: "Y"}):
        window = _light_cone_window(n, ops, terms)
        assert len(window) <= 16
        where = {q: k for k, q in enumerate(window)}
        sub = [(g, tuple(where[q] for q in qs)) for g, qs in ops if set(qs) <= set(window)]
        ref = _dense_expectation(_dense_state(len(window), sub), {where[q]: p for q, p in terms.items()})
        assert abs(circ.expectation(terms) - ref) < 1e-10


def test_oracle_amplitude_at_40_qubits_factorises_over_blocks():
    """Four 10-qubit blocks without gates between them: the amplitude is the product."""
    rng = np.random.default_rng(8)
    blocks = [_brickwork_ops(10, 2, rng) for _ in range(4)]
    # gates of different blocks commute: interleave the blocks (round robin), each in order
    shifted = [[(g, tuple(q + 10 * b for q in qs)) for g, qs in block] for b, block in enumerate(blocks)]
    ops = [op for layer in itertools.zip_longest(*shifted) for op in layer if op is not None]
    bits = rng.integers(0, 2, size=40)
    ref = np.prod([_dense_state(10, block)[tuple(bits[10 * b: 10 * b + 10])]
                   for b, block in enumerate(blocks)])
    got = oracle.amplitude(40, ops, "".join(map(str, bits)))
    assert abs(got - ref) <= 1e-10 * abs(ref)


def test_oracle_bad_input():
    X = np.array([[0, 1], [1, 0]])
    ops = [(X, 0)]
    with pytest.raises(ValueError, match="acts on qubit 7, but there are 5 qubits"):
        oracle.expectation(5, ops, "Z7")
    with pytest.raises(ValueError, match="acts on qubit 5, but there are 5 qubits"):
        oracle.expectation(5, ops, {5: "X"})
    with pytest.raises(ValueError, match="op 1 acts on qubit 5, but the circuit has 5 qubits"):
        oracle.amplitude(5, ops + [(X, 5)], "00000")
    with pytest.raises(ValueError, match="op 0: a gate on 2 qubit"):
        oracle.statevector(3, [(X, (0, 1))])
    with pytest.raises(ValueError, match="not distinct"):
        oracle.statevector(3, [(np.eye(4), (1, 1))])
    with pytest.raises(ValueError, match="pair"):
        oracle.statevector(3, [X])
    with pytest.raises(ValueError, match="cannot parse Pauli term 'Q1'"):
        oracle.expectation(5, ops, "Z0 Q1")
    with pytest.raises(ValueError, match="cannot parse Pauli term 'Z'"):
        oracle.expectation(5, ops, "Z")
    with pytest.raises(ValueError, match="empty"):
        oracle.expectation(5, ops, "  ")
    with pytest.raises(ValueError, match="names qubit 1 twice"):
        oracle.expectation(5, ops, "Z1 X1")
    with pytest.raises(ValueError, match="bitstring"):
        oracle.amplitude(5, ops, "0101")
    with pytest.raises(ValueError, match="bitstring"):
        oracle.amplitude(5, ops, "01012")
    with pytest.raises(ValueError, match="n_qubits"):
        oracle.statevector(0, [])
    with pytest.raises(ValueError, match="limit is 24 qubits"):
        oracle.statevector(30, ops)
    with pytest.raises(ValueError, match="op 0 is not unitary"):
        oracle.expectation(2, [(np.diag([1.0, 2.0]), 0)], "Z0")


def test_oracle_amplitude_of_non_unitary_gates():
    """Amplitudes need no unitarity (no light-cone cancellation is used)."""
    rng = np.random.default_rng(9)
    ops = [(rng.normal(size=(2**len(q), 2**len(q))), q) for q in [(0,), (1, 2), (2, 0), (1,)]]
    ref = _dense_state(3, ops)
    np.testing.assert_allclose(oracle.statevector(3, ops), ref.ravel(), atol=1e-12)
    assert abs(oracle.amplitude(3, ops, "101") - ref[1, 0, 1]) < 1e-12


# ---------------------------------------------------------------------------- engine (MPS)
#
# The oracle as the reference for ``qlam_tn.MPS`` beyond statevector range.


def _run_mps(n, ops, max_bond):
    """Run ``ops`` on an MPS; return it and the weight each op discarded, ``[delta_k]``."""
    psi = qlam_tn.MPS.zeros(n, batch=1, max_bond=max_bond, cutoff=1e-12, dtype=torch.complex128)
    deltas = []
    for gate, qubits in ops:
        before = float(psi.discarded_weight[0])
        psi.apply(gate, qubits)
        deltas.append(float(psi.discarded_weight[0]) - before)
    return psi, deltas


def test_oracle_matches_untruncated_mps_at_30_qubits():
    rng = np.random.default_rng(10)
    n = 30
    ops = _brickwork_ops(n, 2, rng)
    psi, _ = _run_mps(n, ops, max_bond=64)  # two layers need at most 4^2 = 16
    assert float(psi.discarded_weight[0]) < 1e-20
    circ = oracle.ExactCircuit(n, ops)
    for pauli in ["Z0", "X7", "Y15", "Z29", "Z3 Z4", "X10 Y11", "Z0 X29", "X12 Y13 Z14"]:
        assert abs(float(psi.expect(pauli)[0]) - circ.expectation(pauli)) < 1e-10, pauli


@pytest.mark.parametrize("case", ["one truncation", "many truncations"])
def test_truncated_mps_local_expectations_within_discarded_weight_bound(case):
    r"""|<O>_exact - <O>_mps| <= 2 ||O|| sum_k sqrt(delta_k) <= 2 ||O|| sqrt(K eps).

    delta_k is the weight cut by truncation k, eps = sum_k delta_k the accumulated
    ``discarded_weight``, K the number of truncations.

    Derivation. Let psi_k = U_k psi_{k-1} be the exact normalised states and
    phi_k = P_k U_k phi_{k-1} the truncated, unnormalised ones (phi_0 = psi_0), where P_k is
    truncation k: with the orthogonality centre on the pair, keeping the largest Schmidt values
    is an orthogonal projection of the whole state, and delta_k = ||(1 - P_k) U_k phi_{k-1}||^2.
    (With renormalisation, delta_k is measured on a state of norm 1 >= ||phi_{k-1}||, which only
    makes it larger; rays, and so expectations, are the same, and the bound still holds.)

    1. The error e_k = psi_k - phi_k obeys e_k = U_k e_{k-1} + (1 - P_k) U_k phi_{k-1}, so
       ||psi - phi|| <= sum_k sqrt(delta_k) <= sqrt(K eps) (Cauchy-Schwarz). The cut pieces can
       add coherently, so sqrt(eps) alone does not bound it: a small rotation followed by a
       projection, repeated K times, gives ||psi - phi||^2 ~ K eps.
    2. The distance from the unit vector psi to the ray of phi is sin(theta) = sqrt(1 - F),
       F = |<psi|phi>|^2 / <phi|phi>, and it is at most ||psi - phi||.
    3. For pure states the trace distance is ||rho - sigma||_1 = 2 sqrt(1 - F), and
       |tr(O rho) - tr(O sigma)| <= ||O|| ||rho - sigma||_1.
    Hence |<O>_psi - <phi|O|phi>/<phi|phi>| <= 2 ||O|| sum_k sqrt(delta_k); ||O|| = 1 for a
    Pauli string. With a single truncation this is 2 sqrt(eps).
    """
    n = 30
    if case == "one truncation":
        # two exact layers (bonds <= 16), then one more gate that the bound of 16 must cut
        rng = np.random.default_rng(12)
        ops = _brickwork_ops(n, 2, rng) + [(torch.from_numpy(_random_unitary(4, rng)), (14, 15))]
        psi, deltas = _run_mps(n, ops, max_bond=16)
        paulis = ["Z14", "X15", "Z14 Z15", "X14 X15", "Y13 X16", "Z0"]
    else:
        rng = np.random.default_rng(11)
        ops = _brickwork_ops(n, 3, rng, strength=0.25)  # weakly entangling gates
        psi, deltas = _run_mps(n, ops, max_bond=4)
        paulis = ["Z0", "X5", "Y14", "Z15", "X29", "Z14 Z15", "X3 Y4", "Z9 X20"]
    eps = float(psi.discarded_weight[0])
    assert sum(deltas) == pytest.approx(eps, rel=1e-9)
    assert min(deltas) > -1e-15
    truncations = [d for d in deltas if d > 0]
    bound = 2 * sum(math.sqrt(d) for d in truncations)
    assert bound <= 2 * math.sqrt(len(truncations) * eps) * (1 + 1e-12)
    assert eps > 1e-6, "the run must truncate for this test to mean anything"
    assert bound < 0.5, "parameters should give a non-vacuous bound"
    if case == "one truncation":
        assert len(truncations) == 1
    circ = oracle.ExactCircuit(n, ops)
    worst = 0.0
    for pauli in paulis:
        err = abs(float(psi.expect(pauli)[0]) - circ.expectation(pauli))
        assert err <= bound, (pauli, err, bound)
        worst = max(worst, err)
    assert worst > 1e-8  # the truncation is visible in the expectations
