"""Circuit IR, simulate(), OpenQASM 2.0 and quimb interop.

References are independent of the engine: gate matrices written out from their formulas in
numpy, embedded in the full 2^n space by Kronecker products, and quimb's own contraction.
"""
import itertools
import math
import random

import numpy as np
import pytest
import torch

import qlam_tn as qt
from qlam_tn.circuit import GATES, zyz_angles

# ----------------------------------------------------------------------------- references

I2 = np.eye(2)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Y = np.array([[0, -1j], [1j, 0]])
Z = np.diag([1.0 + 0j, -1.0])
H = np.array([[1, 1], [1, -1]]) / math.sqrt(2)


def _rot(p, t):
    return math.cos(t / 2) * np.eye(len(p)) - 1j * math.sin(t / 2) * p


def _u3(t, p, lm):
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -np.exp(1j * lm) * s], [np.exp(1j * p) * s, np.exp(1j * (p + lm)) * c]])


def _ctrl(u):
    out = np.eye(4, dtype=complex)
    out[2:, 2:] = u
    return out


def ref_matrix(name, params):
    """Each gate from its textbook formula (big-endian, control first)."""
    p = list(params)
    table = {
        "id": lambda: I2, "h": lambda: H, "x": lambda: X, "y": lambda: Y, "z": lambda: Z,
        "s": lambda: np.diag([1, 1j]), "sdg": lambda: np.diag([1, -1j]),
        "t": lambda: np.diag([1, np.exp(1j * math.pi / 4)]), "tdg": lambda: np.diag([1, np.exp(-1j * math.pi / 4)]),
        "sx": lambda: np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]]) / 2,
        "sxdg": lambda: np.array([[1 - 1j, 1 + 1j], [1 + 1j, 1 - 1j]]) / 2,
        "rx": lambda: _rot(X, p[0]), "ry": lambda: _rot(Y, p[0]), "rz": lambda: _rot(Z, p[0]),
        "p": lambda: np.diag([1, np.exp(1j * p[0])]), "u3": lambda: _u3(*p),
        "cx": lambda: _ctrl(X), "cy": lambda: _ctrl(Y), "cz": lambda: _ctrl(Z), "ch": lambda: _ctrl(H),
        "swap": lambda: np.eye(4)[[0, 2, 1, 3]],
        "iswap": lambda: np.array([[1, 0, 0, 0], [0, 0, 1j, 0], [0, 1j, 0, 0], [0, 0, 0, 1]]),
        "rxx": lambda: _rot(np.kron(X, X), p[0]), "ryy": lambda: _rot(np.kron(Y, Y), p[0]),
        "rzz": lambda: _rot(np.kron(Z, Z), p[0]),
        "crx": lambda: _ctrl(_rot(X, p[0])), "cry": lambda: _ctrl(_rot(Y, p[0])), "crz": lambda: _ctrl(_rot(Z, p[0])),
        "cp": lambda: np.diag([1, 1, 1, np.exp(1j * p[0])]), "cu3": lambda: _ctrl(_u3(*p)),
    }
    return np.asarray(table[name](), dtype=complex)


def embed(u, qubits, n):
    """``u`` on ``qubits`` as a 2^n x 2^n matrix: a sum of Kronecker products of |i><k| factors."""
    k = len(qubits)
    t = u.reshape([2] * (2 * k))
    full = np.zeros((2 ** n, 2 ** n), dtype=complex)
    for idx in itertools.product(range(2), repeat=2 * k):
        if t[idx] == 0:
            continue
        factors = [I2] * n
        for m, q in enumerate(qubits):
            e = np.zeros((2, 2))
            e[idx[m], idx[k + m]] = 1
            factors[q] = e
        term = factors[0]
        for f in factors[1:]:
            term = np.kron(term, f)
        full += t[idx] * term
    return full


