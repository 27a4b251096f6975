"""Qiskit interop: 200 random Qiskit circuits against Qiskit's exact statevector, OpenQASM both
ways through Qiskit's own reader and writer, and every unsupported instruction.

Qiskit is little-endian: its qubit 0 is the rightmost bit of a basis label and of a Pauli
label. The engine is big-endian, so amplitudes are compared after reversing the qubit axes
and Pauli labels are reversed.
"""
import math

import numpy as np
import pytest
import torch

qiskit = pytest.importorskip("qiskit")

from qiskit import QuantumCircuit, qasm2  # noqa: E402
from qiskit.circuit import Gate, Instruction, Parameter  # noqa: E402
from qiskit.circuit import library as lib  # noqa: E402
from qiskit.quantum_info import Pauli, Statevector, random_unitary  # noqa: E402

import qlam_tn as qt  # noqa: E402


def big_endian(sv, n):
    """Qiskit's little-endian amplitudes in the engine's big-endian order."""
    return np.asarray(sv.data if hasattr(sv, "data") else sv).reshape([2] * n).transpose(range(n - 1, -1, -1)).reshape(-1)


def angle(rng):
    return float(rng.uniform(-2 * math.pi, 2 * math.pi))


POOL = [  # (name, number of qubits, how to append)
    ("h", 1, lambda qc, r, q: qc.h(*q)), ("x", 1, lambda qc, r, q: qc.x(*q)),
    ("y", 1, lambda qc, r, q: qc.y(*q)), ("z", 1, lambda qc, r, q: qc.z(*q)),
    ("s", 1, lambda qc, r, q: qc.s(*q)), ("sdg", 1, lambda qc, r, q: qc.sdg(*q)),
    ("t", 1, lambda qc, r, q: qc.t(*q)), ("tdg", 1, lambda qc, r, q: qc.tdg(*q)),
    ("sx", 1, lambda qc, r, q: qc.sx(*q)), ("sxdg", 1, lambda qc, r, q: qc.sxdg(*q)),
    ("id", 1, lambda qc, r, q: qc.id(*q)),
    ("rx", 1, lambda qc, r, q: qc.rx(angle(r), *q)), ("ry", 1, lambda qc, r, q: qc.ry(angle(r), *q)),
    ("rz", 1, lambda qc, r, q: qc.rz(angle(r), *q)), ("p", 1, lambda qc, r, q: qc.p(angle(r), *q)),
    ("u", 1, lambda qc, r, q: qc.u(angle(r), angle(r), angle(r), *q)),
    ("u1", 1, lambda qc, r, q: qc.append(lib.U1Gate(angle(r)), q)),
    ("u2", 1, lambda qc, r, q: qc.append(lib.U2Gate(angle(r), angle(r)), q)),
    ("u3", 1, lambda qc, r, q: qc.append(lib.U3Gate(angle(r), angle(r), angle(r)), q)),
    ("r", 1, lambda qc, r, q: qc.r(angle(r), angle(r), *q)),
    ("unitary1", 1, lambda qc, r, q: qc.append(lib.UnitaryGate(random_unitary(2, seed=int(r.integers(1 << 30)))), q)),
    ("cx", 2, lambda qc, r, q: qc.cx(*q)), ("cy", 2, lambda qc, r, q: qc.cy(*q)),
    ("cz", 2, lambda qc, r, q: qc.cz(*q)), ("ch", 2, lambda qc, r, q: qc.ch(*q)),
    ("swap", 2, lambda qc, r, q: qc.swap(*q)), ("iswap", 2, lambda qc, r, q: qc.iswap(*q)),
    ("rxx", 2, lambda qc, r, q: qc.rxx(angle(r), *q)), ("ryy", 2, lambda qc, r, q: qc.ryy(angle(r), *q)),
    ("rzz", 2, lambda qc, r, q: qc.rzz(angle(r), *q)), ("rzx", 2, lambda qc, r, q: qc.rzx(angle(r), *q)),
    ("crx", 2, lambda qc, r, q: qc.crx(angle(r), *q)), ("cry", 2, lambda qc, r, q: qc.cry(angle(r), *q)),
    ("crz", 2, lambda qc, r, q: qc.crz(angle(r), *q)), ("cp", 2, lambda qc, r, q: qc.cp(angle(r), *q)),
    ("cu1", 2, lambda qc, r, q: qc.append(lib.CU1Gate(angle(r)), q)),
    ("cu3", 2, lambda qc, r, q: qc.append(lib.CU3Gate(angle(r), angle(r), angle(r)), q)),
    ("cu", 2, lambda qc, r, q: qc.cu(angle(r), angle(r), angle(r), angle(r), *q)),
    ("csx", 2, lambda qc, r, q: qc.csx(*q)), ("ecr", 2, lambda qc, r, q: qc.ecr(*q)),
    ("dcx", 2, lambda qc, r, q: qc.dcx(*q)),
    ("cx_o0", 2, lambda qc, r, q: qc.append(lib.CXGate(ctrl_state=0), q)),
    ("xx_plus_yy", 2, lambda qc, r, q: qc.append(lib.XXPlusYYGate(angle(r), angle(r)), q)),
    ("unitary2", 2, lambda qc, r, q: qc.append(lib.UnitaryGate(random_unitary(4, seed=int(r.integers(1 << 30)))), q)),
    ("ccx", 3, lambda qc, r, q: qc.ccx(*q)), ("cswap", 3, lambda qc, r, q: qc.cswap(*q)),
    ("ccz", 3, lambda qc, r, q: qc.ccz(*q)),
]
QASM_SAFE = {"h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "sxdg", "id", "rx", "ry", "rz", "p", "u", "u1",
             "u2", "u3", "cx", "cy", "cz", "ch", "swap", "iswap", "rxx", "ryy", "rzz", "crx", "cry", "crz", "cp",
             "cu1", "cu3", "ccx", "cswap"}


