"""OpenQASM 2.0 as hostile input: bounded work, no recursion, clear errors with line numbers.

Each test here reproduces a defect of issue 24 (part 2): nested gate definitions that double
at each level, huge registers with broadcast, deep definition chains and long expressions
that hit Python's recursion limit, arithmetic that escaped as ``OverflowError`` or
``ZeroDivisionError`` without a line, and definitions with repeated or reserved names that
were accepted silently. The limits are module-level constants of ``qlam_tn.qasm`` that a
user can raise; the errors name them.
"""
import gc
import math
import time

import numpy as np
import pytest

import qlam_tn as qt
from qlam_tn import qasm


def doublings(levels: int) -> str:
    """``gate g{i} a { g{i-1} a; g{i-1} a; }``: one call of ``g{levels}`` is 2**levels gates."""
    text = "gate g0 a { h a; }\n"
    text += "".join(f"gate g{i} a {{ g{i - 1} a; g{i - 1} a; }}\n" for i in range(1, levels + 1))
    return text + f"qreg q[1];\ng{levels} q[0];\n"


def chain(depth: int, leaf: str = "h a;") -> str:
    """``g0`` applies ``leaf``, each ``g{i}`` calls ``g{i-1}`` once: one gate, ``depth`` levels."""
    text = f"gate g0 a {{ {leaf} }}\n"
    text += "".join(f"gate g{i} a {{ g{i - 1} a; }}\n" for i in range(1, depth))
    return text + f"qreg q[1];\ng{depth - 1} q[0];\n"


# ----------------------------------------------------------------------------- work limits

def test_nested_doublings_fail_fast_naming_the_limit():
    text = doublings(22)  # 4,194,304 gates, 685 bytes: minutes of expansion before the cap
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"line 25: .*MAX_OPERATIONS"):
        qt.Circuit.from_qasm(text)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ValueError, match="MAX_OPERATIONS"):
        qt.Circuit.from_qasm(doublings(3000))  # 2**3000 gates: refused as fast
    assert gc.isenabled()  # the reader pauses the cyclic collector while it expands, and restores it


def test_the_operation_limit_counts_exactly_and_can_be_raised(monkeypatch):
    monkeypatch.setattr(qasm, "MAX_OPERATIONS", 2 ** 10)
    c = qt.Circuit.from_qasm(doublings(10))
    assert [op.name for op in c] == ["h"] * 2 ** 10
    with pytest.raises(ValueError, match=r"more than 1,024 gates.*qlam_tn\.qasm\.MAX_OPERATIONS"):
        qt.Circuit.from_qasm(doublings(10) + "h q[0];\n")
    with pytest.raises(ValueError, match="MAX_OPERATIONS"):  # broadcast counts too
        qt.Circuit.from_qasm("qreg q[1025]; h q;")
    monkeypatch.setattr(qasm, "MAX_OPERATIONS", 2 ** 10 + 1)
    assert len(qt.Circuit.from_qasm(doublings(10) + "h q[0];\n")) == 2 ** 10 + 1


def test_huge_registers_are_refused_before_allocating():
    start = time.perf_counter()
    for text in ("qreg q[100000000];\nh q;", "qreg q[100000000];", "qreg a[60000];\nqreg b[60000];",
                 "creg c[100000000];\nqreg q[1];"):
        with pytest.raises(ValueError, match=r"line \d+: .*MAX_QUBITS"):
            qt.Circuit.from_qasm(text)
    with pytest.raises(ValueError, match=r"line 1: .*too large"):
        qt.Circuit.from_qasm("qreg q[" + "9" * 5000 + "];")  # beyond int()'s 4300-digit limit
    with pytest.raises(ValueError, match=r"line 2: .*too large"):
        qt.Circuit.from_qasm("qreg q[2];\nh q[" + "9" * 5000 + "];")
    assert time.perf_counter() - start < 1.0


def test_the_qubit_limit_can_be_raised(monkeypatch):
    monkeypatch.setattr(qasm, "MAX_QUBITS", 4)
    assert qt.Circuit.from_qasm("qreg a[1]; qreg b[3]; h b;").n_qubits == 4
    with pytest.raises(ValueError, match=r"5 qubits, more than qlam_tn\.qasm\.MAX_QUBITS = 4"):
        qt.Circuit.from_qasm("qreg a[2]; qreg b[3];")