def reference_state(circuit, sample=None):
    """Dense big-endian amplitudes of ``circuit`` from |0...0>, op by op with ``ref_matrix``."""
    n = circuit.n_qubits
    psi = np.zeros(2 ** n, dtype=complex)
    psi[0] = 1
    for op in circuit:
        if op.name == "unitary":
            m = op.params[0].detach().numpy()
            m = m[sample] if m.ndim == 3 else m
        else:
            vals = [p.detach().numpy() if isinstance(p, torch.Tensor) else p for p in op.params]
            vals = [float(v[sample]) if np.ndim(v) == 1 else float(v) for v in vals]
            m = ref_matrix(op.name, vals)
        psi = embed(m, op.qubits, n) @ psi
    return np.exp(1j * circuit.global_phase) * psi


def random_unitary(rng, d):
    a = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    q, r = np.linalg.qr(a)
    return q * (np.diag(r) / abs(np.diag(r)))


def random_circuit(n, n_ops, seed, batch=None, unitaries=True):
    """Every named gate, random qubits (any distance and order), per-sample params if batch."""
    rng = np.random.default_rng(seed)
    names = sorted(GATES)
    c = qt.Circuit(n)
    for _ in range(n_ops):
        name = names[rng.integers(len(names))]
        spec = GATES[name]
        if spec.n_qubits > n:
            continue
        if unitaries and rng.random() < 0.08:
            k = 1 if n == 1 else int(rng.integers(1, 3))
            c.unitary(torch.tensor(random_unitary(rng, 2 ** k)), tuple(rng.choice(n, k, replace=False).tolist()))
            continue
        qs = rng.choice(n, spec.n_qubits, replace=False).tolist()
        params = []
        for _ in spec.params:
            if batch is not None and rng.random() < 0.5:
                params.append(torch.tensor(rng.uniform(-4, 4, batch)))
            else:
                params.append(float(rng.uniform(-4, 4)))
        c.append(name, qs, params)
    return c


def pauli_ref(label, n):
    mats = {"I": I2, "X": X, "Y": Y, "Z": Z}
    out = np.array([[1.0 + 0j]])
    for ch in label:
        out = np.kron(out, mats[ch])
    return out


# ----------------------------------------------------------------------------- gates

@pytest.mark.parametrize("name", sorted(GATES))
def test_every_gate_matches_its_formula_on_any_qubits(name):
    rng = np.random.default_rng(abs(hash(name)) % 2 ** 32)
    spec = GATES[name]
    n = 4
    params = [float(x) for x in rng.uniform(-4, 4, len(spec.params))]
    np.testing.assert_allclose(GATES[name].build(*params).numpy(), ref_matrix(name, params), atol=1e-14)
    for qs in ([0], [3]) if spec.n_qubits == 1 else ([0, 1], [3, 1], [0, 3], [2, 0]):
        c = qt.Circuit(n)
        for q in range(n):
            c.u3(*rng.uniform(-3, 3, 3), q)
        c.cx(0, 1).cx(2, 3).cx(1, 2)
        c.append(name, qs, params)
        want = reference_state(c)
        for backend in ("mps", "statevector"):
            got = qt.simulate(c, backend=backend).to_dense()[0].numpy()
            np.testing.assert_allclose(got, want, atol=1e-12)


