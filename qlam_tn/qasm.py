"""OpenQASM 2.0 in and out of ``Circuit``.

``from_qasm(text)`` reads the language of the OpenQASM 2.0 paper with ``qelib1.inc``:

* ``qreg`` declarations (several allowed: flattened in declaration order, so with
  ``qreg a[2]; qreg b[3];`` the qubit ``b[0]`` is qubit 2); ``creg`` declarations become the
  circuit's classical registers (``Circuit.cregs``, bits numbered on in declaration order);
  ``barrier`` is read, checked and ignored;
* ``measure q[i] -> c[j];`` (or register to register of one size), ``reset``, and
  ``if (creg == value) <gate call | measure | reset>;``: the circuit then runs as sampled
  trajectories, ``qt.simulate(circuit, shots=S)`` returning Aer-style counts;
* the gates of ``qelib1.inc`` as Qiskit ships it (``U``, ``CX``, ``u3 u2 u1 u0 u p id x y z h s
  sdg t tdg sx sxdg rx ry rz cx cy cz ch swap crx cry crz cu1 cp cu3 cu csx rxx rzz ccx
  cswap``), plus ``ryy`` and ``iswap``, with or without a ``gate`` definition in the file;
* other ``gate`` definitions (expanded inline, may call earlier definitions);
* register broadcasting (``h q;``, ``cx a, b;`` over equal-size registers);
* parameter expressions: numbers, ``pi``, ``+ - * / ^`` (``^`` binds tighter than a unary
  minus and to the right, as in Qiskit: ``-2^2 = -4``, ``2^3^2 = 512``), parentheses and the
  functions ``sin cos tan exp ln sqrt``, compiled to postfix by an operator-precedence parser
  with explicit stacks (no ``eval``, no recursion). A value that is not a finite real number
  (``2^10000``, ``exp(1000)``, ``0^-1``, ``(-8)^(1/3)``, ``1e999``, ``ln(0)``) is refused.

``drop_final_measurements=True`` asks for a unitary circuit: measurements at the end are dropped,
and a gate after a measurement on its qubit, ``reset`` and ``if`` raise ``ValueError`` naming the
instruction and its line. Always refused: ``opaque``, and the multi-controlled gates of
qelib1.inc without a 2-qubit form (``rccx rc3x c3x c3sqrtx c4x``).
So do definitions that repeat a qubit or parameter name, use a reserved word (``pi``, a
function, a keyword, ``U``/``CX``) as a name, define a gate twice or redefine a gate of the
included ``qelib1.inc``; a definition's body is checked when it is read (arity, names).

Hostile input is bounded. Expansion uses an explicit stack, so definition chains may be as
deep as the file is long, and three limits, module-level constants a caller may raise
(``qlam_tn.qasm.MAX_OPERATIONS = ...``), are checked before the work they bound is done:

* ``MAX_OPERATIONS``: gates of the expanded circuit (definitions and broadcasts expanded);
  each definition knows how many gates one call makes, so ``22`` nested doublings fail at the
  call instead of expanding four million gates;
* ``MAX_EXPANSION_STEPS``: the walk itself: each gate call (of a defined gate too), each term
  of a parameter expression evaluated, each qubit of a broadcast ``measure``; it bounds deep
  chains and long expressions that make few gates;
* ``MAX_QUBITS``: the qubits of all qregs together, and the bits of all cregs together.

Every error is a ``ValueError`` whose message holds the line (inside a definition: the body's
line and the line of the call).

``to_qasm(circuit)`` writes ``OPENQASM 2.0; include "qelib1.inc";``, one ``qreg q[n]``, the
circuit's ``creg`` declarations, and one line per op (``measure``, ``reset``, and ``if(c==v)``
for an op conditioned on a whole register; another condition raises ``ValueError``). Only the 23 gates of the paper's qelib1.inc are assumed known (as by
Qiskit's ``qasm2.loads``): ``p``/``cp`` are written as ``u1``/``cu1`` (same matrices), and the
other gates (``sx sxdg swap iswap crx cry rxx ryy rzz``) get ``gate`` definitions that are
exact, global phase included. A ``gate`` definition whose name and signature are those of a
known gate is read back as that gate (as Qiskit's ``QuantumCircuit.from_qasm_str`` does), so
``from_qasm(to_qasm(c))`` has the same ops. A 1-qubit ``unitary`` is written as ``u3`` and
loses its global phase. OpenQASM 2 has no global phase, no per-sample parameters and no
2-qubit unitary: ``global_phase`` is dropped, and a per-sample parameter (``B > 1``) or a
2-qubit ``unitary`` raises ``ValueError``.

Qubit order: OpenQASM indices are explicit, so ``q[i]`` is the engine's qubit ``i``. Only
dense state vectors differ: Qiskit's ``Statevector`` of the same file is little-endian (qubit 0
is the rightmost bit), the engine's big-endian; reverse the qubit axes to compare.
"""
from __future__ import annotations

import contextlib
import gc
import math
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .circuit import Circuit

__all__ = ["from_qasm", "to_qasm", "MAX_OPERATIONS", "MAX_EXPANSION_STEPS", "MAX_QUBITS"]

