"""The PennyLane device ``qlam.mps`` against ``default.qubit``, and PennyLane's device test suite.

PennyLane is the optional ``pennylane`` extra (it resolves quimb to 1.15, see pyproject.toml),
so this module is skipped without it.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

qml = pytest.importorskip("pennylane")

from pennylane import numpy as pnp  # noqa: E402
from pennylane.exceptions import DeviceError, QuantumFunctionError  # noqa: E402

from qlam_tn.circuit import GATES  # noqa: E402
from qlam_tn.pennylane_device import MAX_LOCAL_WIRES, NAMED_GATES, QLAMMPSDevice  # noqa: E402

N = 5
LAYERS = 3
HERM = np.array([[1.0, 0.5 - 0.2j, 0, 0.1j], [0.5 + 0.2j, -0.3, 0.2, 0], [0, 0.2, 0.7, 0.4], [-0.1j, 0, 0.4, 0.0]])


def _layers(w):
    """A variational circuit touching every gate kind the device handles natively or decomposes.

    ``w``: ``(layers, N, 3)`` angles.
    """
    qml.BasisState(np.array([1, 0, 1, 0, 0]), wires=range(N))
    for layer in range(w.shape[0]):
        for q in range(N):
            qml.Rot(w[layer, q, 0], w[layer, q, 1], w[layer, q, 2], wires=q)
        for q in range(N - 1):
            qml.CNOT(wires=[q, q + 1])
        qml.IsingZZ(w[layer, 0, 0], wires=[0, N - 1])          # non-adjacent
        qml.CRX(w[layer, 1, 1], wires=[3, 1])                  # reversed order
        qml.IsingXY(w[layer, 2, 2], wires=[2, 4])              # generic 2-wire matrix
        qml.Toffoli(wires=[0, 2, 4])                           # decomposed
        qml.RY(w[layer, 3, 0], wires=2)
        qml.PhaseShift(w[layer, 4, 1], wires=4)


def _observables():
    return [
        qml.expval(qml.Z(0) @ qml.Z(4)),
        qml.expval(qml.X(1) @ qml.Y(2) @ qml.Z(3)),
        qml.expval(qml.Hermitian(HERM, wires=[4, 1])),
        qml.expval(qml.Hamiltonian([0.4, -1.3, 0.7], [qml.X(0) @ qml.X(1), qml.Y(3), qml.Z(2) @ qml.Z(4)])),
        qml.var(qml.X(2)),
        qml.var(qml.Hermitian(HERM, wires=[0, 3])),
    ]


def _circuit(w):
    _layers(w)
    return _observables()


def _weights(seed=0, layers=LAYERS):
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, size=(layers, N, 3))


def _stack(results):
    return torch.stack([torch.as_tensor(r) for r in results])


# ----------------------------------------------------------------------------- registration

def test_device_is_registered_and_named():
    dev = qml.device("qlam.mps", wires=3, max_bond_dim=8)
    assert isinstance(dev, QLAMMPSDevice)
    assert dev.name == "qlam.mps" and len(dev.wires) == 3


@pytest.mark.parametrize("name", sorted(NAMED_GATES))
def test_named_gates_match_pennylane_matrices(name):
    cls = getattr(qml, name)
    params = np.random.default_rng(1).uniform(-3, 3, size=cls.num_params)
    op = cls(*params, wires=range(GATES[NAMED_GATES[name]].n_qubits))
    ours = GATES[NAMED_GATES[name]].build(*[float(p) for p in params])
    np.testing.assert_allclose(ours.numpy(), qml.matrix(op), atol=1e-14)


# ----------------------------------------------------------------------------- values and gradients

def test_values_and_backprop_gradients_equal_default_qubit():
    w0 = _weights()
    out = {}
    for name in ("qlam.mps", "default.qubit"):
        w = torch.tensor(w0, requires_grad=True)
        node = qml.QNode(_circuit, qml.device(name, wires=N), interface="torch", diff_method="backprop")
        values = _stack(node(w))
        jac = torch.stack([torch.autograd.grad(v, w, retain_graph=True)[0] for v in values])
        out[name] = (values.detach().numpy(), jac.numpy())
    np.testing.assert_allclose(out["qlam.mps"][0], out["default.qubit"][0], atol=1e-8, rtol=0)
    np.testing.assert_allclose(out["qlam.mps"][1], out["default.qubit"][1], atol=1e-8, rtol=0)
    assert np.abs(out["qlam.mps"][1]).max() > 0.1  # the comparison is not between zeros


def test_best_diff_method_under_torch_is_backprop():
    node = qml.QNode(_circuit, qml.device("qlam.mps", wires=N), interface="torch")
    config = qml.workflow.construct_execution_config(node)(torch.tensor(_weights(), requires_grad=True))
    assert config.gradient_method == "backprop"


@pytest.mark.filterwarnings("ignore:Casting complex values to real")  # default.qubit's autograd backprop
def test_parameter_shift_gradients_equal_default_qubit():
    w = pnp.array(_weights(2, layers=1), requires_grad=True)  # ~90 shifted circuits

    def jacobian(dev, diff_method):
        node = qml.QNode(_circuit, dev, diff_method=diff_method)
        return qml.jacobian(lambda v: qml.math.stack(node(v)))(w)

    ours = jacobian(qml.device("qlam.mps", wires=N), "parameter-shift")
    ref = jacobian(qml.device("default.qubit", wires=N), "backprop")
    np.testing.assert_allclose(ours, ref, atol=1e-8, rtol=0)


def test_trainable_hamiltonian_coefficients_backprop():
    coeffs0 = np.array([0.3, -0.8])
    grads = {}
    for name in ("qlam.mps", "default.qubit"):
        c = torch.tensor(coeffs0, requires_grad=True)
        w = torch.tensor(_weights(3), requires_grad=True)

        @qml.qnode(qml.device(name, wires=N), interface="torch", diff_method="backprop")
        def energy(w, c):
            _layers(w)
            return qml.expval(qml.Hamiltonian(c, [qml.Z(0) @ qml.Z(1), qml.X(3)]))

        energy(w, c).backward()
        grads[name] = (c.grad.numpy(), w.grad.numpy())
    for ours, ref in zip(grads["qlam.mps"], grads["default.qubit"]):
        np.testing.assert_allclose(ours, ref, atol=1e-8, rtol=0)


# ----------------------------------------------------------------------------- measurements

def _compare(measure, wires=N, **device_kwargs):
    w = _weights(4)
    results = []
    for dev in (qml.device("qlam.mps", wires=wires, **device_kwargs), qml.device("default.qubit", wires=wires)):
        results.append(qml.QNode(lambda: (_layers(w), measure())[1], dev)())
    return results


@pytest.mark.parametrize("wires", [[3, 0], [4], [1, 2, 4], list(range(N))])
def test_probs_on_wire_subsets_any_order(wires):
    ours, ref = _compare(lambda: qml.probs(wires=wires))
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_probs_of_an_observable_and_state_measurements():
    ours, ref = _compare(lambda: (qml.probs(op=qml.X(2) @ qml.Y(0)), qml.state(), qml.density_matrix([4, 1]),
                                  qml.vn_entropy([0, 1]), qml.purity([2])))
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_state_prep_global_phase_and_wire_labels():
    vec = np.random.default_rng(5).normal(size=8) + 1j * np.random.default_rng(6).normal(size=8)
    vec /= np.linalg.norm(vec)

    def circuit():
        qml.StatePrep(vec, wires=["b", "c", "a"])
        qml.CNOT(wires=["a", "b"])
        qml.GlobalPhase(0.7)
        qml.adjoint(qml.S("c"))
        return qml.state(), qml.expval(qml.Y("a") @ qml.X("c"))

    ours = qml.QNode(circuit, qml.device("qlam.mps", wires=["a", "b", "c"]))()
    ref = qml.QNode(circuit, qml.device("default.qubit", wires=["a", "b", "c"]))()
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_deferred_mid_circuit_measurement():
    def circuit(x):
        qml.RX(x, 0)
        m = qml.measure(0)
        qml.cond(m, qml.RY)(0.9, 1)
        return qml.expval(qml.Z(1)), qml.probs(op=m), qml.var(m)

    ours = qml.QNode(circuit, qml.device("qlam.mps", wires=3))(0.6)
    ref = qml.QNode(circuit, qml.device("default.qubit", wires=3))(0.6)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_parameter_broadcasting_is_unrolled():
    def circuit(x):
        qml.RX(x, 0)
        qml.CNOT([0, 1])
        return qml.expval(qml.Z(1))

    x = np.array([0.1, 0.7, 2.0])
    ours = qml.QNode(circuit, qml.device("qlam.mps"))(x)  # no wires given: the circuit's
    np.testing.assert_allclose(ours, np.cos(x), atol=1e-12)


# ----------------------------------------------------------------------------- shots

def _bell(theta=0.8):
    qml.RY(theta, 0)
    qml.CNOT([0, 2])
    qml.Hadamard(1)


def test_samples_and_counts_statistics():
    shots = 4000

    @qml.set_shots(shots=shots)
    @qml.qnode(qml.device("qlam.mps", wires=3, seed=11))
    def circuit():
        _bell()
        return qml.sample(wires=[0, 2]), qml.counts(wires=[1]), qml.sample(qml.X(1))

    bits, counts, xs = circuit()
    assert bits.shape == (shots, 2) and np.array_equal(bits[:, 0], bits[:, 1])  # correlated in one sampling
    p1 = np.sin(0.4) ** 2
    sigma = np.sqrt(p1 * (1 - p1) / shots)
    assert abs(bits[:, 0].mean() - p1) < 5 * sigma
    assert sum(counts.values()) == shots and abs(counts["1"] / shots - 0.5) < 5 * np.sqrt(0.25 / shots)
    assert np.all(xs == 1)  # |+> measured in the X basis


def test_sampled_expval_var_probs_and_shot_vectors():
    shots = (3000, 3000)
    exact = qml.QNode(lambda: (_bell(), [qml.expval(qml.Z(0) @ qml.Z(2)), qml.expval(qml.Z(0) + 0.5 * qml.X(1)),
                                        qml.var(qml.Z(0)), qml.probs(wires=[2, 0])])[1],
                      qml.device("default.qubit", wires=3))()

    @qml.set_shots(shots=shots)
    @qml.qnode(qml.device("qlam.mps", wires=3, seed=3))
    def sampled():
        _bell()
        return (qml.expval(qml.Z(0) @ qml.Z(2)), qml.expval(qml.Z(0) + 0.5 * qml.X(1)), qml.var(qml.Z(0)),
                qml.probs(wires=[2, 0]))

    result = sampled()
    assert len(result) == 2  # one entry per shot group
    for group in result:
        for value, want in zip(group, exact):
            np.testing.assert_allclose(value, want, atol=0.08)


def test_seed_makes_samples_reproducible():
    def run(seed):
        circuit = qml.set_shots(qml.QNode(lambda: (_bell(1.1), qml.sample(wires=[0, 1]))[1],
                                          qml.device("qlam.mps", wires=3, seed=seed)), shots=50)
        return circuit()

    assert np.array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


# ----------------------------------------------------------------------------- truncation

def _entangler(w, n):
    for layer in range(w.shape[0]):
        for q in range(n):
            qml.RY(w[layer, q], wires=q)
        for q in range(layer % 2, n - 1, 2):
            qml.CNOT([q, q + 1])
    return qml.expval(qml.Z(0) @ qml.Z(n - 1)), qml.expval(qml.X(n // 2))


def test_max_bond_dim_truncates_and_reports_discarded_weight():
    n = 8
    w = np.random.default_rng(9).uniform(0, np.pi, size=(8, n))
    values, history = {}, {}
    for chi in (None, 2):
        dev = qml.device("qlam.mps", wires=n, max_bond_dim=chi)
        with qml.Tracker(dev) as tracker:
            values[chi] = np.array(qml.QNode(_entangler, dev)(w, n))
        history[chi] = tracker.history
    ref = np.array(qml.QNode(_entangler, qml.device("default.qubit", wires=n))(w, n))
    np.testing.assert_allclose(values[None], ref, atol=1e-10)
    assert np.abs(values[2] - ref).max() > 1e-3
    assert history[None]["discarded_weight"] == [0.0] or history[None]["discarded_weight"][0] < 1e-12
    assert history[2]["discarded_weight"][0] > 1e-3
    assert history[2]["max_bond"][0] == 2 and history[None]["max_bond"][0] > 2


def test_truncated_backprop_gradient_is_finite():
    n = 8
    w = torch.tensor(np.random.default_rng(2).uniform(0, np.pi, size=(6, n)), requires_grad=True)
    node = qml.QNode(_entangler, qml.device("qlam.mps", wires=n, max_bond_dim=2), interface="torch",
                     diff_method="backprop")
    node(w, n)[0].backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().max() > 0


def test_complex64_dtype():
    w = _weights(7)
    node = qml.QNode(_circuit, qml.device("qlam.mps", wires=N, dtype="complex64"))
    ref = qml.QNode(_circuit, qml.device("default.qubit", wires=N))
    np.testing.assert_allclose(np.array(node(w), dtype=float), np.array(ref(w)), atol=1e-4)


# ----------------------------------------------------------------------------- errors

class _Opaque(qml.operation.Operation):
    """A 3-wire gate with neither a matrix nor a decomposition."""

    num_wires = 3


def test_operation_without_matrix_or_decomposition_raises():
    node = qml.QNode(lambda: (_Opaque(wires=[0, 1, 2]), qml.expval(qml.Z(0)))[1], qml.device("qlam.mps", wires=3))
    with pytest.raises(DeviceError, match="_Opaque.*not supported with qlam.mps"):
        node()


def test_unsupported_observable_raises():
    big = qml.Hermitian(np.eye(2 ** (MAX_LOCAL_WIRES + 1)), wires=range(MAX_LOCAL_WIRES + 1))
    node = qml.QNode(lambda: qml.expval(big), qml.device("qlam.mps", wires=MAX_LOCAL_WIRES + 1))
    with pytest.raises(DeviceError, match="not supported on qlam.mps"):
        node()


def test_too_many_probs_wires_raises():
    n = MAX_LOCAL_WIRES + 1
    node = qml.QNode(lambda: qml.probs(wires=range(n)), qml.device("qlam.mps", wires=n))
    with pytest.raises(DeviceError, match="probs on 11 wires"):
        node()


def test_backprop_needs_torch():
    node = qml.QNode(lambda x: (qml.RX(x, 0), qml.expval(qml.Z(0)))[1], qml.device("qlam.mps", wires=1),
                     diff_method="backprop")
    with pytest.raises(QuantumFunctionError, match="does not support backprop"):
        qml.grad(node)(pnp.array(0.3, requires_grad=True))


def test_one_shot_mcm_method_raises():
    node = qml.set_shots(qml.QNode(lambda: (qml.measure(0), qml.expval(qml.Z(0)))[1],
                                   qml.device("qlam.mps", wires=2), mcm_method="one-shot"), shots=10)
    with pytest.raises(DeviceError, match="only defers mid-circuit measurements"):
        node()


@pytest.mark.parametrize("kwargs, err", [({"dtype": "float64"}, ValueError), ({"max_bond_dim": 0}, ValueError),
                                         ({"cutoff_mode": "bogus"}, ValueError)])
def test_bad_options_raise(kwargs, err):
    with pytest.raises(err):
        qml.device("qlam.mps", wires=2, **kwargs)


# ----------------------------------------------------------------------------- PennyLane's device suite

# The suite's backprop fixture asks ``supports_derivatives`` with the default (numpy) interface,
# so it also runs its autograd backprop tests; qlam.mps backpropagates through torch only.
_SUITE_DESELECT = "not (test_gradients_autograd and backprop)"


def _device_suite(shots, tmp_path):
    """Run PennyLane's device tests (what ``pl-device-test`` runs) against qlam.mps."""
    from pennylane.devices import tests as device_tests

    suite = Path(device_tests.__file__).parent
    cmd = [sys.executable, "-m", "pytest", str(suite), "--device=qlam.mps", f"--shots={shots}", "-q",
           "-p", "no:cacheprovider", "-W", "ignore", "-rfE", "-k", _SUITE_DESELECT]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_pennylane_device_suite_analytic(tmp_path):
    _device_suite("None", tmp_path)