def test_gate_methods_record_canonical_ops():
    c = qt.Circuit(3)
    c.id(0).i(0).h(0).x(1).y(2).z(0).s(1).sdg(2).t(0).tdg(1).sx(2).sxdg(0)
    c.rx(0.1, 0).ry(0.2, 1).rz(0.3, 2).p(0.4, 0).phase(0.5, 1).u3(0.1, 0.2, 0.3, 2)
    c.cx(0, 1).cnot(1, 2).cy(2, 0).cz(0, 2).ch(1, 0).swap(0, 2).iswap(1, 2)
    c.rxx(0.1, 0, 1).ryy(0.2, 1, 2).rzz(0.3, 0, 2).crx(0.4, 0, 1).cry(0.5, 1, 2).crz(0.6, 2, 0)
    c.cp(0.7, 0, 1).cu3(0.1, 0.2, 0.3, 1, 0)
    names = [op.name for op in c]
    assert names[:2] == ["id", "id"] and names[15:17] == ["p", "p"] and names[18:20] == ["cx", "cx"]
    assert c.operations[17] == ("u3", (2,), (0.1, 0.2, 0.3))
    assert c.operations[-1] == ("cu3", (1, 0), (0.1, 0.2, 0.3))
    assert len(c) == 33
    mats = list(c.ops())
    assert len(mats) == 33 and mats[-1][1] == (1, 0)
    np.testing.assert_allclose(mats[-1][0].numpy(), ref_matrix("cu3", [0.1, 0.2, 0.3]), atol=1e-15)


def test_three_qubit_gates_are_exact_decompositions():
    perm = {"ccx": lambda b: (b[0], b[1], b[2] ^ (b[0] & b[1])),
            "cswap": lambda b: (b[0], b[2], b[1]) if b[0] else b}
    for name, f in perm.items():
        for qs in ([0, 1, 2], [2, 0, 3], [3, 1, 0]):
            c = getattr(qt.Circuit(4), name)(*qs)
            u = np.eye(16, dtype=complex)
            for op in c:
                u = embed(ref_matrix(op.name, op.params), op.qubits, 4) @ u
            want = np.zeros((16, 16))
            for col in range(16):
                bits = [(col >> (3 - k)) & 1 for k in range(4)]
                sub = f(tuple(bits[q] for q in qs))
                for q, v in zip(qs, sub):
                    bits[q] = v
                want[int("".join(map(str, bits)), 2), col] = 1
            np.testing.assert_allclose(u, want, atol=1e-13)


# ----------------------------------------------------------------------------- simulate

@pytest.mark.parametrize("seed", range(8))
def test_random_circuits_match_the_dense_reference(seed):
    n = 3 + seed % 4
    c = random_circuit(n, 40, seed)
    want = reference_state(c)
    for backend in ("mps", "statevector"):
        psi = qt.simulate(c, backend=backend)
        np.testing.assert_allclose(psi.to_dense()[0].numpy(), want, atol=1e-11)
        rng = random.Random(seed)
        for _ in range(4):
            label = "".join(rng.choice("IXYZ") for _ in range(n - 1)) + "Z"
            ref = np.vdot(want, pauli_ref(label, n) @ want).real
            assert abs(psi.expect(label).item() - ref) < 1e-11


def test_batched_parameters_give_one_circuit_per_sample():
    c = random_circuit(5, 40, 11, batch=3)
    assert c.batch == 3
    u = torch.stack([torch.tensor(random_unitary(np.random.default_rng(k), 4)) for k in range(3)])
    c.unitary(u, (4, 1))
    for backend in ("mps", "statevector"):
        psi = qt.simulate(c, backend=backend).to_dense()
        assert psi.shape == (3, 32)
        for b in range(3):
            np.testing.assert_allclose(psi[b].numpy(), reference_state(c, sample=b), atol=1e-11)
    # A circuit without per-sample parameters runs on any batch.
    plain = random_circuit(4, 20, 2)
    out = qt.simulate(plain, batch=4).to_dense()
    np.testing.assert_allclose(out.numpy(), np.tile(reference_state(plain), (4, 1)), atol=1e-12)


GENERIC = np.random.default_rng(42).uniform(-3, 3, (4, 3))


def _variational(t, p):
    """4 qubits, a shared angle ``t`` (0-d) and per-sample angles ``p`` (3,), every gate kind."""
    c = qt.Circuit(4)
    for q in range(4):  # generic start: no exactly degenerate Schmidt spectra downstream
        c.u3(*GENERIC[q], q)
    c.ry(t, 1).cx(0, 3).crx(p, 1, 2).rzz(t * 2, 0, 2).u3(p, t, 0.3, 3)
    return c.cy(3, 1).iswap(2, 0).cp(t, 2, 3).ryy(p - t, 1, 3)


