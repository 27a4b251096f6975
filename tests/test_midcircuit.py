"""Circuits with mid-circuit measurement, reset and classical control, against Qiskit Aer's counts.

Each program is read by both ``qt.Circuit.from_qasm`` and ``qiskit.qasm2.loads`` (or built with
both APIs), run for ``SHOTS`` shots by the engine's trajectories and by ``AerSimulator`` with a
fixed seed, and the two histograms are compared by total-variation distance. Bound: for two
independent N-shot histograms over K outcomes, ``E[TVD] <= sqrt(2K/N)/2`` (Cauchy-Schwarz over
the outcomes' standard errors); the tests allow ``5*sqrt(K/N)``, about seven times that. A
sensitivity check shows a wrong circuit (corrections left out) fails the same bound.
"""
import math

import pytest
import torch

import qlam_tn as qt
from qlam_tn import noise, trajectories

qiskit = pytest.importorskip("qiskit")
qiskit_aer = pytest.importorskip("qiskit_aer")
from qiskit import qasm2, transpile  # noqa: E402
from qiskit_aer import AerSimulator  # noqa: E402

SHOTS = 4000
BACKENDS = ["mps", "statevector"]


def _aer_counts(qc, shots=SHOTS, seed=11, noise_model=None):
    sim = AerSimulator(noise_model=noise_model)
    return sim.run(transpile(qc, sim, optimization_level=0), shots=shots, seed_simulator=seed).result().get_counts()


def _aer_qasm(text, **kw):
    return _aer_counts(qasm2.loads(text, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS), **kw)


def _tvd(a, b):
    na, nb = sum(a.values()), sum(b.values())
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in keys)


def _bound(a, b, shots=SHOTS):
    return 5 * math.sqrt(len(set(a) | set(b)) / shots)


def _close(ours, aer, shots=SHOTS):
    assert sum(ours.values()) == shots
    assert _tvd(ours, aer) < _bound(ours, aer, shots), (ours, aer)


TELEPORT = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[3];
creg m0[1];
creg m1[1];
creg out[1];
u3(1.1,0.4,-0.7) q[0];
h q[1];
cx q[1],q[2];
cx q[0],q[1];
h q[0];
measure q[0] -> m0[0];
measure q[1] -> m1[0];
if(m1==1) x q[2];
if(m0==1) z q[2];
// undo the preparation: the teleported qubit then reads 0 every time
u3(-1.1,0.7,-0.4) q[2];
measure q[2] -> out[0];
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_teleportation_matches_aer_and_needs_its_corrections(backend):
    c = qt.Circuit.from_qasm(TELEPORT)
    ours = qt.simulate(c, shots=SHOTS, seed=1, backend=backend)
    aer = _aer_qasm(TELEPORT)
    _close(ours, aer)
    # the teleported state is undone exactly: out = 0 in every shot, m0 m1 uniform
    assert all(key.startswith("0 ") for key in ours)
    # sensitivity: without the classically controlled corrections the same bound fails
    wrong = qt.Circuit.from_qasm(TELEPORT.replace("if(m1==1) x q[2];", "").replace("if(m0==1) z q[2];", ""))
    assert _tvd(qt.simulate(wrong, shots=SHOTS, seed=1, backend=backend), aer) > _bound(ours, aer)


def test_teleportation_built_with_the_circuit_api():
    c = qt.Circuit(3).add_creg("m0", 1).add_creg("m1", 1).add_creg("out", 1)
    c.u3(1.1, 0.4, -0.7, 0).h(1).cx(1, 2).cx(0, 1).h(0).measure(0, 0).measure(1, 1)
    c.x(2).c_if("m1", 1)
    c.z(2).c_if(0, 1)
    c.measure(2, 2)
    ours = qt.simulate(c, shots=SHOTS, seed=2)
    aer = _aer_qasm(TELEPORT.replace("u3(-1.1,0.7,-0.4) q[2];", ""))
    _close(ours, aer)
    # the teleported qubit reads 1 with probability sin²(1.1/2)
    p1 = sum(v for k, v in ours.items() if k.startswith("1")) / SHOTS
    assert abs(p1 - math.sin(0.55) ** 2) < 5 * math.sqrt(0.25 / SHOTS)


