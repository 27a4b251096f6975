"""Fuzzing the OpenQASM 2.0 reader and writer with hypothesis.

* Grammar-based programs (registers, broadcasts, nested ``gate`` definitions with parameters,
  expressions with every operator and function, barriers, final measurements, comments) are
  read, written back with ``to_qasm`` and read again: the same circuit, compared through the
  dense states of ``simulate(..., backend="statevector")`` to 1e-10.
* The same programs go through Qiskit's reader (``qiskit.qasm2.loads``, default include path):
  wherever Qiskit accepts one, the engine accepts it too and its state equals Qiskit's
  ``Statevector`` (little-endian: reversed to the engine's order) to 1e-10, global phase
  included.
* Random garbage and mutated programs (bytes deleted, duplicated, swapped, tokens inserted,
  numbers made huge) either parse or raise ``ValueError`` with a line number: never another
  exception type, never a hang (sizes are bounded, and the module limits are lowered here).

Bounded for the default run; for a longer search:
``QLAM_FUZZ_EXAMPLES=2000 python -m pytest -q -p no:cacheprovider tests/test_fuzz_qasm.py``.
"""
import contextlib
import functools
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import qlam_tn as qt
from qlam_tn import qasm

try:
    from qiskit import qasm2
    from qiskit.quantum_info import Statevector
except ImportError:  # the Qiskit comparison is skipped; the rest still runs
    qasm2 = None