def _energy_ref(t, p):
    out = []
    for b in range(3):
        psi = reference_state(_variational(torch.tensor(t, dtype=torch.float64),
                                           torch.tensor(p, dtype=torch.float64)), sample=b)
        out.append(np.vdot(psi, pauli_ref("ZIXI", 4) @ psi).real + 0.5 * np.vdot(psi, pauli_ref("IYIZ", 4) @ psi).real)
    return np.array(out)


@pytest.mark.parametrize("backend, opts, tol", [
    ("statevector", {}, 1e-7),
    ("mps", {"grad_eps": 1e-20}, 1e-7),
])
def test_gradients_flow_from_expectations_to_parameters(backend, opts, tol):
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    phis = torch.tensor([0.1, -1.2, 2.3], dtype=torch.float64, requires_grad=True)
    psi = qt.simulate(_variational(theta, phis), backend=backend, **opts)
    (psi.expect("Z0 X2") + 0.5 * psi.expect("Y1 Z3")).sum().backward()
    # Central differences of the dense numpy reference.
    h, p0 = 1e-6, phis.detach().numpy()
    d_theta = (_energy_ref(0.7 + h, p0).sum() - _energy_ref(0.7 - h, p0).sum()) / (2 * h)
    d_phi = [(_energy_ref(0.7, p0 + h * e)[k] - _energy_ref(0.7, p0 - h * e)[k]) / (2 * h)
             for k, e in enumerate(np.eye(3))]
    assert abs(theta.grad.item() - d_theta) < tol
    np.testing.assert_allclose(phis.grad.numpy(), d_phi, atol=tol)


def test_mps_gradient_at_a_bell_pair_matches_the_statevector():
    def energy(t, backend):
        c = qt.Circuit(4).h(0).cx(0, 3).u3(-1.2, t, 0.3, 3).cy(3, 1).iswap(2, 0).cp(0.7, 2, 3)
        return qt.simulate(c, backend=backend).expect("Z0 X2").sum()

    grads = []
    for backend in ("mps", "statevector"):
        t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        energy(t, backend).backward()
        grads.append(t.grad.item())
    assert abs(grads[1]) < 1e-12  # the exact derivative is 0; the MPS returns 0.032
    assert abs(grads[0] - grads[1]) < 1e-8


def test_truncation_report_and_dtypes():
    c = qt.Circuit(10)
    rng = np.random.default_rng(3)
    for _ in range(4):
        for q in range(10):
            c.ry(float(rng.uniform(-3, 3)), q)
        for q in range(0, 9, 1):
            c.cz(q, q + 1)
    exact = qt.simulate(c, backend="statevector", dtype=torch.float64)
    assert exact.dtype == torch.float64  # a real circuit stays real
    cut = qt.simulate(c, max_bond=4, dtype=torch.float64)
    assert max(cut.bond_dims) <= 4
    dw = cut.discarded_weight.item()
    assert dw > 1e-6
    assert abs(cut.norm().item() ** 2 - (1 - dw)) < 1e-10
    assert 0 < cut.fidelity_estimate.item() < 1
    full = qt.simulate(c, dtype=torch.float64)
    assert full.discarded_weight.item() < 1e-12
    # rsum2 at 1e-12 may drop tails of relative weight 1e-12: amplitudes move by ~1e-6 at most.
    np.testing.assert_allclose(full.to_dense().numpy(), exact.to_dense().numpy(), atol=1e-6)
    exact_mps = qt.simulate(c, cutoff=0.0, dtype=torch.float64)
    np.testing.assert_allclose(exact_mps.to_dense().numpy(), exact.to_dense().numpy(), atol=1e-12)
    renorm = qt.simulate(c, max_bond=4, renormalize=True)
    assert abs(renorm.norm().item() - 1) < 1e-12
    single = qt.simulate(c, dtype=torch.complex64, backend="statevector").to_dense()[0].numpy()
    np.testing.assert_allclose(single, reference_state(c), atol=1e-5)


