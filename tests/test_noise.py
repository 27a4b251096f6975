"""Kraus channels and gate noise by quantum trajectories.

References: Qiskit's own channel definitions (superoperators of ``qiskit_aer.noise`` errors), a
numpy density-matrix simulation written here (itself checked against Aer's ``density_matrix``
method), and hand values. Trajectory averages are compared within 5 sigma, sigma the standard
error of the trajectory mean (the spread of the per-trajectory values over sqrt(N)).
"""
import math

import numpy as np
import pytest
import torch

import qlam_tn as qt
from qlam_tn import gates as G
from qlam_tn import noise

BACKENDS = [qt.MPS, qt.StateVector]
CHANNEL_NAMES = ["depolarizing", "amplitude_damping", "dephasing"]


# ----------------------------------------------------------------------------- channels

@pytest.mark.parametrize("name", CHANNEL_NAMES)
@pytest.mark.parametrize("p", [0.0, 1e-4, 0.1, 0.5, 1.0])
def test_channels_are_trace_preserving(name, p):
    k = noise.CHANNELS[name](p)
    assert k.shape[1:] == (2, 2) and k.dtype == torch.complex128
    total = (k.mH @ k).sum(0)
    assert torch.allclose(total, torch.eye(2, dtype=torch.complex128), atol=1e-14)


@pytest.mark.parametrize("name", CHANNEL_NAMES)
@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan"), "x", None, True])
def test_a_rate_outside_zero_one_is_refused(name, bad):
    with pytest.raises(ValueError):
        noise.CHANNELS[name](bad)
    with pytest.raises(ValueError):
        noise.NoiseModel(name, p=bad)
    if bad is not None:  # two_qubit_p=None means "the same as p"
        with pytest.raises(ValueError):
            noise.NoiseModel(name, p=0.1, two_qubit_p=bad)


def test_unknown_noise_kind_is_refused():
    with pytest.raises(ValueError, match="noise kind"):
        noise.NoiseModel("bitflip", p=0.1)


@pytest.mark.parametrize("p", [0.03, 0.4])
def test_channels_match_qiskits_definitions(p):
    from qiskit.quantum_info import Kraus, SuperOp
    from qiskit_aer.noise import amplitude_damping_error, depolarizing_error, pauli_error

    refs = {"depolarizing": depolarizing_error(p, 1), "amplitude_damping": amplitude_damping_error(p),
            "dephasing": pauli_error([("Z", p), ("I", 1 - p)])}
    for name, ref in refs.items():
        ours = SuperOp(Kraus([m.numpy() for m in noise.CHANNELS[name](p)]))
        assert np.allclose(ours.data, SuperOp(ref).data, atol=1e-12), name


# ----------------------------------------------------------------------------- a density-matrix reference

def _apply_op(rho, m, qubits, n):
    """``M ρ M†`` for a ``(2**k, 2**k)`` operator on ``qubits`` (big-endian, row index
    ``2*b(q0) + b(q1)``) of a dense ``(2**n, 2**n)`` ρ."""
    k = len(qubits)
    t = rho.reshape((2,) * (2 * n))
    mt = m.reshape((2,) * (2 * k))
    # ket side
    t = np.tensordot(mt, t, axes=(list(range(k, 2 * k)), list(qubits)))
    t = np.moveaxis(t, list(range(k)), list(qubits))
    # bra side
    t = np.tensordot(t, mt.conj(), axes=([n + q for q in qubits], list(range(k, 2 * k))))
    t = np.moveaxis(t, list(range(2 * n - k, 2 * n)), [n + q for q in qubits])
    return t.reshape(2 ** n, 2 ** n)


def _reference(program, n, model):
    """Exact density matrix of ``program`` (a list of ``(matrix, qubits)``) with ``model``'s
    channel after every gate on each acted qubit."""
    rho = np.zeros((2 ** n, 2 ** n), dtype=complex)
    rho[0, 0] = 1
    for m, qs in program:
        rho = _apply_op(rho, m.detach().numpy().astype(complex), qs, n)
        kraus = model.kraus(len(qs)).numpy()
        for q in qs:
            rho = sum(_apply_op(rho, k, (q,), n) for k in kraus)
    return rho


