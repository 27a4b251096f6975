"""The planner (qlam_tn.planner) against the dense statevector and the gate-by-gate route."""
import math

import numpy as np
import pytest
import torch

import qlam_tn as qt
from qlam_tn import planner
from qlam_tn.circuit import GATES
from qlam_tn.linalg import CUTOFF_MODES

ONE_Q = ("h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "sxdg", "rx", "ry", "rz", "p", "u3")
TWO_Q = ("cx", "cy", "cz", "ch", "swap", "iswap", "rxx", "ryy", "rzz", "crx", "cry", "crz", "cp", "cu3")


def random_circuit(n: int, n_ops: int, seed: int, batch=None, params=None) -> qt.Circuit:
    """Every named gate kind, long-range pairs, 2-qubit ``unitary`` ops, a global phase; with
    ``batch``, a (B,) parameter on some gates (``params``: the tensor to take them from)."""
    rng = np.random.default_rng(seed)
    c = qt.Circuit(n, global_phase=float(rng.uniform(-3, 3)))
    for k in range(n_ops):
        a, b = (int(x) for x in rng.choice(n, 2, replace=False))
        if rng.random() < 0.4:
            name = ONE_Q[rng.integers(len(ONE_Q))]
            qs = (a,)
        elif rng.random() < 0.1:
            m = torch.linalg.qr(torch.randn(4, 4, dtype=torch.complex128,
                                            generator=torch.Generator().manual_seed(seed * 1000 + k)))[0]
            c.unitary(m, (a, b))
            continue
        else:
            name = TWO_Q[rng.integers(len(TWO_Q))]
            qs = (a, b)
        n_params = len(GATES[name].params)
        values = [float(v) for v in rng.uniform(-math.pi, math.pi, n_params)]
        if batch is not None and n_params and rng.random() < 0.5:
            values[0] = params[k % params.shape[0]] if params is not None else torch.as_tensor(
                rng.uniform(-3, 3, batch))
        c.append(name, qs, values)
    return c


def dense(c: qt.Circuit, **kw) -> torch.Tensor:
    return qt.simulate(c, backend="statevector", **kw).to_dense()


@pytest.mark.parametrize("seed", range(6))
def test_planned_matches_the_statevector_on_random_long_range_circuits(seed):
    n = 4 + seed  # 4..9 qubits
    c = random_circuit(n, 60, seed)
    psi = qt.simulate(c, backend="mps")
    assert torch.allclose(psi.to_dense(), dense(c), atol=1e-10)
    assert float(psi.discarded_weight[0]) < 1e-20


@pytest.mark.parametrize("mode", CUTOFF_MODES)
def test_every_cutoff_mode_keeps_an_exact_state_exact(mode):
    c = random_circuit(8, 80, seed=11)
    psi = qt.simulate(c, backend="mps", cutoff=1e-13, cutoff_mode=mode)
    assert torch.allclose(psi.to_dense(), dense(c), atol=1e-8)


def test_per_sample_parameters_give_each_sample_its_own_state():
    c = random_circuit(6, 50, seed=3, batch=4)
    assert c.batch == 4
    psi = qt.simulate(c, backend="mps")
    assert torch.allclose(psi.to_dense(), dense(c), atol=1e-10)


def test_a_circuit_without_per_sample_parameters_runs_on_any_batch():
    c = random_circuit(5, 30, seed=5)
    psi = qt.simulate(c, backend="mps", batch=3)
    ref = dense(c)
    assert psi.batch == 3 and torch.allclose(psi.to_dense(), ref.expand(3, -1), atol=1e-10)


def test_gradients_through_the_plan_match_the_statevector():
    theta = torch.tensor([0.3, -1.1, 2.0], dtype=torch.float64, requires_grad=True)
    c = random_circuit(6, 40, seed=7, batch=3, params=theta)

    def loss(backend):
        psi = qt.simulate(c, backend=backend)
        return (psi.expect("Z0") + psi.expect("Z3 Z5") * 0.5).sum()

    g_mps, = torch.autograd.grad(loss("mps"), theta)
    g_sv, = torch.autograd.grad(loss("statevector"), theta)
    assert torch.allclose(g_mps, g_sv, atol=1e-8)


def test_real_circuits_stay_real_and_complex_ones_promote():
    c = qt.Circuit(5).h(0).cx(0, 4).ry(0.3, 2).cz(4, 1).swap(0, 3).cx(3, 2)
    psi = qt.simulate(c, backend="mps", dtype=torch.float64)
    assert psi.dtype == torch.float64
    assert torch.allclose(psi.to_dense(), dense(c, dtype=torch.float64), atol=1e-12)
    c.t(2).cx(2, 0)
    psi = qt.simulate(c, backend="mps", dtype=torch.float64)
    assert psi.dtype == torch.complex128
    assert torch.allclose(psi.to_dense(), dense(c), atol=1e-12)


def test_single_precision_runs_through_the_torch_route():
    c = random_circuit(6, 40, seed=9)
    psi = qt.simulate(c, backend="mps", dtype=torch.complex64)
    assert psi.dtype == torch.complex64
    assert torch.allclose(psi.to_dense().to(torch.complex128), dense(c), atol=2e-5)


def test_qubit_order_is_the_users_after_swaps_and_routing():
    # |1> on qubit 0, carried to qubit 6 by a circuit SWAP (a relabel) and to 2 by a routed CX
    c = qt.Circuit(7).x(0).swap(0, 6).cx(6, 2).cx(2, 5)
    psi = qt.simulate(c, backend="mps")
    bits = "0010011"  # qubits 2, 5, 6 set (big-endian: qubit 0 leftmost)
    amp = psi.to_dense()[0]
    assert abs(float(amp[int(bits, 2)].abs()) - 1.0) < 1e-12
    z = psi.expect("Z6")
    assert abs(float(z[0]) + 1.0) < 1e-12


def test_consecutive_gates_on_a_pair_become_one_gate():
    c = qt.Circuit(2).h(0).cx(0, 1).rz(0.4, 1).cx(0, 1).ry(0.2, 0)
    p = planner.plan_circuit(c)
    assert p.firsts == [0] and p.ones is None
    u = np.eye(4, dtype=complex)
    for m, qs in c.ops():
        m = m.numpy()
        full = m if len(qs) == 2 else (np.kron(m, np.eye(2)) if qs[0] == 0 else np.kron(np.eye(2), m))
        u = full @ u
    assert np.allclose(p.gates[0], u, atol=1e-14)


def test_routing_swaps_merge_into_the_gates_before_them():
    # a qubit that interacts with every other in turn travels along the chain: each routing SWAP
    # follows a gate on the same pair and merges into it (one split per gate, none for the moves
    # but the restore)
    n = 8
    c = qt.Circuit(n)
    for q in range(1, n):
        c.cp(0.1 * q, 0, q)
    p = planner.plan_circuit(c)
    assert p.stats["two_qubit"] == n - 1
    restore = n - 2  # qubit 0 ends at site n-2 and walks back
    assert p.stats["gates"] <= (n - 1) + restore
    assert torch.allclose(qt.simulate(c).to_dense(), dense(c), atol=1e-12)


def test_one_qubit_gates_on_untouched_qubits_and_the_global_phase():
    c = qt.Circuit(4, global_phase=0.7).h(1).rx(0.3, 3).s(1)
    p = planner.plan_circuit(c)
    assert p.firsts == [] and p.ones.shape == (4, 2, 2)
    assert torch.allclose(qt.simulate(c).to_dense(), dense(c), atol=1e-14)
    one = qt.Circuit(1, global_phase=-0.2).h(0).t(0)
    assert torch.allclose(qt.simulate(one).to_dense(), dense(one), atol=1e-14)
    empty = qt.Circuit(3, global_phase=1.0)
    assert torch.allclose(qt.simulate(empty).to_dense(), dense(empty), atol=1e-14)


def test_planned_and_gate_by_gate_agree_within_their_truncation():
    # each route's state is within trace distance 2·sqrt(1 - F) of the exact one (F its true
    # fidelity, from the dense vectors), so their <Z_q> differ by at most the sum of the two
    c = random_circuit(10, 120, seed=21)
    exact = dense(c)[0]
    zs, bounds = [], []
    for plan in (True, False):
        psi = qt.simulate(c, backend="mps", max_bond=4, plan=plan)
        v = psi.to_dense()[0]
        fid = float(abs(torch.vdot(exact, v)) ** 2 / torch.vdot(v, v).real)
        assert float(psi.discarded_weight[0]) > 1e-6  # the bond really truncates
        zs.append(torch.stack([psi.expect(f"Z{q}")[0] for q in range(10)]))
        bounds.append(2 * math.sqrt(max(1 - fid, 0.0)))
    assert float((zs[0] - zs[1]).abs().max()) <= sum(bounds) + 1e-10


def test_plan_false_is_the_gate_by_gate_route():
    c = random_circuit(6, 40, seed=2)
    a = qt.simulate(c, backend="mps", plan=False)
    b = qt.simulate(c, backend="mps")
    assert torch.allclose(a.to_dense(), b.to_dense(), atol=1e-10)


def test_a_plan_for_another_width_is_refused():
    p = planner.plan_circuit(qt.Circuit(3).cx(0, 2))
    with pytest.raises(ValueError, match="3 qubits"):
        planner.run(qt.MPS.zeros(4), p)


def test_a_non_finite_gate_is_refused_before_the_state_changes():
    psi = qt.MPS.zeros(3)
    gates = [(np.eye(4), (0, 2)), (np.array([[np.nan, 0], [0, 1]]), (1,))]
    with pytest.raises(ValueError, match="NaN"):
        planner.run(psi, planner.plan(3, gates))
    assert torch.allclose(psi.to_dense()[0, 0], torch.ones((), dtype=torch.complex128))


def test_the_pennylane_device_runs_long_range_circuits_through_the_planner():
    qml = pytest.importorskip("pennylane")
    n = 6
    rng = np.random.default_rng(4)
    angles = rng.uniform(-3, 3, (12,))

    def body():
        for k in range(12):
            a, b = (int(x) for x in rng.choice(n, 2, replace=False))
            [qml.CNOT, qml.SWAP, qml.CZ][k % 3](wires=[a, b])
            qml.RY(angles[k], wires=a)
            qml.IsingXX(angles[k] / 2, wires=[b, (b + 3) % n])
        return [qml.expval(qml.PauliZ(q)) for q in range(n)]

    state = rng.bit_generator.state
    mps = qml.QNode(body, qml.device("qlam.mps", wires=n))()
    rng.bit_generator.state = state
    ref = qml.QNode(body, qml.device("default.qubit", wires=n))()
    assert np.allclose(np.array(mps, dtype=float), np.array(ref, dtype=float), atol=1e-10)


def test_untouched_qubits_move_for_free_only_from_zeros():
    # from |0...0> the routing SWAPs of qubits no gate has touched cost nothing, and the result is
    # still the circuit's; a plan made so is refused on another state, and a plan without the
    # assumption runs on any state
    c = qt.Circuit(6).h(0).ry(0.4, 5).cx(0, 5).rx(0.3, 2).cz(5, 3).cx(2, 4)
    free = planner.plan_circuit(c, zeros=True)
    assert free.stats["free_swaps"] > 0
    assert torch.allclose(planner.run(qt.MPS.zeros(6), free).to_dense(), dense(c), atol=1e-12)
    assert torch.allclose(qt.simulate(c).to_dense(), dense(c), atol=1e-12)
    start = qt.Circuit(6).x(1).h(4)
    with pytest.raises(ValueError, match="0...0"):
        planner.run(qt.simulate(start), free)
    both = start.copy()
    for op in c:
        both.append(op.name, op.qubits, op.params)
    general = planner.plan_circuit(c)
    assert general.stats["free_swaps"] == 0
    assert torch.allclose(planner.run(qt.simulate(start), general).to_dense(), dense(both), atol=1e-12)


def test_a_plan_longer_than_one_compiled_call_runs_in_chunks(monkeypatch):
    c = random_circuit(7, 60, seed=13)
    monkeypatch.setattr(planner, "CHUNK", 5)
    p = planner.plan_circuit(c)
    program = p.program(torch.complex128, "cpu")
    assert len(program) > 3 and all(len(op[2]) <= 5 for op in program if op[0] == "2q")
    assert torch.allclose(planner.run(qt.MPS.zeros(7), p).to_dense(), dense(c), atol=1e-10)


def _random_sequence(n, n_ops, seed, batch=None):
    """``(gate, qubits)`` pairs: Haar-ish 2x2 / 4x4 unitaries (per-sample ones with ``batch``) on
    random, mostly distant qubits, in any order."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    ops = []
    for _ in range(n_ops):
        two = rng.random() < 0.6
        d = 4 if two else 2
        shape = (batch, d, d) if batch and rng.random() < 0.5 else (d, d)
        u = torch.linalg.qr(torch.randn(*shape, dtype=torch.complex128, generator=g))[0]
        qs = tuple(int(q) for q in rng.choice(n, 2, replace=False)) if two else int(rng.integers(n))
        ops.append((u, qs))
    return ops


@pytest.mark.parametrize("seed", range(4))
def test_mps_apply_sequence_is_planned_and_matches_apply_gate_by_gate(seed):
    n, batch = 7, 2
    start = torch.randn(batch, 2 ** n, dtype=torch.complex128, generator=torch.Generator().manual_seed(seed))
    ops = _random_sequence(n, 30, seed, batch)
    want = qt.StateVector.from_dense(start)
    for u, qs in ops:
        want.apply(u, qs)
    planned = qt.MPS.from_dense(start).apply_sequence(ops)      # not |0...0>: any state
    by_gate = qt.MPS.from_dense(start)
    for u, qs in ops:
        by_gate.apply(u, qs)
    np.testing.assert_allclose(planned.to_dense().numpy(), want.to_dense().numpy(), atol=1e-10)
    np.testing.assert_allclose(by_gate.to_dense().numpy(), want.to_dense().numpy(), atol=1e-10)
    # the reference of the same signature, on the dense state
    ref = qt.StateVector.from_dense(start).apply_sequence(ops)
    np.testing.assert_allclose(ref.to_dense().numpy(), want.to_dense().numpy(), atol=1e-12)


def test_apply_sequence_checks_everything_before_the_state_changes_and_falls_back_for_projectors():
    psi = qt.MPS.zeros(4).apply(torch.tensor([[1, 1], [1, -1]], dtype=torch.float64) / math.sqrt(2), 0)
    before = psi.to_dense().clone()
    h = torch.tensor([[1, 1], [1, -1]], dtype=torch.float64) / math.sqrt(2)
    for bad, match in (([(h, 0), (h, 4)], "out of range"), ([(h, 1), (torch.eye(4), (2, 2))], "repeated"),
                       ([(h, 1), (torch.full((2, 2), float("nan")), 3)], "NaN"), ([(h, 1), (h,)], "pair")):
        with pytest.raises((ValueError, TypeError), match=match):
            psi.apply_sequence(bad)
        assert torch.equal(psi.to_dense(), before)
    # a projector is not unitary: the sequence runs gate by gate, the projector at the centre
    p0 = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    out = qt.MPS.zeros(4).apply_sequence([(h, 0), (torch.eye(4, dtype=torch.float64)[[0, 1, 3, 2]], (0, 3)), (p0, 0)])
    dense = out.to_dense()[0]
    assert abs(float(dense[0]) - 1 / math.sqrt(2)) < 1e-12 and float(dense.abs().sum()) == pytest.approx(1 / math.sqrt(2))