def test_global_phase_multiplies_the_state():
    c = qt.Circuit(2, global_phase=0.4).h(0).cx(0, 1)
    for backend in ("mps", "statevector"):
        np.testing.assert_allclose(qt.simulate(c, backend=backend).to_dense()[0].numpy(),
                                   reference_state(c), atol=1e-14)


# ----------------------------------------------------------------------------- bookkeeping

def test_len_depth_count_ops_and_drawing():
    c = qt.Circuit(3).h(0).cx(0, 2).rx(0.5, 1).rzz(0.25, 1, 2).h(0)
    assert len(c) == 5
    assert c.depth() == 3  # h | cx, rx | rzz (the second h fits in layer 2)
    assert c.count_ops() == {"h": 2, "cx": 1, "rx": 1, "rzz": 1}
    assert list(c.count_ops()) == ["h", "cx", "rx", "rzz"]
    assert qt.Circuit(2).depth() == 0
    twin = c.copy().x(1)
    assert len(twin) == 6 and len(c) == 5
    assert repr(c) == "Circuit(n_qubits=3, ops=5, depth=3)"
    expected = "\n".join([
        "q0: ─H─●────H──────────────",
        "       │",
        "q1: ───┼─RX(0.5)─RZZ(0.25)─",
        "       │             │",
        "q2: ───X─────────RZZ(0.25)─",
    ])
    assert c.draw() == expected
    assert str(c) == expected
    batched = qt.Circuit(2).ry(torch.zeros(5), 0).unitary(np.eye(4), (1, 0))
    assert "RY([5])" in batched.draw() and "U₀" in batched.draw() and "U₁" in batched.draw()


def test_zyz_angles_reproduce_any_single_qubit_unitary():
    rng = np.random.default_rng(0)
    mats = [random_unitary(rng, 2) for _ in range(20)]
    mats += [X, Y, Z, np.diag([1, 1j]), np.exp(0.3j) * H, np.array([[0, 1j], [1j, 0]])]
    for m in mats:
        t, p, lm, g = zyz_angles(torch.tensor(m))
        np.testing.assert_allclose(np.exp(1j * g) * _u3(t, p, lm), m, atol=1e-12)


@pytest.mark.parametrize("call, err, match", [
    (lambda: qt.Circuit(0), ValueError, "n_qubits"),
    (lambda: qt.Circuit(2).h(2), ValueError, "out of range"),
    (lambda: qt.Circuit(2).cx(1, 1), ValueError, "repeated"),
    (lambda: qt.Circuit(2).h(0.5), TypeError, "int"),
    (lambda: qt.Circuit(2).rx("a", 0), TypeError, "float"),
    (lambda: qt.Circuit(2).rx(torch.tensor(1j), 0), TypeError, "real"),
    (lambda: qt.Circuit(2).rx(torch.zeros(2, 2), 0), ValueError, "scalar or a"),
    (lambda: qt.Circuit(2).rx(float("nan"), 0), ValueError, "NaN"),
    (lambda: qt.Circuit(2).append("foo", (0,)), ValueError, "unknown gate"),
    (lambda: qt.Circuit(2).append("rx", (0,), ()), ValueError, "parameter"),
    (lambda: qt.Circuit(2).append("cx", (0,)), ValueError, "2 qubit"),
    (lambda: qt.Circuit(2).rx(torch.zeros(2), 0).ry(torch.zeros(3), 1), ValueError, "batch"),
    (lambda: qt.Circuit(2).u3(torch.zeros(2), torch.zeros(3), 0.0, 1), ValueError, "batch"),
    (lambda: qt.Circuit(2).unitary(np.ones((2, 2)), 0), ValueError, "not unitary"),
    (lambda: qt.Circuit(2).unitary(np.eye(4), 0), ValueError, "shape"),
    (lambda: qt.Circuit(3).unitary(np.eye(8), (0, 1, 2)), ValueError, "1 or 2"),
    (lambda: qt.simulate(qt.Circuit(2), backend="dense"), ValueError, "backend"),
    (lambda: qt.simulate(qt.Circuit(2), backend="statevector", max_bond=4), ValueError, "max_bond"),
    (lambda: qt.simulate(qt.Circuit(2).rx(torch.zeros(2), 0), batch=3), ValueError, "batch"),
    (lambda: qt.simulate("h 0"), TypeError, "Circuit"),
])
def test_invalid_input_is_refused(call, err, match):
    with pytest.raises(err, match=match):
        call()