def _program(n, seed):
    rng = np.random.default_rng(seed)
    prog = []
    for layer in range(3):
        for q in range(n):
            prog.append((G.U3(*rng.uniform(-3, 3, 3)), (q,)))
        for q in range(layer % 2, n - 1, 2):
            prog.append((G.CNOT(), (q, q + 1)))
    prog.append((G.CZ(), (n - 1, 0)))
    return prog


def _pauli_dense(spec, n):
    mats = {"X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]), "Z": np.diag([1, -1])}
    ops = qt.parse_pauli(spec, n)
    out = np.array([[1.0]])
    for q in range(n):
        out = np.kron(out, mats[ops[q]] if q in ops else np.eye(2))
    return out


def test_the_numpy_reference_matches_aer_density_matrix():
    from qiskit import QuantumCircuit, transpile
    from qiskit.circuit.library import UnitaryGate
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, depolarizing_error

    n, p1, p2 = 3, 0.05, 0.12
    prog = _program(n, seed=1)
    model = noise.NoiseModel("depolarizing", p=p1, two_qubit_p=p2)
    ref = _reference(prog, n, model)
    qc = QuantumCircuit(n)
    for m, qs in prog:
        # Qiskit is little-endian: our qubit q is its qubit n-1-q, and a 2-qubit matrix's
        # first qubit is its most significant bit, so pass the qubits reversed
        qc.append(UnitaryGate(m.numpy(), label="g%d" % len(qs)), [n - 1 - q for q in reversed(qs)])
    qc.save_density_matrix()
    nm = NoiseModel()
    nm.add_all_qubit_quantum_error(depolarizing_error(p1, 1), ["g1"])
    nm.add_all_qubit_quantum_error(depolarizing_error(p2, 1).tensor(depolarizing_error(p2, 1)), ["g2"])
    sim = AerSimulator(method="density_matrix", noise_model=nm)
    # Qiskit's qubit n-1-q is our q, so its little-endian index is our big-endian one
    rho = np.asarray(sim.run(qc).result().data(0)["density_matrix"])
    assert np.allclose(rho, ref, atol=1e-10)


# ----------------------------------------------------------------------------- trajectories

@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("name,p,p2,n", [("depolarizing", 0.05, 0.15, 4), ("amplitude_damping", 0.1, 0.2, 4),
                                         ("dephasing", 0.08, 0.08, 4), ("depolarizing", 0.03, 0.08, 6),
                                         ("amplitude_damping", 0.05, 0.1, 6)])
def test_trajectory_averages_equal_the_density_matrix(cls, name, p, p2, n):
    n_traj = 3000
    prog = _program(n, seed=2)
    model = noise.NoiseModel(name, p=p, two_qubit_p=p2)
    s = cls.zeros(n, batch=n_traj)
    gen = torch.Generator().manual_seed(17)
    for m, qs in prog:
        s.apply(m, qs if len(qs) == 2 else qs[0])
        model.after_gate(s, qs, gen)
    rho = _reference(prog, n, model)
    pure = _reference(prog, n, noise.NoiseModel(name, p=0.0))
    moved = 0.0
    for spec in ["Z0", "X1", "Y2", "Z3", "Z0 Z1", "X1 X2", "Y0 Z3"]:
        per_traj = s.expect(spec)
        exact = float(np.trace(rho @ _pauli_dense(spec, n)).real)
        sigma = float(per_traj.std()) / math.sqrt(n_traj)
        assert abs(float(per_traj.mean()) - exact) < 5 * sigma + 1e-12, spec
        moved = max(moved, abs(exact - float(np.trace(pure @ _pauli_dense(spec, n)).real)))
    assert moved > 0.05  # non-vacuous: the noise changes the observables by much more than 5 sigma
    # the two-qubit reduced density matrix too
    r = s.rdm2(1, 3)
    ket = [chr(97 + q) for q in range(n)]
    bra = [c if q not in (1, 3) else c.upper() for q, c in enumerate(ket)]  # trace out all but 1 and 3
    eq = "".join(ket + bra) + "->" + ket[1] + ket[3] + bra[1] + bra[3]
    ref = np.einsum(eq, rho.reshape((2,) * 2 * n)).reshape(4, 4)
    sd = (r.real.std(0) + r.imag.std(0)) / math.sqrt(n_traj)
    assert bool(((r.mean(0) - torch.as_tensor(ref)).abs() < 5 * sd + 1e-12).all())


@pytest.mark.parametrize("cls", BACKENDS)
def test_each_sample_draws_its_own_jumps_and_stays_normalised(cls):
    s = cls.zeros(2, batch=64).apply(G.H(), 0).apply(G.CNOT(), (0, 1))
    kraus = noise.depolarizing(1.0)  # every Pauli equally likely
    idx = s.apply_kraus(kraus, 1, torch.Generator().manual_seed(0))
    assert len(set(idx.tolist())) == 4
    assert torch.allclose(s.norm(), torch.ones(64, dtype=torch.float64), atol=1e-12)
    # the Bell state after Pauli k on qubit 1 has <Z0 Z1> = +1 for I, Z and -1 for X, Y
    zz = s.expect("Z0 Z1")
    want = torch.where((idx == 1) | (idx == 2), -1.0, 1.0).double()
    assert torch.allclose(zz, want, atol=1e-12)


def test_amplitude_damping_jump_probability_depends_on_the_state():
    n_traj, gamma = 4000, 0.3
    s = qt.StateVector.zeros(1, batch=n_traj).apply(G.RY(2.0), 0)
    p1 = math.sin(1.0) ** 2
    idx = s.apply_kraus(noise.amplitude_damping(gamma), 0, torch.Generator().manual_seed(5))
    p_jump = gamma * p1  # ||K_1 ψ||² = γ |<1|ψ>|²
    freq = float((idx == 1).double().mean())
    assert abs(freq - p_jump) < 5 * math.sqrt(p_jump * (1 - p_jump) / n_traj)
    assert torch.allclose(s.expect("Z0")[idx == 1], torch.ones(int((idx == 1).sum()), dtype=torch.float64))


@pytest.mark.parametrize("cls", BACKENDS)
def test_zero_rate_leaves_the_state_and_mps_bonds_do_not_grow(cls):
    s = cls.zeros(3, batch=4).apply(G.H(), 0).apply(G.CNOT(), (0, 1))
    before = s.to_dense().clone()
    noise.NoiseModel("depolarizing", p=0.0).after_gate(s, (0, 1), torch.Generator().manual_seed(0))
    assert torch.equal(s.to_dense(), before)
    if cls is qt.MPS:
        dims = s.bond_dims
        noise.NoiseModel("amplitude_damping", p=0.5).after_gate(s, (0, 1), torch.Generator().manual_seed(0))
        assert s.bond_dims == dims


@pytest.mark.parametrize("cls", BACKENDS)
def test_bad_noise_input_is_refused_before_the_state_changes(cls):
    s = cls.zeros(3, batch=2).apply(G.H(), 0)
    before = s.to_dense().clone()
    model = noise.NoiseModel("depolarizing", p=0.5)
    gen = torch.Generator().manual_seed(0)
    for call in [lambda: model.after_gate(s, (0, 3), gen), lambda: model.after_gate(s, (1, 1), gen),
                 lambda: model.after_gate(s, (0, 1, 2), gen),
                 lambda: s.apply_kraus(torch.zeros(2, 2, 2), 0, gen),
                 lambda: s.apply_kraus(noise.depolarizing(0.1).expand(3, 4, 2, 2), 0, gen)]:
        with pytest.raises(ValueError):
            call()
        assert torch.equal(s.to_dense(), before)
    with pytest.raises(TypeError):
        model.after_gate(s, 0, generator=1)


def test_per_sample_kraus_operators():
    s = qt.StateVector.zeros(1, batch=2).apply(G.X(), 0)
    k = torch.stack([noise.amplitude_damping(1.0), noise.amplitude_damping(0.0)])  # (B, K, 2, 2)
    idx = s.apply_kraus(k, 0, torch.Generator().manual_seed(0))
    # sample 0 decays for sure, sample 1 never
    assert idx.tolist() == [1, 0]
    assert torch.allclose(s.expect("Z0"), torch.tensor([1.0, -1.0], dtype=torch.float64))


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("name", ["depolarizing", "dephasing"])
def test_unitary_mixture_shortcut_equals_the_general_path(cls, name):
    """Pauli channels skip reading the state; the general path (plain=True) must draw the same
    jumps from one seed and leave the same states."""
    prog = _program(3, seed=4)
    states = []
    for plain in (False, True):
        s = cls.zeros(3, batch=64)
        gen = torch.Generator().manual_seed(21)
        drawn = []
        for m, qs in prog:
            s.apply(m, qs if len(qs) == 2 else qs[0])
            for q in qs:
                drawn.append(s.apply_kraus(noise.CHANNELS[name](0.3), q, gen, plain=plain))
        states.append((torch.stack(drawn), s.to_dense()))
    assert torch.equal(states[0][0], states[1][0])
    assert torch.allclose(states[0][1], states[1][1], atol=1e-12)


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("name", CHANNEL_NAMES)
def test_noise_after_a_layer_equals_the_density_matrix(cls, name):
    """after_layer: the channel on every qubit after each layer (a QLAM token's layers)."""
    n, n_traj = 4, 3000
    model = noise.NoiseModel(name, p=0.1, two_qubit_p=0.2)
    layers = []
    rng = np.random.default_rng(5)
    for layer in range(3):
        layers.append(([(G.U3(*rng.uniform(-3, 3, 3)), (q,)) for q in range(n)], False))
        layers.append(([(G.CNOT(), (q, q + 1)) for q in range(layer % 2, n - 1, 2)], True))
    s = cls.zeros(n, batch=n_traj)
    gen = torch.Generator().manual_seed(23)
    rho = np.zeros((2 ** n, 2 ** n), dtype=complex)
    rho[0, 0] = 1
    for gates, two in layers:
        for m, qs in gates:
            s.apply(m, qs if len(qs) == 2 else qs[0])
            rho = _apply_op(rho, m.numpy().astype(complex), qs, n)
        model.after_layer(s, gen, two_qubit=two)
        for q in range(n):
            rho = sum(_apply_op(rho, k, (q,), n) for k in model.kraus(2 if two else 1).numpy())
    for spec in ["Z0", "X1", "Y2", "Z3", "Z0 Z1", "X2 X3"]:
        per_traj = s.expect(spec)
        exact = float(np.trace(rho @ _pauli_dense(spec, n)).real)
        assert abs(float(per_traj.mean()) - exact) < 5 * float(per_traj.std()) / math.sqrt(n_traj) + 1e-12, spec
    before = s.to_dense().clone()
    with pytest.raises(ValueError):
        model.after_layer(s, gen, qubits=[0, 4])
    assert torch.equal(s.to_dense(), before)


@pytest.mark.parametrize("cls", BACKENDS)
def test_apply_channel_checks_every_qubit_before_the_first_jump(cls):
    # review fix: a bad second qubit was refused after the first qubit's jump had changed the state
    s = cls.zeros(2, batch=50).apply(G.H(), 0)
    before = s.to_dense().clone()
    for bad in ([0, 7], [0, 0], [0, 1.0]):
        with pytest.raises(ValueError, match="qubit"):
            noise.apply_channel(s, noise.dephasing(0.5), bad, torch.Generator().manual_seed(0))
        assert torch.equal(s.to_dense(), before)
    with pytest.raises(ValueError, match="trace-preserving"):
        noise.apply_channel(s, torch.ones(2, 2, 2), [0, 1])
    assert torch.equal(s.to_dense(), before)
    # numpy integers are qubits too
    noise.NoiseModel("dephasing", p=1.0).after_gate(s, (np.int64(0),))
    assert torch.allclose(s.expect("X0"), torch.full((50,), -1.0, dtype=torch.float64))
