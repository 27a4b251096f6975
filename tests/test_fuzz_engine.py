"""Fuzzing the engine's public calls (issue 24): random gates, qubits, dtypes, shapes and Pauli
strings on an ``MPS`` and a ``StateVector`` side by side. Every call either raises a clear
``ValueError``/``TypeError`` and leaves both states exactly as they were, or succeeds on both with
the same result (the dense ``StateVector`` is the reference; the MPS runs untruncated).

The default run is bounded for CI; a longer one by hand::

    QLAM_FUZZ_EXAMPLES=2000 python -m pytest -q tests/test_fuzz_engine.py
"""
import os

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qlam_tn as qt

EXAMPLES = int(os.environ.get("QLAM_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REFUSALS = (ValueError, TypeError)

DTYPES = [torch.float32, torch.float64, torch.complex64, torch.complex128]
ODD_DTYPES = [torch.int64, torch.float16, torch.bool]


def _frozen(psi):
    return psi.to_dense().clone(), psi.discarded_weight.clone(), psi.dtype


def _same(a, b):
    return a[2] == b[2] and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _tolerance(dtype):
    return 1e-4 if dtype in (torch.float32, torch.complex64) else 1e-10


@st.composite
def gates(draw, batch):
    """A gate argument: mostly well-formed, sometimes of the wrong shape, dtype, batch or values."""
    d = draw(st.sampled_from([2, 4, 2, 4, 3, 8]))
    lead = draw(st.sampled_from([(), (), (batch,), (batch + 1,), (1, 1)]))
    dtype = draw(st.sampled_from(DTYPES + ODD_DTYPES[:1]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31)))
    kind = draw(st.sampled_from(["unitary", "unitary", "random", "nan", "zero", "list"]))
    shape = lead + (d, d)
    if kind == "unitary":
        a = rng.normal(size=shape) + 1j * rng.normal(size=shape)
        q, r = np.linalg.qr(a)
        m = q * (np.diagonal(r, axis1=-2, axis2=-1) / abs(np.diagonal(r, axis1=-2, axis2=-1)))[..., None, :]
    elif kind == "random":
        m = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    elif kind == "nan":
        m = np.full(shape, np.nan)
    elif kind == "zero":
        m = np.zeros(shape)
    else:
        return np.eye(d).tolist()  # a nested list: taken as an array
    t = torch.as_tensor(m)
    return t.real.to(dtype) if not dtype.is_complex else t.to(dtype)


@st.composite
def qubits(draw, n):
    return draw(st.one_of(
        st.integers(-2, n + 1),
        st.tuples(st.integers(-1, n), st.integers(-1, n)),
        st.just((0, 0)), st.just(True), st.just(1.0), st.just("0"), st.just((0, 1, 2)), st.just(np.int64(0)),
    ))


PAULI_TEXT = st.text(alphabet="IXYZxz0123 ,\t-", max_size=8)


@given(st.data())
@FUZZ
def test_random_calls_either_refuse_cleanly_or_match_the_dense_reference(data):
    n = data.draw(st.integers(1, 4), label="n")
    batch = data.draw(st.integers(1, 2), label="batch")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    mps = qt.MPS.zeros(n, batch=batch, dtype=dtype, cutoff=0.0)  # untruncated: it must equal the dense state
    sv = qt.StateVector.zeros(n, batch=batch, dtype=dtype)
    for _ in range(data.draw(st.integers(1, 6), label="calls")):
        call = data.draw(st.sampled_from(["apply", "apply", "layer", "expect", "rdm2", "sample"]), label="call")
        before = (_frozen(mps), _frozen(sv))
        outcomes = []
        if call == "apply":
            gate, where = data.draw(gates(batch), label="gate"), data.draw(qubits(n), label="qubits")
            run = lambda psi: psi.apply(gate, where)  # noqa: E731
        elif call == "layer":
            gate = data.draw(gates(batch), label="layer")
            layer = gate[..., :2, :2].unsqueeze(-3).expand(*gate.shape[:-2], n, 2, 2) if isinstance(gate, torch.Tensor) \
                else gate
            run = lambda psi: psi.apply_layer(layer)  # noqa: E731
        elif call == "expect":
            label = data.draw(st.one_of(PAULI_TEXT, st.dictionaries(st.integers(-1, n), st.sampled_from("IXYZQ"),
                                                                    max_size=3)), label="pauli")
            run = lambda psi: psi.expect(label)  # noqa: E731
        elif call == "rdm2":
            i, j = data.draw(st.integers(-1, n), label="i"), data.draw(st.integers(-1, n), label="j")
            run = lambda psi: psi.rdm2(i, j)  # noqa: E731
        else:
            shots = data.draw(st.sampled_from([0, -1, 3, 2.5]), label="shots")
            run = lambda psi: psi.sample(shots, generator=torch.Generator().manual_seed(0)).shape  # noqa: E731
        for psi in (mps, sv):
            try:
                outcomes.append(("ok", run(psi)))
            except REFUSALS as e:  # a clear refusal; LinAlgError is a ValueError too
                assert str(e), "an error must say what is wrong"
                outcomes.append(("refused", type(e)))
        kinds = [o[0] for o in outcomes]
        assert kinds[0] == kinds[1], (call, outcomes)
        if kinds[0] == "refused":
            assert _same(_frozen(mps), before[0]) and _same(_frozen(sv), before[1]), call
            continue
        tol = _tolerance(mps.dtype)
        torch.testing.assert_close(mps.to_dense(), sv.to_dense(), atol=tol, rtol=tol)
        if call in ("expect", "rdm2"):
            torch.testing.assert_close(outcomes[0][1], outcomes[1][1], atol=tol, rtol=tol)
        if call == "sample":
            assert outcomes[0][1] == outcomes[1][1]


@given(PAULI_TEXT, st.integers(1, 12))
@FUZZ
def test_pauli_strings_parse_the_same_everywhere_or_are_refused(label, n):
    """The one grammar: a label parses into qubits in range, each once, or is refused with a
    ValueError; the engine and the cotengra oracle read it alike."""
    from qlam_tn.contraction import oracle
    try:
        ops = qt.parse_pauli(label, n)
    except ValueError:
        ops = None
    if ops is not None:
        assert all(0 <= q < n and p in "XYZ" for q, p in ops.items())
    psi = qt.StateVector.zeros(n, dtype=torch.float64)
    try:
        got = float(psi.expect(label))
    except ValueError:
        got = None
    assert (got is None) == (ops is None)
    if ops is not None:
        want = 1.0 if all(p == "Z" for p in ops.values()) else 0.0  # |0...0>
        assert got == want
        assert oracle.expectation(n, [(np.eye(2), 0)], label) == want