# ----------------------------------------------------------------------------- OpenQASM 2.0

QASM = """
OPENQASM 2.0;
include "qelib1.inc";   // the only include
qreg a[2];
qreg b[3];
creg c[5];
gate mix(theta, phi) x, y { rx(theta / 2) x; cx x, y; u1(-phi * 2^2) y; barrier x, y; }
gate twice(t) x, y { mix(t, t) x, y; mix(2*t, -t) y, x; }
h a;
cx a[0], b[2];
mix(pi/4, -(1.5e-1 + .5)) a[1], b[0];
twice(sqrt(2)) b[1], a[0];
u2(0, pi) b[1];
U(0.1, 0.2, 0.3) b[2];
CX b[2], a[1];
ccx a[0], a[1], b[1];
rzz(sin(pi / 6)) b[0], b[2];
cu(0.3, 0.2, 0.1, 0.4) a[0], b[0];
csx b[1], a[1];
"""


def test_qasm_parser_against_a_hand_built_circuit():
    text = QASM + "cz a, b[1];\nbarrier a, b;\nmeasure b -> c[0];\n"
    with pytest.raises(ValueError, match="'measure'"):
        qt.Circuit.from_qasm(text)
    c = qt.Circuit.from_qasm(text, drop_final_measurements=True)
    a0, a1, b0, b1, b2 = range(5)
    want = qt.Circuit(5).h(a0).h(a1).cx(a0, b2)

    def mix(w, theta, phi, x, y):
        return w.rx(theta / 2, x).cx(x, y).p(-phi * 4, y)

    mix(want, math.pi / 4, -0.65, a1, b0)
    mix(want, math.sqrt(2), math.sqrt(2), b1, a0)
    mix(want, 2 * math.sqrt(2), -math.sqrt(2), a0, b1)
    want.u3(math.pi / 2, 0, math.pi, b1).u3(0.1, 0.2, 0.3, b2).cx(b2, a1).ccx(a0, a1, b1)
    want.rzz(0.5, b0, b2)
    want.unitary(torch.tensor(np.kron(np.diag([1, np.exp(0.4j)]), I2) @ _ctrl(_u3(0.3, 0.2, 0.1))), (a0, b0))
    sx = np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]]) / 2
    want.unitary(torch.tensor(_ctrl(sx)), (b1, a1))
    want.cz(a0, b1).cz(a1, b1)
    np.testing.assert_allclose(qt.simulate(c).to_dense()[0].numpy(), reference_state(want), atol=1e-12)
    assert c.n_qubits == 5