EXAMPLES = int(os.environ.get("QLAM_FUZZ_EXAMPLES", 100))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GARBAGE = settings(max_examples=4 * EXAMPLES, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# (number of parameters, number of qubits): the paper's qelib1.inc (what Qiskit's qasm2.loads
# knows) and the gates the engine knows beyond it (Qiskit needs their definitions in the file).
QELIB1 = {"U": (3, 1), "CX": (0, 2), "u3": (3, 1), "u2": (2, 1), "u1": (1, 1), "id": (0, 1),
          "x": (0, 1), "y": (0, 1), "z": (0, 1), "h": (0, 1), "s": (0, 1), "sdg": (0, 1), "t": (0, 1),
          "tdg": (0, 1), "rx": (1, 1), "ry": (1, 1), "rz": (1, 1), "cx": (0, 2), "cy": (0, 2), "cz": (0, 2),
          "ch": (0, 2), "crz": (1, 2), "cu1": (1, 2), "cu3": (3, 2), "ccx": (0, 3)}
EXTRA = {"sx": (0, 1), "sxdg": (0, 1), "swap": (0, 2), "iswap": (0, 2), "crx": (1, 2), "cry": (1, 2),
         "rxx": (1, 2), "ryy": (1, 2), "rzz": (1, 2), "p": (1, 1), "u": (3, 1), "cp": (1, 2), "cu": (4, 2),
         "csx": (0, 2), "cswap": (0, 3), "u0": (1, 1)}
# Exact definitions (global phase included) that Qiskit reads: the ones to_qasm writes, and p.
DEFINED_EXTRA = {name: next(line for line in qt.Circuit(2).append(name, [0, 1][:EXTRA[name][1]],
                                                                 [0.5] * EXTRA[name][0]).to_qasm().splitlines()
                            if line.startswith("gate "))
                 for name in ("sx", "sxdg", "swap", "iswap", "crx", "cry", "rxx", "ryy", "rzz")}
DEFINED_EXTRA["p"] = "gate p(lam) a { u1(lam) a; }"
SPACES = st.sampled_from([" ", "  ", "\t", "\n", " // note\n", "\r\n"])


# ----------------------------------------------------------------------------- generators

NUMBERS = st.one_of(
    st.sampled_from(["pi", "0", "1", "2", "3", "0.5", ".25", "1.", "3e-1", "1.5E0", "2E-1", "0.125", "00.75"]),
    st.floats(-2, 2, allow_nan=False).map(repr),
)


@functools.lru_cache(maxsize=None)  # one strategy per name list: building one is slow
def expressions(names: tuple):
    """Parameter expressions whose values stay small (so two readers agree to rounding)."""
    leaves = NUMBERS if not names else st.one_of(NUMBERS, st.sampled_from(names))

    def extend(inner):
        pair = st.tuples(inner, st.sampled_from(["+", "-", "*", " + ", " - ", " * "]), inner)
        return st.one_of(
            pair.map(lambda t: f"{t[0]}{t[1]}{t[2]}"),  # no parentheses: precedence decides
            pair.map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
            inner.map(lambda a: f"-{a}"),
            inner.map(lambda a: f"+{a}"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]} / (2 + cos({t[1]}))"),
            st.tuples(st.sampled_from(["sin", "cos"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
            inner.map(lambda a: f"tan(sin({a}))"),
            inner.map(lambda a: f"exp(cos({a}))"),
            inner.map(lambda a: f"ln(2 + sin({a}))"),
            inner.map(lambda a: f"sqrt(2+cos({a}))"),
            st.tuples(inner, st.sampled_from(["2", "3"])).map(lambda t: f"({t[0]})^{t[1]}"),
            st.tuples(inner, st.sampled_from(["-1", "0.5", "-1.5"])).map(lambda t: f"(2 + cos({t[0]}))^{t[1]}"),
            inner.map(lambda a: f"2^sin({a})"),
            inner.map(lambda a: f"-sin({a})^2"),
        )

    return st.recursive(leaves, extend, max_leaves=5)


def bounded(expr: str) -> str:
    """Arguments passed to a defined gate stay in [-1, 1], so its body's products stay small."""
    return f"sin({expr})"


@st.composite
def gate_call(draw, gates, qubits, params):
    """``name(params) args;`` with distinct qubits drawn from ``qubits``, or None if none fits."""
    fits = sorted(g for g, (_, nq) in gates.items() if nq <= len(qubits))
    if not fits:
        return None
    name = draw(st.sampled_from(fits))
    n_params, n_qubits = gates[name]
    exprs = [draw(expressions(tuple(params))) for _ in range(n_params)]
    if name.startswith("g"):
        exprs = [bounded(e) for e in exprs]
    args = draw(st.permutations(qubits))[:n_qubits]
    sep = draw(st.sampled_from([",", ", ", " , "]))
    head = f"{name}({sep.join(exprs)})" if n_params else name
    return name, head, args, sep


@st.composite
def programs(draw, extra=False):
    """A valid OpenQASM 2.0 program (every qubit index in range, no repeated qubit)."""
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3).filter(lambda s: sum(s) <= 7))
    regs = dict(zip(["q", "r", "anc"], sizes))
    gates = dict(QELIB1)
    if extra:
        gates.update(EXTRA)
    parts = ["OPENQASM 2.0;", 'include "qelib1.inc";']
    for name in sorted(EXTRA):
        if extra and name in DEFINED_EXTRA and draw(st.booleans()):
            parts.append(DEFINED_EXTRA[name])
    for k in range(draw(st.integers(0, 3))):
        params = ["theta", "phi"][:draw(st.integers(0, 2))]
        formals = ["a", "b", "c"][:draw(st.integers(1, 3))]
        body = []
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.integers(0, 5)) == 0:
                body.append("barrier " + ",".join(formals) + ";")
                continue
            call = draw(gate_call(gates, formals, params))
            if call is not None:
                name, head, args, sep = call
                body.append(f"{head} {sep.join(args)};")
        signature = f"g{k}({','.join(params)})" if params else f"g{k}"
        parts.append(f"gate {signature} {','.join(formals)} {{ {' '.join(body)} }}")
        gates[f"g{k}"] = (len(params), len(formals))
    parts += [f"qreg {name}[{size}];" for name, size in regs.items()]
    every = [f"{name}[{i}]" for name, size in regs.items() for i in range(size)]
    for _ in range(draw(st.integers(1, 12))):
        call = draw(gate_call(gates, every, []))
        if call is None:
            continue
        name, head, args, sep = call
        n_qubits = len(args)
        equal = [(a, b) for a in regs for b in regs if a != b and regs[a] == regs[b]]
        if n_qubits == 1 and draw(st.booleans()):
            args = [draw(st.sampled_from(sorted(regs)))]  # broadcast over a register
        elif n_qubits == 2 and equal and draw(st.booleans()):
            args = list(draw(st.sampled_from(equal)))  # pairwise over two registers
        parts.append(f"{head} {sep.join(args)};")
        if draw(st.integers(0, 7)) == 0:
            parts.append("barrier " + ", ".join(sorted(regs)) + ";")
    if draw(st.booleans()):  # final measurements, dropped by the reader
        parts += [f"creg c_{name}[{size}];" for name, size in regs.items()]
        parts += [f"measure {name} -> c_{name};" for name in regs]
    return "".join(p + draw(SPACES) for p in parts)


# ----------------------------------------------------------------------------- helpers

def dense(c: qt.Circuit) -> np.ndarray:
    return qt.simulate(c, backend="statevector").to_dense()[0].numpy()


def big_endian(amplitudes, n: int) -> np.ndarray:
    """Qiskit's little-endian amplitudes in the engine's big-endian order (as in test_qiskit.py)."""
    return np.asarray(amplitudes).reshape([2] * n).transpose(range(n - 1, -1, -1)).reshape(-1)


