"""qlam_tn.routes: the one place that picks an update's route, and what every route promises alike
(the state untouched by a failing call, one exception class, checked layer programs)."""
import contextlib
import threading

import numpy as np
import pytest
import torch

import qlam_tn as qt
import qlam_tn.gates as G
from qlam_tn import mps_host, mps_jit, routes
from qlam_tn.linalg import LinAlgError, TruncationError
from qlam_tn.memory import brickwork, token_layers

ROUTE_SWITCHES = {
    "compiled": contextlib.nullcontext,
    "host": mps_jit.disabled,
    "torch": mps_host.disabled,
}


def _entangled(batch, dtype, n=6):
    psi = qt.MPS.zeros(n, batch=batch, dtype=dtype, max_bond=4)
    with torch.no_grad():
        psi.apply_layer(torch.stack([G.RY(0.3 + 0.2 * q) for q in range(n)]).to(dtype))
        brickwork(psi, G.CNOT(dtype=dtype).expand(3, 4, 4), 0)
    return psi


def _snapshot(psi):
    return ([t.clone() for t in psi.tensors], psi.center, psi.discarded_weight.clone(), psi.log_fidelity.clone())


def _unchanged(psi, snap):
    return (len(psi.tensors) == len(snap[0]) and all(torch.equal(a, b) for a, b in zip(psi.tensors, snap[0]))
            and psi.center == snap[1] and torch.equal(psi.discarded_weight, snap[2])
            and torch.equal(psi.log_fidelity, snap[3]))


@pytest.mark.parametrize("route", ["compiled", "host", "torch"])
@pytest.mark.parametrize("batch", [1, 2])
def test_a_failing_gate_leaves_the_state_and_its_list_as_they_were(route, batch):
    """The first gate sits where the centre already is (no move before it) and a later one is NaN:
    whichever route runs, the state, its site list and its totals stay as they were, and the error
    is the engine's one LinAlgError (numpy's and torch's alike)."""
    psi = _entangled(batch, torch.float64)
    psi.move_center(0)
    held = psi.tensors  # a list a caller kept
    held_items = list(held)
    snap = _snapshot(psi)
    gates = torch.stack([G.CNOT(dtype=torch.float64), torch.full((4, 4), float("nan"), dtype=torch.float64)])
    with ROUTE_SWITCHES[route](), pytest.raises(LinAlgError) as info:
        psi.apply_neighbour_gates(gates, [0, 2])
    assert isinstance(info.value, np.linalg.LinAlgError) and isinstance(info.value, torch.linalg.LinAlgError)
    assert _unchanged(psi, snap)
    assert all(a is b for a, b in zip(held, held_items))
    with ROUTE_SWITCHES[route](), pytest.raises(LinAlgError):
        token_layers(psi, [("2q", gates[:1].expand(3, 4, 4), 0), ("2q", gates[1:].expand(2, 4, 4), 1)])
    assert _unchanged(psi, snap)


def test_the_route_choice():
    real = _entangled(1, torch.float64)
    cz = G.CZ(dtype=torch.float64).expand(3, 4, 4)
    assert routes.choose("neighbour_gates", real.tensors, (cz,)) == "compiled"
    with mps_jit.disabled():
        assert routes.choose("neighbour_gates", real.tensors, (cz,)) == "host"
    with mps_host.disabled():
        assert routes.choose("neighbour_gates", real.tensors, (cz,)) == "torch"
    assert routes.choose("two_site", real.tensors, (cz[0],)) == "host"  # no compiled two-site step
    low = _entangled(1, torch.float32)
    assert routes.choose("neighbour_gates", low.tensors, (cz.float(),)) == "torch"
    per_sample = cz.unsqueeze(0)  # (1, P, 4, 4): the numpy pass takes shared gates only
    with mps_jit.disabled():
        assert routes.choose("neighbour_gates", real.tensors, (per_sample,)) == "torch"
    theta = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    assert routes.choose("neighbour_gates", real.tensors, (cz * theta,)) == "torch"


@pytest.mark.parametrize("route", ["compiled", "host", "torch"])
def test_firsts_of_any_integer_kind_and_iterators_are_read_once(route):
    n = 6
    gates = torch.stack([qt.gates.CRY(0.4 + 0.1 * k, dtype=torch.float64) for k in range(3)])
    want = _entangled(1, torch.float64)
    with ROUTE_SWITCHES[route]():
        want.apply_neighbour_gates(gates, [0, 2, 4])
        for firsts in ((q for q in (0, 2, 4)), np.array([0, 2, 4]), torch.tensor([0, 2, 4])):
            psi = _entangled(1, torch.float64)
            psi.apply_neighbour_gates(gates, firsts)
            assert type(psi.center) is int
            torch.testing.assert_close(psi.to_dense(), want.to_dense(), atol=1e-12, rtol=0)
        psi = _entangled(1, torch.float64, n)
        with pytest.raises(TypeError, match="first qubit"):
            psi.apply_neighbour_gates(gates, [0.0, 2, 4])


