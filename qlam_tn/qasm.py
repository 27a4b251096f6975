"""OpenQASM 2.0 in and out of ``Circuit``.

``from_qasm(text)`` reads the language of the OpenQASM 2.0 paper with ``qelib1.inc``:

* ``qreg`` declarations (several allowed: flattened in declaration order, so with
  ``qreg a[2]; qreg b[3];`` the qubit ``b[0]`` is qubit 2); ``creg`` and ``barrier`` are read
  and ignored;
* the gates of ``qelib1.inc`` as Qiskit ships it (``U``, ``CX``, ``u3 u2 u1 u0 u p id x y z h s
  sdg t tdg sx sxdg rx ry rz cx cy cz ch swap crx cry crz cu1 cp cu3 cu csx rxx rzz ccx
  cswap``), plus ``ryy`` and ``iswap``, with or without a ``gate`` definition in the file;
* other ``gate`` definitions (expanded inline, may call earlier definitions);
* register broadcasting (``h q;``, ``cx a, b;`` over equal-size registers);
* parameter expressions: numbers, ``pi``, ``+ - * / ^``, parentheses and the functions
  ``sin cos tan exp ln sqrt``, evaluated by a small recursive-descent parser (no ``eval``).

Instructions that a pure-state simulator cannot run raise ``ValueError`` naming the
instruction and its line: ``measure`` (unless ``drop_final_measurements=True`` and no gate
follows it on the measured qubit), ``reset``, ``if`` (classical control), ``opaque``, and the
multi-controlled gates of qelib1.inc without a 2-qubit form (``rccx rc3x c3x c3sqrtx c4x``).

``to_qasm(circuit)`` writes ``OPENQASM 2.0; include "qelib1.inc";``, one ``qreg q[n]``, and
one line per op. Only the 23 gates of the paper's qelib1.inc are assumed known (as by
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

import math
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .circuit import Circuit

__all__ = ["from_qasm", "to_qasm"]

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


# ---------------------------------------------------------------------------- expressions
# An expression is a tuple tree: ("num", v), ("var", name), ("neg", e), ("bin", op, a, b),
# ("fn", name, e); it is evaluated against the formal parameters of the enclosing gate.

_FUNCS: Dict[str, Callable[[float], float]] = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp, "ln": math.log, "sqrt": math.sqrt,
}


def _evaluate(expr, env: Dict[str, float], line: int) -> float:
    kind = expr[0]
    if kind == "num":
        return expr[1]
    if kind == "var":
        if expr[1] not in env:
            raise ValueError(f"OpenQASM line {line}: unknown parameter {expr[1]!r}")
        return env[expr[1]]
    if kind == "neg":
        return -_evaluate(expr[1], env, line)
    if kind == "fn":
        try:
            return _FUNCS[expr[1]](_evaluate(expr[2], env, line))
        except ValueError:
            raise ValueError(f"OpenQASM line {line}: {expr[1]} of an invalid argument") from None
    a, b = _evaluate(expr[2], env, line), _evaluate(expr[3], env, line)
    op = expr[1]
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            raise ValueError(f"OpenQASM line {line}: division by zero")
        return a / b
    return a ** b


class _Arg(NamedTuple):
    reg: str
    index: Optional[int]  # None: the whole register (broadcast)


class _Call(NamedTuple):
    name: str
    params: Tuple[tuple, ...]
    args: Tuple[_Arg, ...]
    line: int


class _GateDef(NamedTuple):
    params: Tuple[str, ...]
    qubits: Tuple[str, ...]
    # Each call with the definition it meant when it was written (None: a built-in gate), so a
    # later redefinition cannot change it or make a gate call itself.
    body: Tuple[Tuple[_Call, Optional["_GateDef"]], ...]


_UNSUPPORTED_QELIB = {"rccx", "rc3x", "c3x", "c3sqrtx", "c4x"}


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
        self.toks = _tokenize(text)
        self.pos = 0
        self.drop_final = drop_final_measurements
        self.qregs: Dict[str, Tuple[int, int]] = {}  # name -> (offset, size)
        self.cregs: Dict[str, int] = {}
        self.gates: Dict[str, _GateDef] = {}
        self.measured: Dict[int, int] = {}  # qubit -> line of its measurement
        # Built-in gates in program order, (name, params, qubits, line): the qubit count is
        # only known at the end, since a qreg may be declared after the first gates.
        self.flat: List[Tuple[str, List[float], List[int], int]] = []

    # -- token helpers
    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def next(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def expect(self, text: str) -> _Tok:
        tok = self.next()
        if tok.text != text:
            found = tok.text or "end of file"
            raise ValueError(f"OpenQASM line {tok.line}: expected {text!r}, found {found!r}")
        return tok

    def ident(self) -> _Tok:
        tok = self.next()
        if tok.kind != "id":
            raise ValueError(f"OpenQASM line {tok.line}: expected a name, found {tok.text or 'end of file'!r}")
        return tok

    def integer(self) -> int:
        tok = self.next()
        if tok.kind != "int":
            raise ValueError(f"OpenQASM line {tok.line}: expected an integer, found {tok.text!r}")
        return int(tok.text)

    # -- expressions
    def expr(self):
        node = self.term()
        while self.peek().text in ("+", "-"):
            op = self.next().text
            node = ("bin", op, node, self.term())
        return node

    def term(self):
        node = self.factor()
        while self.peek().text in ("*", "/"):
            op = self.next().text
            node = ("bin", op, node, self.factor())
        return node

    def factor(self):
        if self.peek().text in ("-", "+"):
            sign = self.next().text
            inner = self.factor()
            return ("neg", inner) if sign == "-" else inner
        base = self.atom()
        if self.peek().text == "^":
            self.next()
            return ("bin", "^", base, self.factor())
        return base

    def atom(self):
        tok = self.next()
        if tok.kind in ("real", "int"):
            return ("num", float(tok.text))
        if tok.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if tok.kind == "id":
            if tok.text == "pi":
                return ("num", math.pi)
            if tok.text in _FUNCS:
                self.expect("(")
                node = self.expr()
                self.expect(")")
                return ("fn", tok.text, node)
            return ("var", tok.text)
        raise ValueError(f"OpenQASM line {tok.line}: unexpected {tok.text or 'end of file'!r} in an expression")

    # -- statements
    def parse(self) -> None:
        if self.peek().text == "OPENQASM":
            tok = self.next()
            version = self.next()
            if version.text not in ("2.0", "2"):
                raise ValueError(f"OpenQASM line {tok.line}: version {version.text} is not supported (2.0 only)")
            self.expect(";")
        while self.peek().kind != "eof":
            self.statement()

    def unsupported(self, tok: _Tok, why: str):
        raise ValueError(f"unsupported OpenQASM instruction {tok.text!r} (line {tok.line}): {why}")

    def statement(self):
        tok = self.peek()
        word = tok.text
        if word == "include":
            self.next()
            name = self.next()
            if name.kind != "str" or name.text != '"qelib1.inc"':
                raise ValueError(f"OpenQASM line {tok.line}: only \"qelib1.inc\" can be included, got {name.text}")
            self.expect(";")
        elif word in ("qreg", "creg"):
            self.next()
            name = self.ident().text
            self.expect("[")
            size = self.integer()
            self.expect("]")
            self.expect(";")
            if name in self.qregs or name in self.cregs:
                raise ValueError(f"OpenQASM line {tok.line}: register {name!r} declared twice")
            if word == "qreg":
                if size < 1:
                    raise ValueError(f"OpenQASM line {tok.line}: qreg {name} has size {size}")
                offset = sum(s for _, s in self.qregs.values())
                self.qregs[name] = (offset, size)
            else:
                self.cregs[name] = size
        elif word == "gate":
            self.gate_definition()
        elif word == "opaque":
            self.unsupported(tok, "an opaque gate has no definition to simulate")
        elif word == "reset":
            self.unsupported(tok, "reset is not unitary; a pure-state simulator cannot apply it")
        elif word == "if":
            self.unsupported(tok, "classical control needs mid-circuit measurement")
        elif word == "measure":
            self.measure()
        elif word == "barrier":
            self.next()
            self.arguments(allow_registers=True)
            self.expect(";")
        elif tok.kind == "id":
            self.expand_top(self.call(in_definition=False))
        else:
            raise ValueError(f"OpenQASM line {tok.line}: unexpected {word or 'end of file'!r}")

    def measure(self):
        tok = self.next()
        args = self.arguments(allow_registers=True)
        self.expect("->")
        bits = self.arguments(allow_registers=True)
        self.expect(";")
        if len(args) != 1 or len(bits) != 1:
            raise ValueError(f"OpenQASM line {tok.line}: measure takes one qubit and one bit (or registers)")
        if bits[0].reg not in self.cregs:
            raise ValueError(f"OpenQASM line {tok.line}: {bits[0].reg!r} is not a declared creg")
        if not self.drop_final:
            self.unsupported(tok, "measurement is not supported (pass drop_final_measurements=True "
                                  "to drop measurements at the end of the circuit)")
        for q in self.resolve(args[0], tok.line):
            self.measured[q] = tok.line

    def arguments(self, allow_registers: bool) -> Tuple[_Arg, ...]:
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

    def call(self, in_definition: bool) -> _Call:
        tok = self.ident()
        params: Tuple[tuple, ...] = ()
        if self.peek().text == "(":
            self.next()
            ps = []
            if self.peek().text != ")":
                ps.append(self.expr())
                while self.peek().text == ",":
                    self.next()
                    ps.append(self.expr())
            self.expect(")")
            params = tuple(ps)
        args = self.arguments(allow_registers=not in_definition)
        self.expect(";")
        return _Call(tok.text, params, args, tok.line)

    def gate_definition(self):
        self.next()
        name_tok = self.ident()
        name = name_tok.text
        params: Tuple[str, ...] = ()
        if self.peek().text == "(":
            self.next()
            ps = []
            if self.peek().text != ")":
                ps.append(self.ident().text)
                while self.peek().text == ",":
                    self.next()
                    ps.append(self.ident().text)
            self.expect(")")
            params = tuple(ps)
        qubits = tuple(a.reg for a in self.arguments(allow_registers=False))
        self.expect("{")
        body = []
        while self.peek().text != "}":
            tok = self.peek()
            if tok.text == "barrier":
                self.next()
                self.arguments(allow_registers=False)
                self.expect(";")
                continue
            if tok.kind != "id" or tok.text in ("measure", "reset", "if", "opaque", "gate", "qreg", "creg"):
                raise ValueError(f"OpenQASM line {tok.line}: {tok.text!r} is not allowed in the body of gate {name!r}")
            call = self.call(in_definition=True)
            for a in call.args:
                if a.index is not None or a.reg not in qubits:
                    raise ValueError(f"OpenQASM line {call.line}: gate {name!r} uses unknown qubit {a.reg!r}")
            if call.name not in self.gates and call.name not in _ARITY:
                if call.name in _UNSUPPORTED_QELIB:
                    self.unsupported(tok, "this qelib1.inc gate acts on more than 2 qubits and is not supported")
                raise ValueError(f"OpenQASM line {call.line}: gate {name!r} calls undefined gate {call.name!r}")
            body.append((call, self.gates.get(call.name)))
        self.expect("}")
        if _ARITY.get(name) == (len(params), len(qubits)):
            # A definition of a gate we know (exporters write them for the gates outside the
            # paper's qelib1.inc) is taken to be that gate, as Qiskit's from_qasm_str does.
            return
        self.gates[name] = _GateDef(params, qubits, tuple(body))

    # -- expansion
    def resolve(self, arg: _Arg, line: int) -> List[int]:
        if arg.reg not in self.qregs:
            what = "a classical register" if arg.reg in self.cregs else "undeclared"
            raise ValueError(f"OpenQASM line {line}: qubit register {arg.reg!r} is {what}")
        offset, size = self.qregs[arg.reg]
        if arg.index is None:
            return list(range(offset, offset + size))
        if not 0 <= arg.index < size:
            raise ValueError(f"OpenQASM line {line}: index {arg.index} out of range for qreg {arg.reg}[{size}]")
        return [offset + arg.index]

    def emit(self, name: str, definition: Optional[_GateDef], params: List[float], qubits: List[int],
             line: int):
        for q in qubits:
            if q in self.measured:
                raise ValueError(f"unsupported OpenQASM instruction 'measure' (line {self.measured[q]}): "
                                 f"qubit {q} is measured mid-circuit (gate {name!r} on line {line} follows)")
        if len(set(qubits)) != len(qubits):
            raise ValueError(f"OpenQASM line {line}: gate {name!r} repeats a qubit: {qubits}")
        if definition is not None:
            d = definition
            if len(params) != len(d.params) or len(qubits) != len(d.qubits):
                raise ValueError(f"OpenQASM line {line}: gate {name!r} takes {len(d.params)} parameter(s) and "
                                 f"{len(d.qubits)} qubit(s), got {len(params)} and {len(qubits)}")
            env = dict(zip(d.params, params))
            qmap = dict(zip(d.qubits, qubits))
            for call, target in d.body:
                self.emit(call.name, target, [_evaluate(e, env, call.line) for e in call.params],
                          [qmap[a.reg] for a in call.args], call.line)
            return
        if name in _UNSUPPORTED_QELIB:
            raise ValueError(f"unsupported OpenQASM instruction {name!r} (line {line}): this qelib1.inc gate "
                             f"acts on more than 2 qubits and is not supported")
        if name not in _ARITY:
            raise ValueError(f"OpenQASM line {line}: unknown gate {name!r}")
        n_params, n_qubits = _ARITY[name]
        if len(params) != n_params or len(qubits) != n_qubits:
            raise ValueError(f"OpenQASM line {line}: gate {name!r} takes {n_params} parameter(s) and "
                             f"{n_qubits} qubit(s), got {len(params)} and {len(qubits)}")
        self.flat.append((name, params, qubits, line))

    def build(self) -> Circuit:
        self.parse()
        if not self.qregs:
            raise ValueError("OpenQASM: no qreg declared")
        c = Circuit(sum(s for _, s in self.qregs.values()))
        for name, params, qubits, line in self.flat:
            try:
                _apply_builtin(c, name, params, qubits)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"OpenQASM line {line}: {exc}") from None
        return c

    def expand_top(self, call: _Call):
        params = [_evaluate(e, {}, call.line) for e in call.params]
        lists = [self.resolve(a, call.line) for a in call.args]
        sizes = {len(qs) for a, qs in zip(call.args, lists) if a.index is None}
        if len(sizes) > 1:
            raise ValueError(f"OpenQASM line {call.line}: registers of different sizes in {call.name!r}")
        reps = sizes.pop() if sizes else 1
        for k in range(reps):
            qubits = [qs[k] if a.index is None else qs[0] for a, qs in zip(call.args, lists)]
            self.emit(call.name, self.gates.get(call.name), params, qubits, call.line)


def from_qasm(text: str, drop_final_measurements: bool = False) -> Circuit:
    """Parse OpenQASM 2.0 ``text`` into a ``Circuit`` (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"from_qasm needs the program text as a str, got {type(text).__name__}")
    return _Parser(text, drop_final_measurements).build()


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
    for k, op in enumerate(circuit):
        qs = ",".join(f"q[{q}]" for q in op.qubits)
        if op.name == "unitary":
            m = op.params[0]
            if len(op.qubits) != 1:
                raise ValueError(f"to_qasm: op {k} is a 2-qubit unitary, which OpenQASM 2 cannot express; "
                                 "decompose it into named gates first")
            theta, phi, lam, _ = zyz_angles(m.reshape(2, 2))
            lines.append(f"u3({_number(theta)},{_number(phi)},{_number(lam)}) {qs};")
            continue
        values = [float(p.detach().reshape(())) if hasattr(p, "detach") else p for p in op.params]
        name = _QASM_NAME.get(op.name, op.name)
        if name not in _QELIB1:
            used.add(name)
        args = "(" + ",".join(_number(v) for v in values) + ")" if values else ""
        lines.append(f"{name}{args} {qs};")
    head = ['OPENQASM 2.0;', 'include "qelib1.inc";']
    head += [_DEFINITIONS[g] for g in sorted(used)]
    head.append(f"qreg q[{circuit.n_qubits}];")
    return "\n".join(head + lines) + "\n"