def random_qiskit_circuit(seed, names=None):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(9, 13)) if seed % 25 == 0 else int(rng.integers(1, 9))
    pool = [g for g in POOL if g[1] <= n and (names is None or g[0] in names)]
    qc = QuantumCircuit(n, global_phase=angle(rng) if seed % 3 == 0 else 0.0)
    for _ in range(int(rng.integers(4, 28))):
        _, k, add = pool[int(rng.integers(len(pool)))]
        add(qc, rng, [int(q) for q in rng.choice(n, k, replace=False)])
    return qc


def pauli_labels(n, rng, count=6):
    """Big-endian labels (qubit 0 first); Qiskit's label of the same operator is reversed."""
    out = ["Z" * n]
    for _ in range(count - 1):
        out.append("".join(rng.choice(list("IXYZ"), n)))
    return out


@pytest.mark.parametrize("chunk", range(10))
def test_200_random_qiskit_circuits_match_qiskit_statevector(chunk):
    for seed in range(chunk * 20, chunk * 20 + 20):
        qc = random_qiskit_circuit(seed)
        n = qc.num_qubits
        ref = Statevector(qc)
        circuit = qt.Circuit.from_qiskit(qc)
        psi = qt.simulate(circuit, backend="mps", dtype=torch.complex128)
        np.testing.assert_allclose(psi.to_dense()[0].numpy(), big_endian(ref, n), atol=1e-10,
                                   err_msg=f"seed {seed}")
        rng = np.random.default_rng(seed)
        for label in pauli_labels(n, rng):
            want = ref.expectation_value(Pauli(label[::-1])).real
            got = psi.expect(label).item() if set(label) != {"I"} else 1.0
            assert abs(got - want) < 1e-10, (seed, label)


def test_against_aer_statevector():
    aer = pytest.importorskip("qiskit_aer")
    sim = aer.AerSimulator(method="statevector")
    for seed in range(0, 200, 20):
        qc = random_qiskit_circuit(seed)
        n = qc.num_qubits
        run = qiskit.transpile(qc, sim, optimization_level=0)
        run.save_statevector()
        vec = np.asarray(sim.run(run).result().get_statevector())
        psi = qt.simulate(qt.Circuit.from_qiskit(qc)).to_dense()[0].numpy()
        np.testing.assert_allclose(psi, big_endian(vec, n), atol=1e-10, err_msg=f"seed {seed}")


def test_endianness_of_a_basis_state():
    qc = QuantumCircuit(3)
    qc.x(0)  # Qiskit: |001> (index 1); the engine: |100> (index 4)
    assert np.argmax(abs(Statevector(qc).data)) == 1
    psi = qt.simulate(qt.Circuit.from_qiskit(qc)).to_dense()[0]
    assert int(torch.argmax(psi.abs())) == 4
    # A 2-qubit matrix from Qiskit is re-indexed, so an asymmetric gate keeps its meaning.
    qc = QuantumCircuit(2)
    qc.x(0)
    qc.append(lib.UnitaryGate(lib.CXGate().to_matrix()), [0, 1])  # control 0, target 1
    c = qt.Circuit.from_qiskit(qc)
    assert c.operations[-1].name == "unitary"
    np.testing.assert_allclose(qt.simulate(c).to_dense()[0].numpy(), [0, 0, 0, 1], atol=1e-15)