@contextlib.contextmanager
def limits(operations: int, steps: int, qubits: int):
    """Lower the reader's limits, so that a mutated program cannot ask for long work."""
    old = qasm.MAX_OPERATIONS, qasm.MAX_EXPANSION_STEPS, qasm.MAX_QUBITS
    qasm.MAX_OPERATIONS, qasm.MAX_EXPANSION_STEPS, qasm.MAX_QUBITS = operations, steps, qubits
    try:
        yield
    finally:
        qasm.MAX_OPERATIONS, qasm.MAX_EXPANSION_STEPS, qasm.MAX_QUBITS = old


def read_or_refuse(text: str):
    """``from_qasm(text)``: a circuit, or None after a ValueError that names a line."""
    try:
        c = qt.Circuit.from_qasm(text, drop_final_measurements=True)
    except ValueError as exc:
        assert re.search(r"line \d+", str(exc)), f"no line number in {exc!r}"
        event("refused")
        return None
    event("read")
    return c


# ----------------------------------------------------------------------------- properties

@FUZZ
@given(programs(extra=True))
def test_generated_programs_round_trip_through_to_qasm(text):
    c = qt.Circuit.from_qasm(text, drop_final_measurements=True)
    back = qt.Circuit.from_qasm(c.to_qasm())
    assert [(op.name, op.qubits) for op in back] == [(op.name, op.qubits) for op in c]
    np.testing.assert_allclose(dense(back), dense(c), atol=1e-10)


@pytest.mark.skipif(qasm2 is None, reason="needs qiskit")
@FUZZ
@given(programs(extra=False))
def test_generated_programs_agree_with_qiskit(text):
    compare_with_qiskit(text)


@pytest.mark.skipif(qasm2 is None, reason="needs qiskit")
@FUZZ
@given(programs(extra=True))
def test_generated_programs_with_extra_gates_agree_with_qiskit_where_it_reads_them(text):
    compare_with_qiskit(text)


def compare_with_qiskit(text: str):
    try:
        qc = qasm2.loads(text)
    except qasm2.QASM2ParseError:
        event("Qiskit refuses the program")
        return  # e.g. an extra gate without a definition: nothing to compare
    event("Qiskit reads the program")
    c = qt.Circuit.from_qasm(text, drop_final_measurements=True)
    qc = qc.remove_final_measurements(inplace=False)
    assert c.n_qubits == qc.num_qubits
    want = big_endian(Statevector(qc).data, c.n_qubits)
    np.testing.assert_allclose(dense(c), want, atol=1e-10)


TOKENS = st.sampled_from([
    "OPENQASM", "2.0", "include", '"qelib1.inc"', "qreg", "creg", "gate", "opaque", "measure", "reset", "barrier",
    "if", "q", "r", "a", "b", "g", "h", "cx", "rx", "u3", "ccx", "U", "CX", "pi", "sin", "exp", "ln", "sqrt",
    "theta", "0", "1", "2", "3", "1e999", "99999999999999999999", "0.5", ".5", "1e-3", ";", ",", "(", ")", "[",
    "]", "{", "}", "->", "==", "+", "-", "*", "/", "^", "//", "\n", " ", "$", "é", "\x00", '"',
])


@GARBAGE
@given(st.lists(TOKENS, max_size=60).map(" ".join))
def test_token_soup_parses_or_raises_a_value_error_with_a_line(text):
    with limits(operations=5000, steps=50_000, qubits=64):
        read_or_refuse(text)


@GARBAGE
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200))
def test_random_text_parses_or_raises_a_value_error_with_a_line(text):
    with limits(operations=5000, steps=50_000, qubits=64):
        read_or_refuse("qreg q[2];\n" + text)
        read_or_refuse(text)


@st.composite
def mutated(draw):
    """A generated program with a few byte-level or token-level edits."""
    text = draw(programs(extra=True))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 20)))
        kind = draw(st.sampled_from(["delete", "duplicate", "insert", "swap", "number", "truncate"]))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(TOKENS) + text[i:]
        elif kind == "swap":
            k = draw(st.integers(0, len(text)))
            text = text[:i] + text[k:k + 5] + text[i + 5:]
        elif kind == "number":
            numbers = list(re.finditer(r"\d+(\.\d*)?", text))
            if numbers:
                m = draw(st.sampled_from(numbers))
                big = draw(st.sampled_from(["0", "1e999", "999999", "9" * 40, "65", "-1", "1e-400", "2^1024"]))
                text = text[:m.start()] + big + text[m.end():]
        else:
            text = text[:i]
    return text


@GARBAGE
@given(mutated())
def test_mutated_programs_parse_or_raise_a_value_error_with_a_line(text):
    with limits(operations=5000, steps=50_000, qubits=64):
        c = read_or_refuse(text)
        if c is not None:  # what was read is written and read back as the same ops
            back = qt.Circuit.from_qasm(c.to_qasm())
            assert [(op.name, op.qubits) for op in back] == [(op.name, op.qubits) for op in c]