# Limits on what one program may cost; read when from_qasm starts, so a caller may raise them.
MAX_OPERATIONS = 1_000_000
MAX_EXPANSION_STEPS = 20_000_000
MAX_QUBITS = 100_000

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\f\v]+) | (?P<nl>\n) | (?P<comment>//[^\n]*)
  | (?P<real>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)? | \d+[eE][+-]?\d+)
  | (?P<int>\d+)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>"[^"\n]*")
  | (?P<op>->|==|[;,()\[\]{}+\-*/^])
""", re.VERBOSE)


class _Tok(NamedTuple):
    kind: str  # real, int, id, str, op, eof
    text: str
    line: int


def _tokenize(text: str) -> List[_Tok]:
    toks, line, pos = [], 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"OpenQASM line {line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        if kind == "nl":
            line += 1
        elif kind not in ("ws", "comment"):
            toks.append(_Tok(kind, m.group(), line))
        pos = m.end()
    toks.append(_Tok("eof", "", line))
    return toks


def _shown(tok: _Tok) -> str:
    text = tok.text if len(tok.text) <= 20 else tok.text[:20] + f"...({len(tok.text)} characters)"
    return repr(text) if tok.kind != "eof" else "end of file"


# ---------------------------------------------------------------------------- expressions
# An expression is compiled to postfix: a tuple of ("num", value), ("var", index into the
# enclosing gate's parameters), ("neg",), ("bin", op) and ("fn", name); evaluating it is one
# loop over a value stack, however deep the parentheses.

_FUNCS: Dict[str, Callable[[float], float]] = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp, "ln": math.log, "sqrt": math.sqrt,
}
_BINARY = {"+": (1, True), "-": (1, True), "*": (2, True), "/": (2, True), "^": (4, False)}  # (precedence, left)
_NEG_PRECEDENCE = 3  # below ^, so -2^2 is -(2^2) (as Qiskit reads it)
_KEYWORDS = {"OPENQASM", "include", "qreg", "creg", "gate", "opaque", "measure", "reset", "barrier", "if", "pi",
             *_FUNCS}


def _num(value: float) -> str:
    return f"{value:.6g}"


def _binary(op: str, a: float, b: float, line: int) -> float:
    if op == "/" and b == 0:
        raise ValueError(f"OpenQASM line {line}: division by zero ({_num(a)} / 0)")
    why = "is out of range"
    try:
        if op == "+":
            value = a + b
        elif op == "-":
            value = a - b
        elif op == "*":
            value = a * b
        elif op == "/":
            value = a / b
        else:
            value = math.pow(a, b)  # real only: a negative base to a fraction raises, never complex
    except (OverflowError, ValueError):
        value = math.inf
        if op == "^" and a == 0 and b < 0:
            why = "is a zero to a negative power"
        elif op == "^" and a < 0 and not b.is_integer():
            why = "is not a real number (a negative base to a fractional power)"
    if not math.isfinite(value):
        left = f"({_num(a)})" if a < 0 else _num(a)
        raise ValueError(f"OpenQASM line {line}: {left} {op} {_num(b)} {why}")
    return value


def _function(name: str, x: float, line: int) -> float:
    try:
        value = _FUNCS[name](x)
    except OverflowError:
        value = math.inf
    except ValueError:
        raise ValueError(f"OpenQASM line {line}: {name} of an invalid argument ({_num(x)})") from None
    if not math.isfinite(value):
        raise ValueError(f"OpenQASM line {line}: {name}({_num(x)}) is out of range")
    return value


def _evaluate(postfix: tuple, env: Sequence[float], line: int) -> float:
    stack: List[float] = []
    for item in postfix:
        kind = item[0]
        if kind == "num":
            stack.append(item[1])
        elif kind == "var":
            stack.append(env[item[1]])
        elif kind == "neg":
            stack[-1] = -stack[-1]
        elif kind == "fn":
            stack[-1] = _function(item[1], stack[-1], line)
        else:
            b = stack.pop()
            stack[-1] = _binary(item[1], stack[-1], b, line)
    return stack[0]


# ---------------------------------------------------------------------------- gates

class _Arg(NamedTuple):
    reg: str
    index: Optional[int]  # None: the whole register (broadcast)


class _Call(NamedTuple):
    name: str
    params: Tuple[tuple, ...]  # postfix expressions
    args: Tuple[_Arg, ...]
    line: int


class _BodyCall(NamedTuple):
    """One call in a definition's body, resolved when the definition is read."""
    name: str
    target: Optional["_GateDef"]  # the definition meant when written (None: a built-in gate)
    params: Tuple[tuple, ...]  # postfix, "var" items index the definition's parameters
    qubits: Tuple[int, ...]  # positions in the definition's qubit list
    line: int


class _GateDef(NamedTuple):
    params: Tuple[str, ...]
    qubits: Tuple[str, ...]
    body: Tuple[_BodyCall, ...]
    operations: int  # gates one call makes (saturated just above MAX_OPERATIONS)
    steps: int  # expansion steps one call costs, its own call included (saturated likewise)


_UNSUPPORTED_QELIB = {"rccx", "rc3x", "c3x", "c3sqrtx", "c4x"}
_IDENTIFIER = re.compile(r"[a-z][A-Za-z0-9_]*")  # OpenQASM 2's id