@pytest.mark.parametrize("seed", range(1, 200, 8))
def test_to_qiskit_and_qasm_both_ways(seed):
    """Conversions only: the exact statevector backend keeps this fast."""
    qc = random_qiskit_circuit(seed)
    n = qc.num_qubits
    c = qt.Circuit.from_qiskit(qc)
    psi = qt.simulate(c, backend="statevector").to_dense()[0].numpy()
    # Engine -> Qiskit: same state, global phase included.
    np.testing.assert_allclose(big_endian(Statevector(c.to_qiskit()), n), psi, atol=1e-10)
    # QASM round trip of the engine's own writer and reader (2-qubit unitaries cannot be written).
    named = qt.Circuit.from_qiskit(random_qiskit_circuit(seed, QASM_SAFE))
    ref = qt.simulate(named, backend="statevector").to_dense()[0].numpy()
    text = named.to_qasm()
    back = qt.Circuit.from_qasm(text)
    assert [op.name for op in back] == [op.name for op in named]
    # OpenQASM drops the global phase: compare with it removed.
    phase = np.exp(-1j * named.global_phase)
    np.testing.assert_allclose(qt.simulate(back, backend="statevector").to_dense()[0].numpy(), phase * ref,
                               atol=1e-10)
    # Qiskit reads what the engine writes, and the engine reads what Qiskit writes.
    np.testing.assert_allclose(big_endian(Statevector(qasm2.loads(text)), named.n_qubits), phase * ref, atol=1e-10)
    if "unitary" not in {ci.operation.name for ci in qc.data}:
        qiskit_text = qasm2.dumps(qc)
        theirs = qt.simulate(qt.Circuit.from_qasm(qiskit_text), backend="statevector").to_dense()[0].numpy()
        overlap = abs(np.vdot(theirs, psi))  # Qiskit's definitions may carry global phases
        assert abs(overlap - 1) < 1e-10


def test_gates_expanded_through_definitions_and_global_phase():
    qc = QuantumCircuit(5, global_phase=0.3)
    qc.h(range(5))
    qc.append(lib.QFTGate(4), [4, 0, 2, 1])
    qc.mcx([0, 1, 2], 4)
    qc.append(lib.GlobalPhaseGate(0.5), [])
    sub = QuantumCircuit(2, name="block")
    sub.ry(0.4, 0)
    sub.cz(0, 1)
    qc.append(sub.to_instruction(), [3, 1])  # a non-Gate Instruction with a definition
    qc.append(sub.to_gate(), [2, 0])
    c = qt.Circuit.from_qiskit(qc)
    np.testing.assert_allclose(qt.simulate(c).to_dense()[0].numpy(), big_endian(Statevector(qc), 5), atol=1e-10)


def test_parameters_must_be_bound_and_drop_final_measurements():
    theta = Parameter("θ")
    qc = QuantumCircuit(2)
    qc.rx(theta, 0)
    with pytest.raises(ValueError, match="'rx'.*not bound"):
        qt.Circuit.from_qiskit(qc)
    bound = qc.assign_parameters({theta: 0.3})
    assert qt.Circuit.from_qiskit(bound).operations[0] == ("rx", (0,), (0.3,))
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.barrier()
    qc.measure([0, 1], [0, 1])
    assert [op.name for op in qt.Circuit.from_qiskit(qc)] == ["h", "cx", "measure", "measure"]
    c = qt.Circuit.from_qiskit(qc, drop_final_measurements=True)
    assert [op.name for op in c] == ["h", "cx"]


def _mid_measure():
    qc = QuantumCircuit(2, 1)
    qc.h(0)
    qc.measure(0, 0)
    qc.x(0)
    return qc


def _reset():
    qc = QuantumCircuit(1)
    qc.reset(0)
    return qc


def _if():
    qc = QuantumCircuit(1, 1)
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(0)
    return qc


def _while():
    qc = QuantumCircuit(1, 1)
    with qc.while_loop((qc.clbits[0], 0)):
        qc.h(0)
    return qc


def _opaque_gate():
    qc = QuantumCircuit(3)
    qc.append(Gate("magic", 3, []), [0, 1, 2])
    return qc


def _opaque_instruction():
    qc = QuantumCircuit(1)
    qc.append(Instruction("blackbox", 1, 0, []), [0])
    return qc


def _initialize():
    qc = QuantumCircuit(1)
    qc.initialize([0, 1], 0)
    return qc


def _classical_instruction():
    qc = QuantumCircuit(1, 1)
    qc.append(Instruction("readout", 1, 1, []), [0], [0])
    return qc


@pytest.mark.parametrize("build, match", [
    (_mid_measure, "'measure'.*mid-circuit"),
    (_reset, "'reset'"),
    (_if, "'if_else'"),
    (_while, "'while_loop'"),
    (_opaque_gate, "'magic'.*opaque"),
    (_opaque_instruction, "'blackbox'.*opaque"),
    (_initialize, "'reset'.*inside 'initialize'"),
    (_classical_instruction, "'readout'.*classical bits"),
])
def test_unsupported_qiskit_instructions_raise_naming_them(build, match):
    with pytest.raises(ValueError, match=match):
        qt.Circuit.from_qiskit(build(), drop_final_measurements=True)


def test_to_qiskit_refuses_per_sample_parameters():
    c = qt.Circuit(1).rx(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="batch 3"):
        c.to_qiskit()
    with pytest.raises(TypeError, match="QuantumCircuit"):
        qt.Circuit.from_qiskit("h q[0];")