def test_deep_chains_cost_expansion_steps(monkeypatch):
    """A chain makes one gate but walks every level: the step limit bounds that walk."""
    monkeypatch.setattr(qasm, "MAX_EXPANSION_STEPS", 1000)
    assert len(qt.Circuit.from_qasm(chain(500))) == 1
    with pytest.raises(ValueError, match=r"line 502: .*MAX_EXPANSION_STEPS"):
        qt.Circuit.from_qasm(chain(500).replace("q[1];\n", "q[3];\n").replace("q[0];", "q;"))


# ----------------------------------------------------------------------------- no recursion

def test_a_3000_deep_definition_chain_expands_without_recursion():
    c = qt.Circuit.from_qasm(chain(3000, leaf="rx(0.25) a;"))
    assert [(op.name, op.qubits, op.params) for op in c] == [("rx", (0,), (0.25,))]


def test_a_3000_deep_chain_with_parameters_passes_them_down():
    text = "gate g0(t) a { rx(t) a; }\n"
    text += "".join(f"gate g{i}(t) a {{ g{i - 1}(t + 1) a; }}\n" for i in range(1, 3000))
    text += "qreg q[1];\ng2999(-2999 + 0.5) q[0];\n"
    (op,) = qt.Circuit.from_qasm(text).operations
    assert op.name == "rx" and op.params == (0.5,)


@pytest.mark.parametrize("expr, value", [
    ("-" * 3000 + "0.5", 0.5),
    ("-" * 3001 + "0.5", -0.5),
    ("(" * 3000 + "0.5" + ")" * 3000, 0.5),
    ("sin(" * 3000 + "0.5" + ")" * 3000, None),
    ("+".join(["0.001"] * 3000), 3.0),
    ("1^" * 3000 + "2", 1.0),
    ("0.5^" * 3000 + "-1", "tower"),
])
def test_long_and_deep_expressions_parse_without_recursion(expr, value):
    (op,) = qt.Circuit.from_qasm(f"qreg q[1];\nrx({expr}) q[0];").operations
    if value is None:  # 3000 nested sines: iterate in Python for the reference
        value = 0.5
        for _ in range(3000):
            value = math.sin(value)
    elif value == "tower":  # ^ groups to the right: 0.5^(0.5^(...^(-1)))
        value = -1.0
        for _ in range(3000):
            value = 0.5 ** value
    assert op.params[0] == pytest.approx(value, abs=1e-12)


# ----------------------------------------------------------------------------- arithmetic

@pytest.mark.parametrize("expr, match", [
    ("2^10000", "out of range"),
    ("2^2^2^2^2", "2 \\^ 65536 is out of range"),
    ("exp(1000)", "out of range"),
    ("0^-1", "zero to a negative power"),
    ("(-8)^(1/3)", "not a real number"),
    ("(-1e200)^3", r"\(-1e\+200\) \^ 3 is out of range"),
    ("1e999", "out of range"),
    ("9" * 400, "out of range"),
    ("1e308 * 10", "out of range"),
    ("ln(0)", "invalid argument"),
    ("sqrt(-1)", "invalid argument"),
    ("1/0", "division by zero"),
    ("1/(1-1)", "division by zero"),
])
def test_arithmetic_errors_are_value_errors_with_their_line(expr, match):
    with pytest.raises(ValueError, match=rf"line 3: .*{match}"):
        qt.Circuit.from_qasm(f"qreg q[1];\n\nrx({expr}) q[0];")


def test_arithmetic_errors_inside_a_definition_name_the_body_line():
    text = "qreg q[1];\ngate g(t) a {\n  rx(exp(t)) a;\n}\ng(1) q[0];\ng(1000) q[0];\n"
    with pytest.raises(ValueError, match=r"line 3: exp\(1000(\.0)?\) is out of range.*line 6"):
        qt.Circuit.from_qasm(text)


def test_eof_anywhere_is_a_value_error_with_a_line():
    for text in ["OPENQASM", "OPENQASM 2.0", "qreg", "qreg q[", "qreg q[1]; h", "qreg q[1]; rx(", "qreg q[1]; rx(1",
                 "gate g a {", "gate g a { h a;", "gate g(", "qreg q[1]; creg c[1]; measure q[0] ->"]:
        with pytest.raises(ValueError, match=r"line \d+"):
            qt.Circuit.from_qasm(text)