BITFLIP = """OPENQASM 2.0;
include "qelib1.inc";
qreg d[3];
qreg a[2];
creg syn[2];
creg out[1];
ry(0.9) d[0];
cx d[0],d[1];
cx d[0],d[2];
// a coherent error on one data qubit: a bit flip with probability sin²(0.35)
rx(0.7) d[1];
cx d[0],a[0];
cx d[1],a[0];
cx d[1],a[1];
cx d[2],a[1];
measure a -> syn;
if(syn==1) x d[0];
if(syn==3) x d[1];
if(syn==2) x d[2];
reset a;
cx d[0],d[2];
cx d[0],d[1];
ry(-0.9) d[0];
measure d[0] -> out[0];
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_bit_flip_code_with_syndrome_measurement_matches_aer(backend):
    c = qt.Circuit.from_qasm(BITFLIP)
    ours = qt.simulate(c, shots=SHOTS, seed=3, backend=backend)
    _close(ours, _aer_qasm(BITFLIP))
    # the code corrects the single flip: the logical qubit is restored in every shot
    assert all(key.startswith("0 ") for key in ours)
    assert set(k.split()[1] for k in ours) == {"00", "11"}  # syndromes: no error, or d[1] flipped


def _ipe(phi, bits=3):
    """Iterative phase estimation of P(2πφ) on its eigenstate |1>, one ancilla reset each round,
    the phase corrections of the earlier bits classically controlled."""
    lines = ['OPENQASM 2.0;', 'include "qelib1.inc";', "qreg a[1];", "qreg e[1];"]
    lines += [f"creg c{k}[1];" for k in range(bits)]
    lines.append("x e[0];")
    for k in range(bits):  # bit k is the (bits-k)-th binary digit, least significant first
        power = 2 ** (bits - 1 - k)
        lines += ["reset a[0];", "h a[0];", f"cu1({2 * math.pi * phi * power!r}) a[0],e[0];"]
        for j in range(k):
            lines.append(f"if(c{j}==1) u1({-math.pi / 2 ** (k - j)!r}) a[0];")
        lines += ["h a[0];", f"measure a[0] -> c{k}[0];"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("phi", [5 / 8, 0.3])
def test_iterative_phase_estimation_matches_aer(phi):
    text = _ipe(phi)
    ours = qt.simulate(qt.Circuit.from_qasm(text), shots=SHOTS, seed=4)
    _close(ours, _aer_qasm(text))
    if phi == 5 / 8:  # exact in three bits: 0.101 read as "c2 c1 c0" = "1 0 1", every shot
        assert ours == {"1 0 1": SHOTS}


def _bb84(eve: bool):
    """Alice's bit and basis, Bob's basis (and Eve's) drawn by measuring |+> qubits; the message
    qubit is prepared, (intercepted, resent,) and measured under classical control."""
    lines = ['OPENQASM 2.0;', 'include "qelib1.inc";', "qreg r[4];", "qreg m[1];",
             "creg abit[1];", "creg abase[1];", "creg bbase[1];", "creg ebase[1];", "creg bob[1];", "creg eve[1];",
             "h r;", "measure r[0] -> abit[0];", "measure r[1] -> abase[0];", "measure r[2] -> bbase[0];",
             "measure r[3] -> ebase[0];", "if(abit==1) x m[0];", "if(abase==1) h m[0];"]
    if eve:
        lines += ["if(ebase==1) h m[0];", "measure m[0] -> eve[0];", "reset m[0];", "if(eve==1) x m[0];",
                  "if(ebase==1) h m[0];"]
    lines += ["if(bbase==1) h m[0];", "measure m[0] -> bob[0];"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("eve", [False, True])
def test_bb84_matches_aer_and_eve_raises_the_error_rate(eve):
    text = _bb84(eve)
    ours = qt.simulate(qt.Circuit.from_qasm(text), shots=SHOTS, seed=5)
    _close(ours, _aer_qasm(text))
    # sifted key (bases agree): Bob's bit equals Alice's, unless Eve measured (25% errors)
    sifted = errors = 0
    for key, n in ours.items():
        eve_bit, bob, ebase, bbase, abase, abit = key.split()
        if abase == bbase:
            sifted += n
            errors += n * (bob != abit)
    rate, want = errors / sifted, (0.25 if eve else 0.0)
    assert abs(rate - want) < 5 * math.sqrt(0.25 * 0.75 / sifted) + 1e-12


def test_count_keys_follow_qiskits_register_layout():
    text = """OPENQASM 2.0; include "qelib1.inc"; qreg q[4]; creg a[2]; creg b[1]; creg c[3];
    x q[0]; x q[3]; measure q[0] -> a[1]; measure q[1] -> a[0]; measure q[2] -> b[0];
    measure q[3] -> c[2]; measure q[0] -> c[0];"""
    ours = qt.simulate(qt.Circuit.from_qasm(text), shots=10, seed=0)
    assert ours == _aer_qasm(text, shots=10) == {"101 0 10": 10}


def test_noisy_circuit_counts_match_aer_noise_model():
    from qiskit_aer.noise import NoiseModel, depolarizing_error

    text = """OPENQASM 2.0; include "qelib1.inc"; qreg q[3]; creg c[3];
    h q[0]; cx q[0],q[1]; cx q[1],q[2]; measure q[0] -> c[0]; if(c==1) x q[1]; measure q[1] -> c[1];
    measure q[2] -> c[2];"""
    p1, p2 = 0.05, 0.1
    model = noise.NoiseModel("depolarizing", p=p1, two_qubit_p=p2)
    ours = qt.simulate(qt.Circuit.from_qasm(text), shots=SHOTS, seed=6, noise=model)
    nm = NoiseModel()
    nm.add_all_qubit_quantum_error(depolarizing_error(p1, 1), ["h", "x"])
    nm.add_all_qubit_quantum_error(depolarizing_error(p2, 1).tensor(depolarizing_error(p2, 1)), ["cx"])
    aer = _aer_qasm(text, noise_model=nm)
    _close(ours, aer)
    assert len(ours) > 4  # non-vacuous: without noise only "000" and "101" occur


def test_batched_trajectories_agree_with_the_one_shot_reference():
    c = qt.Circuit.from_qasm(BITFLIP)
    aer = _aer_qasm(BITFLIP, shots=400)
    batched = trajectories.run(c, 400, seed=7, max_batch=128)
    reference = trajectories.run_reference(c, 400, seed=7)
    assert batched.clbits.shape == (400, 3) and reference.clbits.shape == (400, 3)
    _close(batched.counts, aer, 400)
    _close(reference.counts, aer, 400)


def test_seed_and_generator_make_the_counts_reproducible():
    c = qt.Circuit.from_qasm(TELEPORT)
    assert qt.simulate(c, shots=200, seed=9) == qt.simulate(c, shots=200, seed=9)
    a = qt.simulate(c, shots=200, generator=torch.Generator().manual_seed(9))
    assert a == qt.simulate(c, shots=200, seed=9)
    assert a != qt.simulate(c, shots=200, seed=10)


def test_bad_input_is_refused():
    c = qt.Circuit.from_qasm(TELEPORT)
    with pytest.raises(ValueError, match="shots"):
        qt.simulate(c)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="shots"):
            qt.simulate(c, shots=bad)
    with pytest.raises(ValueError, match="not both"):
        qt.simulate(c, shots=10, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="batch axis holds the shots"):
        qt.simulate(c, shots=10, batch=4)
    with pytest.raises(ValueError, match="measures nothing"):
        qt.simulate(qt.Circuit(2).h(0), shots=10)
    with pytest.raises(ValueError, match="out of range"):
        qt.Circuit(2, n_clbits=1).measure(0, 1)
    with pytest.raises(ValueError, match="does not fit"):
        qt.Circuit(2, n_clbits=1).x(0).c_if(0, 2)
    with pytest.raises(ValueError, match="no classical register"):
        qt.Circuit(2, n_clbits=1).x(0).c_if("d", 0)
    with pytest.raises(ValueError, match="already has a condition"):
        qt.Circuit(2, n_clbits=1).x(0).c_if(0, 1).c_if(0, 0)
    with pytest.raises(ValueError, match="not a gate"):
        list(qt.Circuit(1, n_clbits=1).measure(0, 0).ops())


def test_c_if_conditions_a_whole_decomposition():
    c = qt.Circuit(3, n_clbits=1).ccx(0, 1, 2).c_if(0, 1)
    assert len(c) == 15 and all(op.condition == ((0,), 1) for op in c.operations)
    assert not c.is_unitary and qt.Circuit(2).h(0).is_unitary


@pytest.mark.parametrize("text,match", [
    ("qreg q[1]; creg c[1]; if(d==1) x q[0];", "undeclared"),
    ("qreg q[1]; creg c[1]; if(q==1) x q[0];", "quantum register"),
    ("qreg q[1]; creg c[1]; if(c==2) x q[0];", "does not fit"),
    ("qreg q[2]; creg c[1]; measure q -> c;", "registers of one size"),
    ("qreg q[2]; creg c[2]; measure q[0] -> c;", "registers of one size"),
    ("qreg q[1]; creg c[1]; if(c==1) barrier q;", "gate call, measure or reset"),
])
def test_qasm_reader_refuses_bad_classical_control(text, match):
    with pytest.raises(ValueError, match=match):
        qt.Circuit.from_qasm('OPENQASM 2.0; include "qelib1.inc"; ' + text)


def test_drop_final_measurements_keeps_its_meaning():
    text = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
    c = qt.Circuit.from_qasm(text, drop_final_measurements=True)
    assert c.is_unitary and len(c) == 2
    mid = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; measure q[0] -> c[0]; x q[0];'
    with pytest.raises(ValueError, match="mid-circuit"):
        qt.Circuit.from_qasm(mid, drop_final_measurements=True)
    for text in ['OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; reset q[0];',
                 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; if(c==1) x q[0];']:
        with pytest.raises(ValueError, match="drop_final_measurements"):
            qt.Circuit.from_qasm(text, drop_final_measurements=True)
    # without it the measurements are ops, and the counts are the Bell pair's
    bell = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
    ours = qt.simulate(qt.Circuit.from_qasm(bell), shots=SHOTS, seed=8)
    assert set(ours) == {"00", "11"} and abs(ours["00"] / SHOTS - 0.5) < 5 * math.sqrt(0.25 / SHOTS)


@pytest.mark.parametrize("text", [TELEPORT, BITFLIP, _ipe(0.3), _bb84(True)], ids=["teleport", "bitflip", "ipe", "bb84"])
def test_qasm_and_qiskit_round_trips_keep_the_ops_and_the_counts(text):
    c = qt.Circuit.from_qasm(text)
    again = qt.Circuit.from_qasm(c.to_qasm())
    assert list(again.operations) == list(c.operations) and again.cregs == c.cregs
    qc = c.to_qiskit()
    back = qt.Circuit.from_qiskit(qc)
    assert list(back.operations) == list(c.operations) and back.cregs == c.cregs
    # the exported Qiskit circuit gives Aer the same distribution as the file
    ours = qt.simulate(c, shots=SHOTS, seed=12)
    _close(ours, _aer_counts(qc))


def test_from_qiskit_reads_if_test_blocks_built_with_qiskit():
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

    q, c, d = QuantumRegister(3, "q"), ClassicalRegister(2, "c"), ClassicalRegister(1, "d")
    qc = QuantumCircuit(q, c, d)
    qc.h(0)
    qc.h(1)
    qc.measure(0, c[0])
    qc.measure(1, c[1])
    with qc.if_test((c, 3)):
        qc.x(2)
        qc.h(0)
    with qc.if_test((c[0], 0)):
        qc.ry(0.8, 2)
    qc.reset(1)
    qc.measure(2, d[0])
    qc.measure(0, c[0])
    ours = qt.simulate(qt.Circuit.from_qiskit(qc), shots=SHOTS, seed=13)
    _close(ours, _aer_counts(qc))
    with qc.if_test((d, 1)) as else_:
        qc.x(0)
    with else_:
        qc.x(1)
    with pytest.raises(ValueError, match="else"):
        qt.Circuit.from_qiskit(qc)
    with pytest.raises(ValueError, match="'if_else'"):  # drop_final_measurements asks for a unitary circuit
        qt.Circuit.from_qiskit(qc, drop_final_measurements=True)


def test_conditioned_measure_and_reset_match_aer():
    text = """OPENQASM 2.0; include "qelib1.inc"; qreg q[3]; creg a[1]; creg b[1]; creg d[2];
    h q[0]; ry(1.2) q[1]; ry(2.0) q[2]; measure q[0] -> a[0];
    if(a==1) measure q[1] -> b[0];
    if(a==0) reset q[2];
    cx q[1],q[2]; h q[1]; measure q[1] -> d[0]; measure q[2] -> d[1];"""  # h: collapse shows in X
    for backend in BACKENDS:
        ours = qt.simulate(qt.Circuit.from_qasm(text), shots=SHOTS, seed=14, backend=backend)
        _close(ours, _aer_qasm(text))
        # b is written only in the shots where a == 1
        assert all(key.split()[1] == "0" for key in ours if key.endswith(" 0"))


def test_depth_and_drawing_keep_a_condition_after_its_measurement():
    c = qt.Circuit(2, n_clbits=1).h(0).measure(0, 0).x(1).c_if(0, 1)
    assert c.depth() == 3  # h, measure, then x (it reads the bit): not 1 as the qubits alone allow
    lines = str(c).splitlines()
    assert lines[-1].index("X?1") > lines[0].index("M→c0")


def test_a_condition_on_64_or_more_clbits_compares_every_bit():
    # review fix: the register was read as a weighted int64 sum, so bit 64 and above wrapped away
    n = 66
    c = qt.Circuit(2, n_clbits=n).x(0).measure(0, 65).x(1).c_if(list(range(n)), 0).measure(1, 0)
    assert trajectories.run(c, 8, seed=0).clbits[:, 0].tolist() == [0] * 8  # clbit 65 is 1: x does not run
    c = qt.Circuit(2, n_clbits=n).x(0).measure(0, 65).x(1).c_if(list(range(n)), 2 ** 65).measure(1, 0)
    assert trajectories.run(c, 8, seed=0).clbits[:, 0].tolist() == [1] * 8


def test_bad_max_batch_and_seed_are_named():
    c = qt.Circuit(1, n_clbits=1).h(0).measure(0, 0)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="max_batch"):
            trajectories.run(c, 10, max_batch=bad)
    with pytest.raises(TypeError, match="seed"):
        trajectories.run(c, 10, seed=1.5)


def test_nested_if_test_blocks_need_every_condition():
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

    q, m, o = QuantumRegister(4, "q"), ClassicalRegister(2, "m"), ClassicalRegister(2, "o")
    qc = QuantumCircuit(q, m, o)
    qc.h(0)
    qc.h(1)
    qc.measure(0, m[0])
    qc.measure(1, m[1])
    with qc.if_test((m, 3)):
        qc.x(2)
        with qc.if_test((m[0], 1)):  # implied by m == 3
            qc.ccx(0, 1, 3)
        with qc.if_test((m[1], 0)):  # contradicts m == 3: never runs
            qc.x(3)
    with qc.if_test((m[0], 1)):
        with qc.if_test((m[1], 0)):  # both: m == 1
            qc.h(2)
    qc.measure(2, o[0])
    qc.measure(3, o[1])
    c = qt.Circuit.from_qiskit(qc)
    assert {op.condition for op in c.operations if op.condition} == {((0, 1), 3), ((0, 1), 1)}
    ours = qt.simulate(c, shots=SHOTS, seed=15)
    aer = _aer_counts(qc)
    _close(ours, aer)
    assert set(ours) == {"00 00", "00 01", "01 01", "00 10", "11 11"}


def test_to_qasm_keeps_register_names_apart():
    c = qt.Circuit(2)
    c.add_creg("q", 2)
    c.h(0).cx(0, 1).measure(0, 0).measure(1, 1).x(0).c_if("q", 3).measure(0, 0)
    text = c.to_qasm()
    assert "qreg q_[2];" in text and "creg q[2];" in text
    back = qt.Circuit.from_qasm(text)
    assert list(back.operations) == list(c.operations) and back.cregs == c.cregs
    _close(qt.simulate(back, shots=SHOTS, seed=16), _aer_qasm(text))
    for bad in ("h", "pi", "U", "Meas"):  # a gate, a keyword, not a lower-case identifier
        c = qt.Circuit(1)
        c.add_creg(bad, 1)
        with pytest.raises(ValueError, match="cannot be declared"):
            c.measure(0, 0).to_qasm()


def test_an_if_test_block_that_rewrites_its_own_condition_is_refused():
    # review fix: Qiskit reads a block's condition once, the engine at each op; they part when the
    # block measures into a bit it is conditioned on and goes on (Aer gives '11' here, per-op '01')
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(2, 2)
    qc.x(0)
    with qc.if_test((qc.cregs[0], 0)):
        qc.measure(0, 0)
        qc.x(1)
    qc.measure(1, 1)
    assert _aer_counts(qc, shots=20) == {"11": 20}
    with pytest.raises(ValueError, match="reads the condition once"):
        qt.Circuit.from_qiskit(qc)
    # measuring last in the block, or into a bit the condition does not read, is the same either way
    ok = QuantumCircuit(3, 3)
    ok.x(0)
    with ok.if_test((ok.clbits[2], 0)):
        ok.measure(0, 0)
        ok.x(1)
        with ok.if_test((ok.clbits[0], 1)):
            ok.x(2)
        ok.measure(1, 2)
    ok.measure(1, 1)
    ok.measure(2, 0)
    _close(qt.simulate(qt.Circuit.from_qiskit(ok), shots=200, seed=17), _aer_counts(ok, shots=200), 200)
    # a nested block that reads the rewritten bit would be merged as a contradiction: refused too
    nested = QuantumCircuit(2, 2)
    with nested.if_test((nested.clbits[0], 0)):
        nested.x(0)
        nested.measure(0, 0)
        with nested.if_test((nested.clbits[0], 1)):
            nested.x(1)
    with pytest.raises(ValueError, match="reads the condition once"):
        qt.Circuit.from_qiskit(nested)


def test_statevector_trajectories_run_in_chunks_that_fit_the_dense_limit(monkeypatch):
    # review fix: shots x 2^n amplitudes in one chunk were refused by StateVector.zeros (4096
    # shots of 20 qubits: 64 GiB) although smaller chunks fit
    from qlam_tn import statevector

    monkeypatch.setattr(statevector, "MAX_STATE_BYTES", 5 * statevector.state_bytes(3, 1, torch.complex128))
    c = qt.Circuit(3, n_clbits=3).h(0).cx(0, 1).cx(1, 2).measure(0, 0).measure(1, 1).measure(2, 2)
    with pytest.raises(ValueError, match="MAX_STATE_BYTES"):
        qt.StateVector.zeros(3, batch=6)
    r = trajectories.run(c, 400, backend="statevector", seed=3)
    assert r.clbits.shape == (400, 3) and set(r.counts) == {"000", "111"}
    assert abs(r.counts["000"] / 400 - 0.5) < 5 * math.sqrt(0.25 / 400)


def test_creg_offsets_and_the_bound_on_all_clbits(monkeypatch):
    # review fix: each measure summed the sizes of every creg declared before its own (quadratic),
    # and the clbits of all cregs together were not bounded (only each creg's)
    from qlam_tn import qasm

    text = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg a[2]; creg b[1]; creg d[3];' \
           "x q[1]; measure q[1] -> d[2]; measure q -> a; if(d==4) x q[0]; measure q[0] -> b[0];"
    c = qt.Circuit.from_qasm(text)
    assert [op.params for op in c.operations if op.name == "measure"] == [(5,), (0,), (1,), (2,)]
    assert c.operations[4].condition == ((3, 4, 5), 4)
    assert qt.simulate(c, shots=5, seed=0) == _aer_qasm(text, shots=5) == {"100 1 10": 5}
    monkeypatch.setattr(qasm, "MAX_QUBITS", 5)
    with pytest.raises(ValueError, match=r"line 1: creg d\[3\] makes 6 classical bits.*MAX_QUBITS"):
        qt.Circuit.from_qasm(text)


def test_creg_bits_and_copies_keep_their_own_registers():
    c = qt.Circuit(1)
    sizes = [1 + i % 3 for i in range(300)]
    for i, size in enumerate(sizes):           # many registers: one dict lookup each
        c.add_creg(f"r{i}", size)
    starts = [sum(sizes[:i]) for i in range(300)]
    for i in (0, 5, 151, 299):
        assert c.creg_bits(f"r{i}") == tuple(range(starts[i], starts[i] + sizes[i]))
    assert c.n_clbits == sum(sizes) and c.cregs == tuple((f"r{i}", s) for i, s in enumerate(sizes))
    d = c.copy().add_creg("extra", 2)
    assert len(c.cregs) == 300 and len(d.cregs) == 301 and d.creg_bits("extra") == (c.n_clbits, c.n_clbits + 1)
    with pytest.raises(ValueError, match="no classical register 'extra'"):
        c.creg_bits("extra")
    with pytest.raises(ValueError, match="declared twice"):
        c.add_creg("r7", 1)