def _apply_builtin(c: Circuit, name: str, p: Sequence[float], q: Sequence[int]) -> None:
    """Append the qelib1.inc gate ``name`` (a key of ``_ARITY``)."""
    pi2 = math.pi / 2
    if name in ("u3", "u", "U"):
        c.u3(p[0], p[1], p[2], q[0])
    elif name == "u2":
        c.u3(pi2, p[0], p[1], q[0])
    elif name in ("u1", "p"):
        c.p(p[0], q[0])
    elif name == "u0":
        c.id(q[0])
    elif name in ("CX", "cx"):
        c.cx(q[0], q[1])
    elif name in ("cu1", "cp"):
        c.cp(p[0], q[0], q[1])
    elif name == "cu":  # controlled U3 with a phase γ on the control
        c.p(p[3], q[0]).cu3(p[0], p[1], p[2], q[0], q[1])
    elif name == "csx":  # SX = e^{iπ/4} U3(π/2, -π/2, π/2)
        c.p(math.pi / 4, q[0]).cu3(pi2, -pi2, pi2, q[0], q[1])
    elif name in ("ccx", "cswap"):
        getattr(c, name)(*q)
    elif name in ("id", "h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "sxdg", "rx", "ry", "rz",
                  "cy", "cz", "ch", "swap", "iswap", "crx", "cry", "crz", "cu3", "rxx", "ryy", "rzz"):
        getattr(c, name)(*p, *q)
    else:
        raise AssertionError(f"no rule for built-in gate {name!r}")


_ARITY = {  # (number of params, number of qubits) of the built-in gates, for clear errors
    "U": (3, 1), "CX": (0, 2), "u3": (3, 1), "u": (3, 1), "u2": (2, 1), "u1": (1, 1), "p": (1, 1),
    "u0": (1, 1), "id": (0, 1), "h": (0, 1), "x": (0, 1), "y": (0, 1), "z": (0, 1), "s": (0, 1),
    "sdg": (0, 1), "t": (0, 1), "tdg": (0, 1), "sx": (0, 1), "sxdg": (0, 1), "rx": (1, 1),
    "ry": (1, 1), "rz": (1, 1), "cx": (0, 2), "cy": (0, 2), "cz": (0, 2), "ch": (0, 2),
    "swap": (0, 2), "iswap": (0, 2), "crx": (1, 2), "cry": (1, 2), "crz": (1, 2), "cu1": (1, 2),
    "cp": (1, 2), "cu3": (3, 2), "cu": (4, 2), "csx": (0, 2), "rxx": (1, 2), "ryy": (1, 2),
    "rzz": (1, 2), "ccx": (0, 3), "cswap": (0, 3),
}