# ----------------------------------------------------------------------------- names

@pytest.mark.parametrize("text, match", [
    ("gate g a, a { h a; }\nqreg q[2];\ng q[0], q[1];", "repeats the qubit argument 'a'"),
    ("gate g a, b { cx a, a; }\nqreg q[2];", "repeats a qubit"),
    ("gate g(t, t) a { rx(t) a; }\nqreg q[1];", "repeats the parameter 't'"),
    ("gate g(t) t { rx(t) t; }\nqreg q[1];", "'t' both as a parameter and as a qubit"),
    ("gate g a { h a; }\ngate g a { x a; }\nqreg q[1];", "gate 'g' is already defined on line 1"),
    ("gate g(pi) a { rx(pi) a; }\nqreg q[1];", "reserved"),
    ("gate g(sin) a { rx(sin) a; }\nqreg q[1];", "reserved"),
    ("gate measure a { h a; }\nqreg q[1];", "reserved"),
    ("gate U(a, b, c) q { }\nqreg q[1];", "built into OpenQASM"),
    ('include "qelib1.inc";\ngate h a { x a; }\nqreg q[1];', "already defined by qelib1.inc"),
    ('gate h a { x a; }\ninclude "qelib1.inc";\nqreg q[1];', "already defined by qelib1.inc"),
    ("gate g a { rx a; }\nqreg q[1];", "takes 1 parameter"),
    ("gate g(t) a { rx(s) a; }\nqreg q[1];", "unknown parameter 's'"),
    ("gate g a { h b; }\nqreg q[1];", "unknown qubit 'b'"),
    ("gate g a { h a[0]; }\nqreg q[1];", "unknown qubit 'a'"),
    ("gate g a[0] { h a; }\nqreg q[1];", "cannot be indexed"),
    ("qreg q[1];\ngate g a { h a; }\ng(1) q[0];", "takes 0 parameter"),
    ("qreg q[2];\nbarrier r;", "undeclared"),
    ("qreg q[2];\nbarrier q[2];", "out of range"),
    ("qreg pi[2];", "reserved"),
    ("qreg q[2];\ncreg c[1];\nmeasure q -> c[1];", "out of range for creg c"),
    ("qreg q[2];\ncreg c[1];\nmeasure q -> d;", "bit register 'd' is undeclared"),
])
def test_definitions_and_declarations_with_bad_names_are_refused(text, match):
    with pytest.raises(ValueError, match=rf"line \d+.*{match}"):
        qt.Circuit.from_qasm(text, drop_final_measurements=True)


def test_known_gate_definitions_are_still_read_as_those_gates():
    """What ``to_qasm`` and other exporters write: definitions of gates outside the paper's qelib1."""
    c = qt.Circuit(3).sx(0).swap(0, 2).rzz(0.3, 1, 2).cry(0.2, 2, 0)
    back = qt.Circuit.from_qasm(c.to_qasm())
    assert [op.name for op in back] == ["sx", "swap", "rzz", "cry"]
    np.testing.assert_allclose(qt.simulate(back, backend="statevector").to_dense().numpy(),
                               qt.simulate(c, backend="statevector").to_dense().numpy(), atol=1e-12)


def test_a_definition_with_many_arguments_reads_in_linear_time():
    """Names are looked up in dicts: 40,000 parameters (or 5,000 qubit arguments used 20,000 times)
    once took seconds to minutes, quadratically, with no limit counting it."""

    n = 40_000
    params = ",".join(f"p{i}" for i in range(n))
    prog = f'OPENQASM 2.0;\ninclude "qelib1.inc";\ngate g({params}) a {{ rx(p{n - 1}) a; }}\nqreg q[1];\n'
    qs = ",".join(f"a{i}" for i in range(5000))
    body = " ".join(f"h a{(i * 7) % 5000};" for i in range(20_000))
    prog2 = f'OPENQASM 2.0;\ninclude "qelib1.inc";\ngate g {qs} {{ {body} }}\nqreg q[1];\n'
    t0 = time.perf_counter()
    qt.Circuit.from_qasm(prog)
    qt.Circuit.from_qasm(prog2)
    assert time.perf_counter() - t0 < 5.0  # linear: well under a second here; quadratic took ~15 s