@pytest.mark.parametrize("text, match", [
    ("qreg q[2]; reset q[0];", "'reset'"),
    ("qreg q[2]; creg c[2]; if(c==1) x q[0];", "'if'"),
    ("opaque magic(a) q; qreg q[1];", "'opaque'"),
    ("qreg q[2]; creg c[2]; measure q[0] -> c[0]; h q[0];", "'measure'"),
    ("qreg q[4]; c3x q[0], q[1], q[2], q[3];", "'c3x'"),
    ("qreg q[3]; rccx q[0], q[1], q[2];", "'rccx'"),
    ("qreg q[2]; foo q[0];", "unknown gate 'foo'"),
    ("qreg q[2]; cx q[0], q[0];", "repeats a qubit"),
    ("qreg q[2]; rx(1/0) q[0];", "division by zero"),
    ("qreg q[2]; rx(1) q[0]", "expected ';'"),
    ("qreg q[2]; rx(__import__) q[0];", "unknown parameter '__import__'"),
    ("qreg q[2]; rx(1, 2) q[0];", "takes 1 parameter"),
    ('include "other.inc"; qreg q[1];', "qelib1.inc"),
    ("OPENQASM 3.0; qubit q;", "version 3.0"),
    ("qreg q[2]; qreg r[3]; cx q, r;", "different sizes"),
    ("qreg q[2]; h q[2];", "out of range"),
    ("qreg q[2]; creg c[2]; h c[0];", "classical register"),
    ("gate g a { g a; } qreg q[1]; g q[0];", "undefined gate 'g'"),
    ("gate g a { measure a -> c; } qreg q[1];", "not allowed in the body"),
    ("h q[0];", "undeclared"),
    ("creg c[1];", "no qreg"),
    ("qreg q[1]; h q[0]; $", "unexpected character"),
])
def test_unsupported_and_malformed_qasm_is_refused(text, match):
    # reset, if and mid-circuit measure are read as ops (simulate(shots=)); the unitary-only
    # reading, drop_final_measurements=True, still refuses them
    with pytest.raises(ValueError, match=match):
        qt.Circuit.from_qasm(text, drop_final_measurements=True)


@pytest.mark.parametrize("tail", ["h q[0];", "cx q[1], q[0];", "gate g a, b { cz a, b; } g q[1], q[0];"])
def test_mid_circuit_measurement_is_refused_even_when_dropping_final_ones(tail):
    text = "qreg q[2]; creg c[2]; measure q[0] -> c[0]; " + tail
    with pytest.raises(ValueError, match="'measure'.*mid-circuit"):
        qt.Circuit.from_qasm(text, drop_final_measurements=True)
    ok = qt.Circuit.from_qasm("qreg q[2]; creg c[2]; h q; measure q -> c; barrier q;", drop_final_measurements=True)
    assert [op.name for op in ok] == ["h", "h"]


@pytest.mark.parametrize("seed", range(6))
def test_qasm_round_trip_keeps_ops_and_state(seed):
    c = random_circuit(5, 40, 100 + seed, unitaries=False)
    text = c.to_qasm()
    back = qt.Circuit.from_qasm(text)
    assert [op.name for op in back] == [op.name for op in c]
    assert [op.qubits for op in back] == [op.qubits for op in c]
    np.testing.assert_allclose(qt.simulate(back).to_dense().numpy(), qt.simulate(c).to_dense().numpy(), atol=1e-12)
    np.testing.assert_allclose(qt.simulate(back).to_dense()[0].numpy(), reference_state(c), atol=1e-11)


def test_qasm_definitions_written_for_non_qelib1_gates_are_exact():
    """Read the written definitions as custom gates (renamed), so their bodies are what runs."""
    rng = np.random.default_rng(5)
    for name in ("sx", "sxdg", "swap", "iswap", "crx", "cry", "rxx", "ryy", "rzz"):
        spec = GATES[name]
        params = [float(v) for v in rng.uniform(-3, 3, len(spec.params))]
        c = qt.Circuit(3)
        for q in range(3):
            c.u3(*rng.uniform(-3, 3, 3), q)
        c.append(name, [2, 0] if spec.n_qubits == 2 else [1], params)
        text = c.to_qasm()
        assert f"gate {name}" in text
        renamed = text.replace(f"gate {name}", f"gate my_{name}").replace(f"\n{name}", f"\nmy_{name}")
        body = qt.Circuit.from_qasm(renamed)
        assert name not in [op.name for op in body]
        np.testing.assert_allclose(qt.simulate(body).to_dense()[0].numpy(), reference_state(c), atol=1e-12)