def test_malformed_programs_are_refused_with_clear_errors():
    psi = _entangled(1, torch.float64)
    cz = G.CZ(dtype=torch.float64).expand(3, 4, 4)
    snap = _snapshot(psi)
    with pytest.raises(ValueError, match=r"\('2q', gates, firsts\)"):
        psi.apply_program([("2q", cz)])
    with pytest.raises(ValueError, match=r"\('1q', gates\)"):
        psi.apply_program([("3q", cz, [0])])
    with pytest.raises(ValueError, match="parity"):
        brickwork(psi, cz, 2)
    with pytest.raises(ValueError, match="parity"):
        token_layers(psi, [("2q", cz, True)])
    psi.apply_neighbour_gates(cz.numpy(), [0, 2, 4])  # an array is taken as a tensor
    assert not _unchanged(psi, snap)


@pytest.mark.parametrize("cls", [qt.MPS, qt.StateVector])
def test_promote_widens_and_refuses_what_would_lose_the_state(cls):
    psi = cls.zeros(2, dtype=torch.complex128)
    psi.apply(G.RX(1.0), 0)
    y = float(psi.expect("Y0"))
    with pytest.raises(TypeError, match="imaginary"):
        psi.promote(torch.float64)
    with pytest.raises(TypeError, match="dtype"):
        psi.promote(torch.int64)
    with pytest.raises(TypeError, match="dtype"):
        psi.promote(torch.float16)
    assert float(psi.expect("Y0")) == pytest.approx(y, abs=1e-15) and abs(y) > 0.5
    real = cls.zeros(2, dtype=torch.float32)
    real.promote(torch.complex64)
    assert real.dtype == torch.complex64
    if cls is qt.MPS:
        assert real.discarded_weight.dtype == real.log_fidelity.dtype == torch.float32
        real.promote(torch.complex128)
        assert real.discarded_weight.dtype == torch.float64  # the totals follow the state's precision


def test_truncation_errors_sum_across_kinds():
    t = TruncationError(torch.tensor([0.1, 0.2], dtype=torch.float64), torch.tensor([-0.1, -0.2], dtype=torch.float64))
    f = TruncationError.of_split(0.5, 0.5)
    a = TruncationError(np.array([0.1, 0.0]), np.array([0.0, 0.0]))
    for total in (t + a, a + t, sum([a, t]), sum([t, f])):
        assert isinstance(total.discarded, torch.Tensor)
    np.testing.assert_allclose((a + t).discarded.numpy(), [0.2, 0.2])
    np.testing.assert_allclose(sum([t, f]).log_fidelity.numpy(), [-0.1 + np.log(0.5), -0.2 + np.log(0.5)])
    assert TruncationError.of_split(1.0, 0.0).log_fidelity == -np.inf  # everything cut
    assert float(TruncationError.of_split(torch.tensor(1.0), torch.tensor(0.0)).log_fidelity) == -np.inf


class _FakeBlas:
    """A BLAS library's thread setting, process-wide (what OpenBLAS's documented setter is)."""

    def __init__(self, n):
        self.n = n

    def get_num_threads(self):
        return self.n

    def set_num_threads(self, n):
        self.n = n


def test_overlapping_one_blas_thread_blocks_restore_the_setting(monkeypatch):
    """Two threads' blocks overlapping (A in, B in, A out, B out): BLAS stays on one thread until the
    last block leaves, then is as it was (a save/restore per block would leave it at 1 for good).
    The libraries are stand-ins: the real ones' setting is what the block's logic must keep right."""
    libs = [_FakeBlas(2), _FakeBlas(4)]
    monkeypatch.setattr(mps_host, "_blas_libraries", lambda: libs)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with mps_host.one_blas_thread():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second():
        a_in.wait(5)
        with mps_host.one_blas_thread():
            b_in.set()
            a_out.wait(5)
            seen["inside after A left"] = [lib.get_num_threads() for lib in libs]

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert seen["inside after A left"] == [1, 1]
    assert [lib.get_num_threads() for lib in libs] == [2, 4]