@pytest.mark.slow
def test_pennylane_device_suite_with_shots(tmp_path):
    _device_suite("10000", tmp_path)


# ----------------------------------------------------------------------------- packaging and benchmark

def test_qlam_tn_import_does_not_import_pennylane():
    code = "import sys, qlam_tn; sys.exit('pennylane' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_bench_pennylane_tiny(capsys):
    from qlam_tn.experiments import cli
    from qlam_tn.experiments.bench import pennylane as bench_pennylane

    assert cli.BENCHES["pennylane"][0] == "qlam_tn.experiments.bench.pennylane"
    assert cli.RENAMED["bench-pennylane"] == "qlam bench pennylane"
    r = bench_pennylane.run(n=4, depth=2, chi=4, repeats=1, full_shift=True)
    assert r["n_params"] == 8 and r["value_abs_diff"] < 1e-12 and abs(r["qlam_value"] - r["exact_value"]) < 1e-12
    assert r["grad_max_abs_diff"] < 1e-8 and r["qlam_discarded_weight"] < 1e-20
    assert any("measured" in line for line in bench_pennylane.report(r))
    threads = torch.get_num_threads()
    try:
        assert bench_pennylane.main(["--n", "3", "--depth", "1", "--repeats", "1", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "ESTIMATE = (2*3+1) x value time" in out and "speed-up" in out and "torch threads 1" in out