class _Parser:
    def __init__(self, text: str, drop_final_measurements: bool):
        self.max_operations = MAX_OPERATIONS
        self.max_steps = MAX_EXPANSION_STEPS
        self.max_qubits = MAX_QUBITS
        self.toks = _tokenize(text)
        self.pos = 0
        self.drop_final = drop_final_measurements
        self.qregs: Dict[str, Tuple[int, int]] = {}  # name -> (offset, size)
        self.n_qubits = 0
        self.cregs: Dict[str, int] = {}
        self.creg_offsets: Dict[str, int] = {}  # the index of each creg's bit 0 among all clbits
        self.n_clbits = 0
        self.gates: Dict[str, _GateDef] = {}
        self.defined: Dict[str, int] = {}  # every gate name defined in the file -> its line
        self.qelib1_included = False
        self.measured: Dict[int, int] = {}  # qubit -> line of its measurement
        self.steps = 0
        # Built-in gates in program order, (name, params, qubits, line): the qubit count is
        # only known at the end, since a qreg may be declared after the first gates.
        self.flat: List[Tuple[str, List[float], List[int], int, Optional[Tuple[str, int]]]] = []
        self.condition: Optional[Tuple[str, int]] = None  # (creg, value) of the statement being read

    # -- token helpers
    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def next(self) -> _Tok:
        tok = self.toks[self.pos]
        if tok.kind != "eof":  # stay on the end-of-file token, however often it is read
            self.pos += 1
        return tok

    def expect(self, text: str) -> _Tok:
        tok = self.next()
        if tok.kind != "op" or tok.text != text:
            raise ValueError(f"OpenQASM line {tok.line}: expected {text!r}, found {_shown(tok)}")
        return tok

    def ident(self) -> _Tok:
        tok = self.next()
        if tok.kind != "id":
            raise ValueError(f"OpenQASM line {tok.line}: expected a name, found {_shown(tok)}")
        return tok

    def new_name(self, what: str) -> _Tok:
        """A name being declared: not a reserved word."""
        tok = self.ident()
        if tok.text in _KEYWORDS:
            raise ValueError(f"OpenQASM line {tok.line}: {tok.text!r} is a reserved word and cannot name {what}")
        return tok

    def integer(self) -> int:
        tok = self.next()
        if tok.kind != "int":
            raise ValueError(f"OpenQASM line {tok.line}: expected an integer, found {_shown(tok)}")
        if len(tok.text) > 18:  # far beyond any limit, and int() refuses over 4300 digits
            raise ValueError(f"OpenQASM line {tok.line}: integer {_shown(tok)} is too large")
        return int(tok.text)

    # -- expressions
    def expr(self, params: Dict[str, int]):
        """One expression from the current token on, as postfix; ``params``: the names it may use,
        each with its index (a dict: a definition with many parameters is read in linear time).

        An operator-precedence parser with explicit stacks: parentheses and unary minuses
        nest as deep as the text, with no recursion. An expression without parameters is
        evaluated here, so its errors come with its line even inside an unused definition.
        """
        first = self.peek()
        out: List[tuple] = []
        ops: List[tuple] = []  # ("(", function name or None, line), ("neg",), ("bin", op)
        open_parens = 0
        operand = True  # expecting an operand (else an operator or the end)
        while True:
            tok = self.peek()
            if operand:
                self.next()
                if tok.text in ("-", "+") and tok.kind == "op":
                    if tok.text == "-":
                        ops.append(("neg",))
                    continue
                if tok.text == "(" and tok.kind == "op":
                    ops.append(("(", None, tok.line))
                    open_parens += 1
                    continue
                if tok.kind in ("real", "int"):
                    value = float(tok.text)
                    if not math.isfinite(value):
                        raise ValueError(f"OpenQASM line {tok.line}: number {_shown(tok)} is out of range")
                    out.append(("num", value))
                elif tok.kind == "id" and tok.text == "pi":
                    out.append(("num", math.pi))
                elif tok.kind == "id" and tok.text in _FUNCS:
                    self.expect("(")
                    ops.append(("(", tok.text, tok.line))
                    open_parens += 1
                    continue
                elif tok.kind == "id":
                    if tok.text not in params:
                        raise ValueError(f"OpenQASM line {tok.line}: unknown parameter {tok.text!r}")
                    out.append(("var", params[tok.text]))
                else:
                    raise ValueError(f"OpenQASM line {tok.line}: unexpected {_shown(tok)} in an expression")
                operand = False
            elif tok.kind == "op" and tok.text in _BINARY:
                self.next()
                prec, left = _BINARY[tok.text]
                while ops and ops[-1][0] != "(":
                    top = _NEG_PRECEDENCE if ops[-1][0] == "neg" else _BINARY[ops[-1][1]][0]
                    if top < prec or (top == prec and not left):
                        break
                    out.append(ops.pop())
                ops.append(("bin", tok.text))
                operand = True
            elif tok.kind == "op" and tok.text == ")" and open_parens:
                self.next()
                while ops[-1][0] != "(":
                    out.append(ops.pop())
                fn = ops.pop()[1]
                if fn is not None:
                    out.append(("fn", fn))
                open_parens -= 1
            else:
                break
        for item in reversed(ops):
            if item[0] == "(":
                raise ValueError(f"OpenQASM line {tok.line}: expected ')' to close the '(' of line {item[2]}, "
                                 f"found {_shown(tok)}")
            out.append(item)
        if not any(item[0] == "var" for item in out):
            out = [("num", _evaluate(tuple(out), (), first.line))]
        return tuple(out)

    # -- statements
    def parse(self) -> None:
        if self.peek().text == "OPENQASM":
            tok = self.next()
            version = self.next()
            if version.kind not in ("real", "int") or version.text not in ("2.0", "2"):
                raise ValueError(f"OpenQASM line {tok.line}: version {version.text[:20] or 'end of file'} is not "
                                 "supported (2.0 only)")
            self.expect(";")
        while self.peek().kind != "eof":
            self.statement()

    def unsupported(self, tok: _Tok, why: str):
        raise ValueError(f"unsupported OpenQASM instruction {tok.text!r} (line {tok.line}): {why}")

    def statement(self):
        tok = self.peek()
        word = tok.text if tok.kind == "id" else None
        if word == "include":
            self.include()
        elif word in ("qreg", "creg"):
            self.register()
        elif word == "gate":
            self.gate_definition()
        elif word == "opaque":
            self.unsupported(tok, "an opaque gate has no definition to simulate")
        elif word == "reset":
            self.reset()
        elif word == "if":
            self.if_statement()
        elif word == "measure":
            self.measure()
        elif word == "barrier":
            self.next()
            for arg in self.arguments():
                self.register_size(arg, tok.line)
            self.expect(";")
        elif word is not None and word != "OPENQASM":
            self.top_level_call()
        else:
            raise ValueError(f"OpenQASM line {tok.line}: unexpected {_shown(tok)}")

    def include(self):
        tok = self.next()
        name = self.next()
        if name.kind != "str" or name.text != '"qelib1.inc"':
            raise ValueError(f"OpenQASM line {tok.line}: only \"qelib1.inc\" can be included, got {_shown(name)}")
        self.expect(";")
        clash = sorted(set(self.defined) & _QELIB1)  # _QELIB1: the paper's qelib1.inc (see the exporter)
        if clash:
            raise ValueError(f"OpenQASM line {tok.line}: gate {clash[0]!r} (line {self.defined[clash[0]]}) is "
                             "already defined by qelib1.inc")
        self.qelib1_included = True

    def register(self):
        tok = self.next()
        name = self.new_name("a register").text
        self.expect("[")
        size = self.integer()
        self.expect("]")
        self.expect(";")
        if name in self.qregs or name in self.cregs:
            raise ValueError(f"OpenQASM line {tok.line}: register {name!r} declared twice")
        if tok.text == "qreg":
            if size < 1:
                raise ValueError(f"OpenQASM line {tok.line}: qreg {name} has size {size}")
            if self.n_qubits + size > self.max_qubits:
                raise ValueError(f"OpenQASM line {tok.line}: qreg {name}[{size}] makes {self.n_qubits + size} "
                                 f"qubits, more than qlam_tn.qasm.MAX_QUBITS = {self.max_qubits}; raise it to "
                                 "read larger programs")
            self.qregs[name] = (self.n_qubits, size)
            self.n_qubits += size
        else:
            if self.n_clbits + size > self.max_qubits:
                raise ValueError(f"OpenQASM line {tok.line}: creg {name}[{size}] makes {self.n_clbits + size} "
                                 f"classical bits, more than qlam_tn.qasm.MAX_QUBITS = {self.max_qubits}; raise it "
                                 "to read larger programs")
            self.cregs[name] = size
            self.creg_offsets[name] = self.n_clbits  # looked up per measure: kept, not summed again
            self.n_clbits += size

    def register_size(self, arg: _Arg, line: int, classical: bool = False) -> int:
        """Check ``arg`` against the declared registers; 1 for one qubit, the size for a register."""
        regs = self.cregs if classical else self.qregs
        if arg.reg not in regs:
            other = self.qregs if classical else self.cregs
            what = ("a quantum register" if classical else "a classical register") if arg.reg in other \
                else "undeclared"
            kind = "bit" if classical else "qubit"
            raise ValueError(f"OpenQASM line {line}: {kind} register {arg.reg!r} is {what}")
        size = regs[arg.reg] if classical else regs[arg.reg][1]
        if arg.index is None:
            return size
        if not 0 <= arg.index < size:
            raise ValueError(f"OpenQASM line {line}: index {arg.index} out of range for "
                             f"{'creg' if classical else 'qreg'} {arg.reg}[{size}]")
        return 1

    def measure(self):
        tok = self.next()
        args = self.arguments()
        self.expect("->")
        bits = self.arguments()
        self.expect(";")
        if len(args) != 1 or len(bits) != 1:
            raise ValueError(f"OpenQASM line {tok.line}: measure takes one qubit and one bit (or registers)")
        n_qubits = self.register_size(args[0], tok.line)
        n_bits = self.register_size(bits[0], tok.line, classical=True)
        offset = self.qregs[args[0].reg][0]
        first = offset + (args[0].index or 0)
        if self.drop_final:
            # Kept as before: the measurements are dropped, and a gate after one is refused.
            if self.condition is not None:
                self.unsupported(tok, "a conditioned measurement is mid-circuit; read the file without "
                                      "drop_final_measurements=True and run it with shots=")
            self.spend(0, n_qubits, tok.line)
            for q in range(first, first + n_qubits):
                self.measured[q] = tok.line
            return
        if (args[0].index is None) != (bits[0].index is None) or n_qubits != n_bits:
            raise ValueError(f"OpenQASM line {tok.line}: 'measure' needs a qubit and a bit, or registers of one size "
                             f"(got {n_qubits} qubit(s) and {n_bits} bit(s))")
        self.spend(n_qubits, n_qubits, tok.line)
        bit0 = self.creg_offset(bits[0].reg) + (bits[0].index or 0)
        for k in range(n_qubits):
            self.flat.append(("measure", [bit0 + k], [first + k], tok.line, self.condition))

    def creg_offset(self, name: str) -> int:
        """The index of ``name[0]`` among all classical bits (cregs in declaration order)."""
        return self.creg_offsets[name]

    def reset(self):
        tok = self.next()
        args = self.arguments()
        self.expect(";")
        if len(args) != 1:
            raise ValueError(f"OpenQASM line {tok.line}: reset takes one qubit or register")
        if self.drop_final:
            self.unsupported(tok, "reset is not unitary: read the file without drop_final_measurements=True "
                                  "and run it with shots=")
        n_qubits = self.register_size(args[0], tok.line)
        self.spend(n_qubits, n_qubits, tok.line)
        first = self.qregs[args[0].reg][0] + (args[0].index or 0)
        for q in range(first, first + n_qubits):
            self.builtin("reset", [], [q], tok.line)

    def if_statement(self):
        """``if (creg == value) <gate call | measure | reset>;`` (OpenQASM 2 compares a whole creg)."""
        tok = self.next()
        if self.drop_final:
            self.unsupported(tok, "classical control reads measurements, which drop_final_measurements=True drops")
        self.expect("(")
        reg = self.ident()
        if reg.text not in self.cregs:
            what = "a quantum register" if reg.text in self.qregs else "undeclared"
            raise ValueError(f"OpenQASM line {tok.line}: if needs a classical register, {reg.text!r} is {what}")
        self.expect("==")
        value = self.integer()
        self.expect(")")
        if value >= 2 ** self.cregs[reg.text]:
            raise ValueError(f"OpenQASM line {tok.line}: value {value} does not fit in creg "
                             f"{reg.text}[{self.cregs[reg.text]}]")
        body = self.peek()
        word = body.text if body.kind == "id" else None
        if word in ("if", "gate", "opaque", "qreg", "creg", "include", "barrier", "OPENQASM", None):
            raise ValueError(f"OpenQASM line {body.line}: if must be followed by a gate call, measure or reset, "
                             f"found {_shown(body)}")
        self.condition = (reg.text, value)
        try:
            self.statement()
        finally:
            self.condition = None

    def arguments(self) -> Tuple[_Arg, ...]:
        args = []
        while True:
            name = self.ident().text
            index = None
            if self.peek().text == "[":
                self.next()
                index = self.integer()
                self.expect("]")
            args.append(_Arg(name, index))
            if self.peek().text != ",":
                return tuple(args)
            self.next()

    def call(self, params: Dict[str, int]) -> _Call:
        tok = self.ident()
        exprs: Tuple[tuple, ...] = ()
        if self.peek().text == "(":
            self.next()
            ps = []
            if self.peek().text != ")":
                ps.append(self.expr(params))
                while self.peek().text == ",":
                    self.next()
                    ps.append(self.expr(params))
            self.expect(")")
            exprs = tuple(ps)
        args = self.arguments()
        self.expect(";")
        return _Call(tok.text, exprs, args, tok.line)

    def target(self, call: _Call) -> Tuple[Optional[_GateDef], int, int]:
        """The definition ``call`` means (None: built-in) and its (parameter, qubit) counts."""
        definition = self.gates.get(call.name)
        if definition is not None:
            return definition, len(definition.params), len(definition.qubits)
        if call.name in _UNSUPPORTED_QELIB:
            raise ValueError(f"unsupported OpenQASM instruction {call.name!r} (line {call.line}): this qelib1.inc "
                             "gate acts on more than 2 qubits and is not supported")
        if call.name not in _ARITY:
            raise ValueError(f"OpenQASM line {call.line}: unknown gate {call.name!r}")
        return (None, *_ARITY[call.name])

    @staticmethod
    def check_arity(call: _Call, n_params: int, n_qubits: int):
        if len(call.params) != n_params or len(call.args) != n_qubits:
            raise ValueError(f"OpenQASM line {call.line}: gate {call.name!r} takes {n_params} parameter(s) and "
                             f"{n_qubits} qubit(s), got {len(call.params)} and {len(call.args)}")

    def gate_definition(self):
        gate_tok = self.next()
        name_tok = self.new_name("a gate")
        name, line = name_tok.text, name_tok.line
        if name in ("U", "CX"):
            raise ValueError(f"OpenQASM line {line}: {name} is built into OpenQASM and cannot be defined")
        if name in self.defined:
            raise ValueError(f"OpenQASM line {line}: gate {name!r} is already defined on line {self.defined[name]}")
        if self.qelib1_included and name in _QELIB1:
            raise ValueError(f"OpenQASM line {line}: gate {name!r} is already defined by qelib1.inc")
        # Names -> positions (dicts, not lists: membership and position in constant time).
        params: Dict[str, int] = {}
        if self.peek().text == "(":
            self.next()
            while self.peek().text != ")":
                if params:
                    self.expect(",")
                new = self.new_name("a gate parameter").text
                if new in params:
                    raise ValueError(f"OpenQASM line {line}: gate {name!r} repeats the parameter {new!r}")
                params[new] = len(params)
            self.expect(")")
        qubits: Dict[str, int] = {}
        for arg in self.arguments():
            if arg.index is not None:
                raise ValueError(f"OpenQASM line {line}: the qubit argument {arg.reg!r} of gate {name!r} "
                                 "cannot be indexed")
            if arg.reg in qubits:
                raise ValueError(f"OpenQASM line {line}: gate {name!r} repeats the qubit argument {arg.reg!r}")
            if arg.reg in params:
                raise ValueError(f"OpenQASM line {line}: gate {name!r} uses {arg.reg!r} both as a parameter and "
                                 "as a qubit")
            qubits[arg.reg] = len(qubits)
        self.expect("{")
        body: List[_BodyCall] = []
        operations, steps = 0, 1  # steps: the call itself, then its body
        while not (self.peek().kind == "op" and self.peek().text == "}"):
            tok = self.peek()
            if tok.kind == "eof":
                raise ValueError(f"OpenQASM line {tok.line}: expected '}}' to close gate {name!r} of line {line}")
            if tok.text == "barrier" and tok.kind == "id":
                self.next()
                for arg in self.arguments():
                    if arg.index is not None or arg.reg not in qubits:
                        raise ValueError(f"OpenQASM line {tok.line}: gate {name!r} uses unknown qubit {arg.reg!r}")
                self.expect(";")
                continue
            if tok.kind != "id" or tok.text in _KEYWORDS:
                raise ValueError(f"OpenQASM line {tok.line}: {tok.text!r} is not allowed in the body of gate "
                                 f"{name!r}")
            call = self.call(params)
            for a in call.args:
                if a.index is not None or a.reg not in qubits:
                    raise ValueError(f"OpenQASM line {call.line}: gate {name!r} uses unknown qubit {a.reg!r}")
            if len({a.reg for a in call.args}) != len(call.args):
                raise ValueError(f"OpenQASM line {call.line}: {call.name!r} in gate {name!r} repeats a qubit")
            if call.name not in self.gates and call.name not in _ARITY and call.name not in _UNSUPPORTED_QELIB:
                raise ValueError(f"OpenQASM line {call.line}: gate {name!r} calls undefined gate {call.name!r}")
            target, n_params, n_qubits = self.target(call)
            self.check_arity(call, n_params, n_qubits)
            body.append(_BodyCall(call.name, target, call.params, tuple(qubits[a.reg] for a in call.args),
                                  call.line))
            terms = sum(len(p) for p in call.params)
            operations += 1 if target is None else target.operations
            steps += terms + (1 if target is None else target.steps)
        self.expect("}")
        self.defined[name] = gate_tok.line
        if _ARITY.get(name) == (len(params), len(qubits)):
            # A definition of a gate we know (exporters write them for the gates outside the
            # paper's qelib1.inc) is taken to be that gate, as Qiskit's from_qasm_str does.
            return
        # The counts are only compared with the limits: saturate them, since a doubling chain
        # would grow them to thousands of digits.
        self.gates[name] = _GateDef(tuple(params), tuple(qubits), tuple(body),
                                    min(operations, self.max_operations + 1), min(steps, self.max_steps + 1))

    # -- expansion
    def spend(self, operations: int, steps: int, line: int):
        """Count ``operations`` gates and ``steps`` steps about to be done, refusing past a limit."""
        if len(self.flat) + operations > self.max_operations:
            raise ValueError(f"OpenQASM line {line}: the program expands to more than {self.max_operations:,} "
                             "gates (gate definitions and register broadcasts expanded); raise "
                             "qlam_tn.qasm.MAX_OPERATIONS to read it")
        if self.steps + steps > self.max_steps:
            raise ValueError(f"OpenQASM line {line}: expanding the program takes more than {self.max_steps:,} steps "
                             "(gate calls through definitions, expression terms, broadcast measurements); raise "
                             "qlam_tn.qasm.MAX_EXPANSION_STEPS to read it")
        self.steps += steps

    def top_level_call(self):
        call = self.call({})
        target, n_params, n_qubits = self.target(call)
        self.check_arity(call, n_params, n_qubits)
        values = [_evaluate(e, (), call.line) for e in call.params]
        sizes = [self.register_size(a, call.line) for a in call.args]
        broadcast = {s for a, s in zip(call.args, sizes) if a.index is None}
        if len(broadcast) > 1:
            raise ValueError(f"OpenQASM line {call.line}: registers of different sizes in {call.name!r}: "
                             f"{sorted(broadcast)}")
        reps = broadcast.pop() if broadcast else 1
        per_call = (1, 1) if target is None else (target.operations, target.steps)
        self.spend(reps * per_call[0], reps * per_call[1] + sum(len(p) for p in call.params), call.line)
        starts = [self.qregs[a.reg][0] + (a.index or 0) for a in call.args]
        for k in range(reps):
            qubits = [s + (k if a.index is None else 0) for a, s in zip(call.args, starts)]
            if len(set(qubits)) != len(qubits):
                raise ValueError(f"OpenQASM line {call.line}: gate {call.name!r} repeats a qubit: {qubits}")
            if target is None:
                self.builtin(call.name, values, qubits, call.line)
            elif target.body:
                self.expand(target, values, qubits, call.line)

    def expand(self, definition: _GateDef, values: List[float], qubits: List[int], line: int):
        """Append the gates of one call of ``definition``, walking nested calls with an explicit stack."""
        stack = [(iter(definition.body), values, qubits)]  # (rest of a body, its parameters, its qubits)
        while stack:
            rest, env, qs = stack[-1]
            item = next(rest, None)
            if item is None:
                stack.pop()
                continue
            if item.params:
                try:
                    vals = [_evaluate(e, env, item.line) for e in item.params]
                except ValueError as exc:
                    raise ValueError(f"{exc} (in the call on line {line})") from None
            else:
                vals = []
            sub = [qs[i] for i in item.qubits]
            if item.target is None:
                self.builtin(item.name, vals, sub, item.line)
            elif item.target.body:
                stack.append((iter(item.target.body), vals, sub))

    def builtin(self, name: str, params: List[float], qubits: List[int], line: int):
        for q in qubits:
            if q in self.measured:
                raise ValueError(f"unsupported OpenQASM instruction 'measure' (line {self.measured[q]}): "
                                 f"qubit {q} is measured mid-circuit (gate {name!r} on line {line} follows); "
                                 f"read the file without drop_final_measurements=True and run it with shots=")
        self.flat.append((name, params, qubits, line, self.condition))

    def build(self) -> Circuit:
        self.parse()
        if not self.qregs:
            raise ValueError(f"OpenQASM: no qreg declared (the program ends on line {self.peek().line})")
        c = Circuit(self.n_qubits)
        for reg, size in self.cregs.items():
            if size:  # a creg of no bits holds nothing (and writes as an empty word in counts)
                c.add_creg(reg, size)
        for name, params, qubits, line, condition in self.flat:
            try:
                with contextlib.ExitStack() as block:
                    if condition is not None:  # every op the built-in appends (cu: two)
                        reg, value = condition  # as the register's clbits: no lookup by name per op
                        bits = tuple(range(self.creg_offsets[reg], self.creg_offsets[reg] + self.cregs[reg]))
                        block.enter_context(c.conditioned(bits, value))
                    if name == "measure":
                        c.measure(qubits[0], params[0])
                    elif name == "reset":
                        c.reset(qubits[0])
                    else:
                        _apply_builtin(c, name, params, qubits)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"OpenQASM line {line}: {exc}") from None
        return c