def test_qasm_export_of_unitaries_batches_and_phase():
    rng = np.random.default_rng(1)
    u = random_unitary(rng, 2)
    c = qt.Circuit(2, global_phase=0.3).h(0).unitary(torch.tensor(u), 1).cx(0, 1)
    back = qt.Circuit.from_qasm(c.to_qasm())
    a, b = qt.simulate(c).to_dense()[0].numpy(), qt.simulate(back).to_dense()[0].numpy()
    assert abs(abs(np.vdot(a, b)) - 1) < 1e-12  # equal up to the dropped global phases
    with pytest.raises(ValueError, match="batch 2"):
        qt.Circuit(1).rx(torch.zeros(2), 0).to_qasm()
    with pytest.raises(ValueError, match="2-qubit unitary"):
        qt.Circuit(2).unitary(np.eye(4), (0, 1)).to_qasm()
    theta = torch.tensor(0.25, requires_grad=True)
    assert "rx(0.25) q[0];" in qt.Circuit(1).rx(theta, 0).to_qasm()


# ----------------------------------------------------------------------------- quimb

def test_to_quimb_matches_quimbs_own_contraction():
    c = random_circuit(5, 40, 7)
    c.global_phase = 0.2
    qc = c.to_quimb()
    np.testing.assert_allclose(np.asarray(qc.to_dense()).ravel(), reference_state(c), atol=1e-11)
    import quimb.tensor as qtn
    qmps = c.to_quimb(cls=qtn.CircuitMPS)
    assert isinstance(qmps, qtn.CircuitMPS)
    np.testing.assert_allclose(np.asarray(qmps.to_dense()).ravel(), reference_state(c), atol=1e-11)
    with pytest.raises(ValueError, match="per-sample"):
        qt.Circuit(1).rx(torch.zeros(2), 0).to_quimb()


def test_from_quimb_reads_every_kind_of_gate():
    import quimb.tensor as qtn
    rng = np.random.default_rng(2)
    qc = qtn.Circuit(4)
    for q in range(4):
        qc.apply_gate("U3", *rng.uniform(-3, 3, 3), q)
    for label, nq, npar in [("H", 1, 0), ("SDG", 1, 0), ("SXDG", 1, 0), ("IDEN", 1, 0), ("PHASE", 1, 1),
                            ("U1", 1, 1), ("U2", 1, 2), ("RX", 1, 1), ("CNOT", 2, 0), ("CY", 2, 0),
                            ("ISWAP", 2, 0), ("RYY", 2, 1), ("CRZ", 2, 1), ("CU1", 2, 1), ("CU3", 2, 3),
                            ("FSIM", 2, 2), ("GIVENS", 2, 1), ("SU4", 2, 15), ("CCX", 3, 0), ("CCZ", 3, 0),
                            ("CSWAP", 3, 0), ("TOFFOLI", 3, 0)]:
        qs = rng.choice(4, nq, replace=False).tolist()
        qc.apply_gate(label, *rng.uniform(-3, 3, npar), *qs)
    qc.apply_gate("X", 2, controls=[0])
    qc.apply_gate_raw(random_unitary(rng, 4), (3, 1))
    c = qt.Circuit.from_quimb(qc)
    assert {"sdg", "p", "u3", "cx", "cy", "iswap", "ryy", "crz", "cp", "cu3", "unitary"} <= set(c.count_ops())
    want = np.asarray(qc.to_dense()).ravel()
    np.testing.assert_allclose(qt.simulate(c).to_dense()[0].numpy(), want, atol=1e-11)
    np.testing.assert_allclose(qt.simulate(qt.Circuit.from_quimb(c.to_quimb())).to_dense()[0].numpy(), want,
                               atol=1e-11)
    big = qtn.Circuit(4)
    big.apply_gate("X", 3, controls=[0, 1])
    with pytest.raises(ValueError, match="more than 2 qubits"):
        qt.Circuit.from_quimb(big)