def from_qasm(text: str, drop_final_measurements: bool = False) -> Circuit:
    """Parse OpenQASM 2.0 ``text`` into a ``Circuit`` (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"from_qasm needs the program text as a str, got {type(text).__name__}")
    # The reader makes no reference cycles, but keeps many objects alive while it expands (a
    # deep stack, the flat gate list): the cyclic collector's full passes over the whole heap
    # would then dominate the time the limits allow, so it is paused until the circuit is built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Parser(text, drop_final_measurements).build()
    finally:
        if collecting:
            gc.enable()


# ---------------------------------------------------------------------------- export

# The gates of the OpenQASM 2.0 paper's qelib1.inc (what Qiskit's qasm2.loads knows); every
# other gate is written with an exact definition (same matrix, global phase included).
_QELIB1 = {"u3", "u2", "u1", "id", "x", "y", "z", "h", "s", "sdg", "t", "tdg", "rx", "ry", "rz",
           "cx", "cy", "cz", "ch", "crz", "cu1", "cu3", "ccx"}
_DEFINITIONS = {
    "sx": "gate sx a { h a; s a; h a; }",
    "sxdg": "gate sxdg a { h a; sdg a; h a; }",
    "swap": "gate swap a,b { cx a,b; cx b,a; cx a,b; }",
    "iswap": "gate iswap a,b { s a; s b; h a; cx a,b; cx b,a; h b; }",
    "crx": "gate crx(theta) a,b { h b; crz(theta) a,b; h b; }",
    "cry": "gate cry(theta) a,b { ry(theta/2) b; cx a,b; ry(-theta/2) b; cx a,b; }",
    "rxx": "gate rxx(theta) a,b { h a; h b; cx a,b; rz(theta) b; cx a,b; h a; h b; }",
    "ryy": "gate ryy(theta) a,b { rx(pi/2) a; rx(pi/2) b; cx a,b; rz(theta) b; cx a,b; "
           "rx(-pi/2) a; rx(-pi/2) b; }",
    "rzz": "gate rzz(theta) a,b { cx a,b; rz(theta) b; cx a,b; }",
}
_QASM_NAME = {"p": "u1", "cp": "cu1"}


def _number(value) -> str:
    return repr(float(value))


def to_qasm(circuit: Circuit) -> str:
    """OpenQASM 2.0 text for ``circuit`` (see the module docstring for what is dropped)."""
    from .circuit import zyz_angles

    if circuit.batch is not None and circuit.batch > 1:
        raise ValueError(f"to_qasm: the circuit has per-sample parameters (batch {circuit.batch}); "
                         "OpenQASM holds one value per parameter")
    lines, used = [], set()
    bit_names, registers, start = [], {}, 0
    for reg, size in circuit.cregs:
        # A creg shares one namespace with the gates and keywords, and an identifier starts lower case.
        if reg in _KEYWORDS or reg in _ARITY or reg in _UNSUPPORTED_QELIB or not _IDENTIFIER.fullmatch(reg):
            raise ValueError(f"to_qasm: creg {reg!r} cannot be declared in OpenQASM 2 (a keyword, a gate of "
                             "qelib1.inc, or not an identifier starting with a lower-case letter): rename it")
        bit_names += [f"{reg}[{j}]" for j in range(size)]
        registers[tuple(range(start, start + size))] = reg
        start += size
    qreg = "q"
    while any(qreg == reg for reg, _ in circuit.cregs):  # the one qreg takes a name no creg has
        qreg += "_"
    for k, op in enumerate(circuit):
        qs = ",".join(f"{qreg}[{q}]" for q in op.qubits)
        prefix = ""
        if op.condition is not None:
            bits, value = op.condition
            if bits not in registers:
                raise ValueError(f"to_qasm: op {k} ({op.name}) is conditioned on clbits {bits}, not on one whole "
                                 "register, which OpenQASM 2's if cannot express")
            prefix = f"if({registers[bits]}=={value}) "
        if op.name in ("measure", "reset"):
            tail = f" -> {bit_names[op.params[0]]}" if op.name == "measure" else ""
            lines.append(f"{prefix}{op.name} {qs}{tail};")
            continue
        if op.name == "unitary":
            m = op.params[0]
            if len(op.qubits) != 1:
                raise ValueError(f"to_qasm: op {k} is a 2-qubit unitary, which OpenQASM 2 cannot express; "
                                 "decompose it into named gates first")
            theta, phi, lam, _ = zyz_angles(m.reshape(2, 2))
            lines.append(f"{prefix}u3({_number(theta)},{_number(phi)},{_number(lam)}) {qs};")
            continue
        values = [float(p.detach().reshape(())) if hasattr(p, "detach") else p for p in op.params]
        name = _QASM_NAME.get(op.name, op.name)
        if name not in _QELIB1:
            used.add(name)
        args = "(" + ",".join(_number(v) for v in values) + ")" if values else ""
        lines.append(f"{prefix}{name}{args} {qs};")
    head = ['OPENQASM 2.0;', 'include "qelib1.inc";']
    head += [_DEFINITIONS[g] for g in sorted(used)]
    head.append(f"qreg {qreg}[{circuit.n_qubits}];")
    head += [f"creg {reg}[{size}];" for reg, size in circuit.cregs]
    return "\n".join(head + lines) + "\n"
