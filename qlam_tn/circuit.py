"""A small circuit IR: ``Circuit`` (an ordered list of named ops) and ``simulate()``.

A ``Circuit`` records what to apply, not how: each op is an ``Operation(name, qubits, params)``
with a canonical lower-case name from ``GATES`` (or ``"unitary"`` with the matrix as its only
parameter). Parameters are Python floats or real torch tensors: a 0-d tensor keeps its autograd
graph, a ``(B,)`` tensor gives one gate per batch element, and every ``(B,)`` parameter of a
circuit must share the same ``B`` (``Circuit.batch``)::

    c = qt.Circuit(3).h(0).cx(0, 2).rx(theta, 1).rzz(0.3, 1, 2)
    psi = qt.simulate(c, backend="mps", max_bond=32)      # the engine's MPS
    psi.expect("Z0 Z2"), psi.discarded_weight, psi.fidelity_estimate

Qubit order is the engine's: big-endian, qubit 0 is the leftmost bit of a basis label. A
two-qubit op on ``(q0, q1)`` has matrix row index ``2*b(q0) + b(q1)``; for controlled gates
``q0`` is the control. Gate matrices follow Qiskit's conventions (``u3`` is Qiskit's
``U(θ, φ, λ)``, ``p`` is ``diag(1, e^{iλ})``, ``rzz(θ) = exp(-iθ/2 Z⊗Z)``, ...).

``ccx`` and ``cswap`` are recorded as their exact qelib1.inc decompositions into 1- and 2-qubit
gates, since the engine applies gates on at most two qubits.

Import and export live in ``qasm.py`` (OpenQASM 2.0) and ``interop.py`` (Qiskit, quimb); the
``Circuit.from_*`` / ``to_*`` methods call them.
"""
from __future__ import annotations

import contextlib
import copy as copy_module

import cmath
import math
from collections import Counter
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from . import gates as G
from .mps import MPS
from .state import as_int
from .statevector import StateVector

__all__ = ["Circuit", "Operation", "ConditionedOperation", "NON_UNITARY", "GATES", "simulate"]


class Operation(NamedTuple):
    """One op: canonical ``name`` (a key of ``GATES``, ``"unitary"``, or one of ``NON_UNITARY``),
    ``qubits``, ``params``.

    ``params`` holds floats or real tensors (``()`` or ``(B,)``); for ``"unitary"`` it holds
    the matrix, ``(d, d)`` or ``(B, d, d)``; for ``"measure"`` the classical bit written,
    ``(clbit,)``; for ``"reset"`` nothing. ``condition`` is ``None`` (see ``ConditionedOperation``).
    """

    name: str
    qubits: Tuple[int, ...]
    params: Tuple[Any, ...]

    @property
    def condition(self) -> None:
        return None


class ConditionedOperation(NamedTuple):
    """An ``Operation`` that runs only in the shots whose classical bits ``clbits`` read ``value``:
    ``condition = (clbits, value)``, ``clbits[0]`` the least significant bit (as OpenQASM's
    ``if (creg == value)`` and Qiskit's ``c_if`` compare a register)."""

    name: str
    qubits: Tuple[int, ...]
    params: Tuple[Any, ...]
    condition: Tuple[Tuple[int, ...], int]


# Ops that are not unitary gates: a circuit holding one (or a classical condition) runs as
# sampled trajectories, ``simulate(..., shots=S)`` (``qlam_tn.trajectories``).
NON_UNITARY = ("measure", "reset")


def _adjoint(m: torch.Tensor) -> torch.Tensor:
    return m.mH.resolve_conj()


@dataclass(frozen=True)
class GateSpec:
    """What a named gate needs: qubit count, parameter names, matrix builder, drawing label."""

    n_qubits: int
    params: Tuple[str, ...]
    build: Callable[..., torch.Tensor]
    label: str
    controlled: bool = False  # drawn as a control dot on the first qubit


def _fixed(fn):
    return lambda device=None: fn(device=device)


def _param1(fn):
    return lambda theta, device=None: fn(theta, device=device)


GATES: Dict[str, GateSpec] = {
    "id": GateSpec(1, (), _fixed(G.I), "I"),
    "h": GateSpec(1, (), _fixed(G.H), "H"),
    "x": GateSpec(1, (), _fixed(G.X), "X"),
    "y": GateSpec(1, (), _fixed(G.Y), "Y"),
    "z": GateSpec(1, (), _fixed(G.Z), "Z"),
    "s": GateSpec(1, (), _fixed(G.S), "S"),
    "sdg": GateSpec(1, (), lambda device=None: _adjoint(G.S(device=device)), "S†"),
    "t": GateSpec(1, (), _fixed(G.T), "T"),
    "tdg": GateSpec(1, (), lambda device=None: _adjoint(G.T(device=device)), "T†"),
    "sx": GateSpec(1, (), _fixed(G.SX), "SX"),
    "sxdg": GateSpec(1, (), lambda device=None: _adjoint(G.SX(device=device)), "SX†"),
    "rx": GateSpec(1, ("theta",), _param1(G.RX), "RX"),
    "ry": GateSpec(1, ("theta",), _param1(G.RY), "RY"),
    "rz": GateSpec(1, ("theta",), _param1(G.RZ), "RZ"),
    "p": GateSpec(1, ("lam",), _param1(G.PHASE), "P"),
    "u3": GateSpec(1, ("theta", "phi", "lam"),
                   lambda t, p, lm, device=None: G.U3(t, p, lm, device=device), "U3"),
    "cx": GateSpec(2, (), _fixed(G.CNOT), "X", controlled=True),
    "cy": GateSpec(2, (), lambda device=None: G.controlled(G.Y(device=device)), "Y", controlled=True),
    "cz": GateSpec(2, (), _fixed(G.CZ), "●", controlled=True),
    "ch": GateSpec(2, (), lambda device=None: G.controlled(G.H(device=device)), "H", controlled=True),
    "swap": GateSpec(2, (), _fixed(G.SWAP), "×"),
    "iswap": GateSpec(2, (), _fixed(G.ISWAP), "iSWAP"),
    "rxx": GateSpec(2, ("theta",), _param1(G.RXX), "RXX"),
    "ryy": GateSpec(2, ("theta",), _param1(G.RYY), "RYY"),
    "rzz": GateSpec(2, ("theta",), _param1(G.RZZ), "RZZ"),
    "crx": GateSpec(2, ("theta",), _param1(G.CRX), "RX", controlled=True),
    "cry": GateSpec(2, ("theta",), _param1(G.CRY), "RY", controlled=True),
    "crz": GateSpec(2, ("theta",), _param1(G.CRZ), "RZ", controlled=True),
    "cp": GateSpec(2, ("lam",), lambda lam, device=None: G.controlled(G.PHASE(lam, device=device)),
                   "P", controlled=True),
    "cu3": GateSpec(2, ("theta", "phi", "lam"),
                    lambda t, p, lm, device=None: G.controlled(G.U3(t, p, lm, device=device)),
                    "U3", controlled=True),
}


def _check_param(value, gate: str):
    """A float, or a real tensor of shape ``()`` / ``(B,)`` kept as is (with its graph)."""
    if isinstance(value, np.ndarray):
        value = torch.as_tensor(value)
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{gate}: parameters must be real, got a complex tensor")
        if value.dim() > 1:
            raise ValueError(f"{gate}: a parameter must be a scalar or a (B,) tensor, got shape "
                             f"{tuple(value.shape)}")
        if not value.is_floating_point():
            value = value.to(torch.float64)
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{gate}: parameter is NaN or infinite")
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{gate}: a parameter must be a float or a real torch tensor, got "
                        f"{type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{gate}: parameter is NaN or infinite")
    return value


def _param_batch(value) -> Optional[int]:
    if isinstance(value, torch.Tensor):
        if value.dim() == 1:
            return value.shape[0]
        if value.dim() == 3:  # a per-sample unitary
            return value.shape[0]
    return None


def _format_param(value) -> str:
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            value = float(value.detach())
        else:
            return f"[{value.shape[0]}]"
    return f"{value:.4g}"


class Circuit:
    """An ordered list of ``Operation`` records on ``n_qubits`` qubits (big-endian).

    Every gate method validates its input, appends one op (``ccx``/``cswap``: their
    decomposition) and returns ``self``, so calls chain. ``global_phase`` (a float, radians)
    multiplies the final state; it is carried to and from Qiskit, and dropped by OpenQASM 2.
    """

    def __init__(self, n_qubits: int, global_phase: float = 0.0, n_clbits: int = 0):
        n = as_int(n_qubits, "n_qubits")
        if n < 1:
            raise ValueError(f"n_qubits must be >= 1, got {n}")
        self.n_qubits = n
        self.global_phase = float(_check_param(global_phase, "global_phase"))
        self._ops: List[Any] = []  # Operation or ConditionedOperation
        self._batch: Optional[int] = None
        # Classical registers (name, size) in declaration order; their bits are numbered on from
        # 0 in that order. ``n_clbits > 0`` declares one register "c".
        self._cregs: List[Tuple[str, int]] = []
        self._creg_bits: Dict[str, Tuple[int, int]] = {}  # name -> (first clbit, size): one lookup per use
        self.n_clbits = 0
        self._group = (0, 0)  # the ops the last gate call appended (a ccx appends 15): what c_if conditions
        if as_int(n_clbits, "n_clbits"):
            self.add_creg("c", n_clbits)

    # ------------------------------------------------------------------ container
    @property
    def operations(self) -> Tuple[Operation, ...]:
        return tuple(self._ops)

    @property
    def batch(self) -> Optional[int]:
        """The ``B`` shared by every ``(B,)`` parameter, or ``None`` when all are scalars."""
        return self._batch

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._ops)

    def __repr__(self) -> str:
        return f"Circuit(n_qubits={self.n_qubits}, ops={len(self)}, depth={self.depth()})"

    def __str__(self) -> str:
        return self.draw()

    def copy(self) -> "Circuit":
        out = copy_module.copy(self)  # every attribute, then containers of its own
        vars(out).update(_ops=list(self._ops), _cregs=list(self._cregs), _creg_bits=dict(self._creg_bits))
        return out

    # ------------------------------------------------------------------ adding ops
    def _qubits(self, qubits: Sequence, n: int, name: str) -> Tuple[int, ...]:
        qs = tuple(as_int(q, f"{name}: qubit") for q in qubits)
        if len(qs) != n:
            raise ValueError(f"{name} acts on {n} qubit(s), got {len(qs)}: {qs}")
        for q in qs:
            if not 0 <= q < self.n_qubits:
                raise ValueError(f"{name}: qubit {q} out of range for {self.n_qubits} qubits")
        if len(set(qs)) != len(qs):
            raise ValueError(f"{name}: repeated qubit in {qs}")
        return qs

    def _merge_batch(self, b: Optional[int], name: str) -> None:
        if b is not None and self._batch is not None and b != self._batch:
            raise ValueError(f"{name}: parameter batch {b} differs from the circuit's batch {self._batch}")

    def append(self, name: str, qubits: Sequence, params: Sequence = ()) -> "Circuit":
        """Append the named gate ``name`` (a key of ``GATES``) on ``qubits`` with ``params``."""
        spec = GATES.get(name)
        if spec is None:
            raise ValueError(f"unknown gate {name!r}; known: {', '.join(sorted(GATES))}, unitary")
        qs = self._qubits(qubits, spec.n_qubits, name)
        params = tuple(params)
        if len(params) != len(spec.params):
            raise ValueError(f"{name} takes {len(spec.params)} parameter(s) {spec.params}, got {len(params)}")
        ps = tuple(_check_param(p, name) for p in params)
        batches = {b for b in map(_param_batch, ps) if b is not None}
        if len(batches) > 1:
            raise ValueError(f"{name}: parameters have different batch sizes {sorted(batches)}")
        b = batches.pop() if batches else None
        self._merge_batch(b, name)
        self._ops.append(Operation(name, qs, ps))
        self._group = (len(self._ops) - 1, len(self._ops))
        self._batch = self._batch if b is None else b
        return self

    def unitary(self, matrix, qubits) -> "Circuit":
        """Append an arbitrary 1- or 2-qubit unitary ``(d, d)`` or per-sample ``(B, d, d)``.

        ``qubits`` is an int or a pair; a 2-qubit matrix's row index is ``2*b(q0) + b(q1)``
        (big-endian: convert Qiskit's ``Operator`` matrices first, see ``interop.py``).
        """
        qs = (qubits,) if not isinstance(qubits, (tuple, list)) else tuple(qubits)
        if len(qs) not in (1, 2):
            raise ValueError(f"unitary acts on 1 or 2 qubits, got {len(qs)}")
        qs = self._qubits(qs, len(qs), "unitary")
        m = torch.as_tensor(matrix)
        if not (m.is_complex() or m.is_floating_point()):
            m = m.to(torch.float64)
        d = 2 ** len(qs)
        if m.dim() not in (2, 3) or m.shape[-2:] != (d, d):
            raise ValueError(f"unitary on {len(qs)} qubit(s) needs shape ({d}, {d}) or (B, {d}, {d}), "
                             f"got {tuple(m.shape)}")
        if not bool(torch.isfinite(m).all()):
            raise ValueError("unitary: matrix contains NaN or infinite entries")
        low = m.dtype in (torch.float32, torch.complex64)
        if not G.is_unitary(m.detach(), atol=1e-5 if low else 1e-10):
            raise ValueError("unitary: matrix is not unitary")
        b = _param_batch(m)
        self._merge_batch(b, "unitary")
        self._ops.append(Operation("unitary", qs, (m,)))
        self._group = (len(self._ops) - 1, len(self._ops))
        self._batch = self._batch if b is None else b
        return self

    # ------------------------------------------------------------------ classical bits and control
    def add_creg(self, name: str, size: int) -> "Circuit":
        """Declare a classical register of ``size`` bits; its bits get the next free indices."""
        size = as_int(size, "creg size")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a register name must be an identifier, got {name!r}")
        if size < 1:
            raise ValueError(f"creg {name} needs at least one bit, got {size}")
        if name in self._creg_bits:
            raise ValueError(f"creg {name!r} declared twice")
        self._creg_bits[name] = (self.n_clbits, size)
        self._cregs.append((name, size))
        self.n_clbits += size
        return self

    @property
    def cregs(self) -> Tuple[Tuple[str, int], ...]:
        """The classical registers ``(name, size)`` in declaration order."""
        return tuple(self._cregs)

    def creg_bits(self, name: str) -> Tuple[int, ...]:
        """The clbit indices of register ``name``, least significant first."""
        if name not in self._creg_bits:
            raise ValueError(f"no classical register {name!r} (declared: {[r for r, _ in self._cregs]})")
        start, size = self._creg_bits[name]
        return tuple(range(start, start + size))

    def _clbit(self, c, what: str) -> int:
        c = as_int(c, what)
        if not 0 <= c < self.n_clbits:
            raise ValueError(f"{what} {c} out of range for {self.n_clbits} classical bits")
        return c

    def measure(self, q, c) -> "Circuit":
        """Measure qubit ``q`` in the Z basis into classical bit ``c`` (outcome 1 for ``|1>``)."""
        qs = self._qubits((q,), 1, "measure")
        self._ops.append(Operation("measure", qs, (self._clbit(c, "measure: clbit"),)))
        self._group = (len(self._ops) - 1, len(self._ops))
        return self

    def reset(self, q) -> "Circuit":
        """Reset qubit ``q`` to ``|0>`` (measure it, flip a 1; the outcome is not recorded)."""
        self._ops.append(Operation("reset", self._qubits((q,), 1, "reset"), ()))
        self._group = (len(self._ops) - 1, len(self._ops))
        return self

    def c_if(self, bits, value) -> "Circuit":
        """Condition the ops of the last call (one gate, or a ccx/cswap's whole decomposition) on
        the classical bits ``bits`` reading ``value``: ``bits`` is a register name (as OpenQASM's
        ``if (c == 3) x q[0];``), one clbit index, or a sequence of clbits (least significant
        first). The op then runs only in the shots where the condition holds."""
        if isinstance(bits, str):
            clbits = self.creg_bits(bits)
        elif isinstance(bits, (tuple, list)):
            clbits = tuple(self._clbit(c, "c_if: clbit") for c in bits)
        else:
            clbits = (self._clbit(bits, "c_if: clbit"),)
        value = as_int(value, "c_if: value")
        if not clbits or len(set(clbits)) != len(clbits):
            raise ValueError(f"c_if needs distinct classical bits, got {clbits}")
        if not 0 <= value < 2 ** len(clbits):
            raise ValueError(f"c_if: value {value} does not fit in {len(clbits)} bit(s)")
        lo, hi = self._group
        if hi == 0 or hi != len(self._ops):
            raise ValueError("c_if conditions the op(s) the last call appended: there are none")
        if any(op.condition is not None for op in self._ops[lo:hi]):
            raise ValueError("c_if: the last op already has a condition")
        for k in range(lo, hi):
            op = self._ops[k]
            self._ops[k] = ConditionedOperation(op.name, op.qubits, op.params, (clbits, value))
        return self

    @contextlib.contextmanager
    def conditioned(self, bits, value):
        """``with c.conditioned("c", 1): ...`` conditions every op appended inside the block, as
        ``c_if`` would each (same ``bits`` and ``value``)."""
        start = len(self._ops)
        yield self
        if len(self._ops) > start:
            self._group = (start, len(self._ops))
            self.c_if(bits, value)

    @property
    def is_unitary(self) -> bool:
        """Whether every op is an unconditioned gate (no measure, reset or classical condition):
        such a circuit runs as one pure state; the others as sampled trajectories."""
        return all(op.name not in NON_UNITARY and op.condition is None for op in self._ops)

    # 1-qubit gates
    def id(self, q): return self.append("id", (q,))
    i = id
    def h(self, q): return self.append("h", (q,))
    def x(self, q): return self.append("x", (q,))
    def y(self, q): return self.append("y", (q,))
    def z(self, q): return self.append("z", (q,))
    def s(self, q): return self.append("s", (q,))
    def sdg(self, q): return self.append("sdg", (q,))
    def t(self, q): return self.append("t", (q,))
    def tdg(self, q): return self.append("tdg", (q,))
    def sx(self, q): return self.append("sx", (q,))
    def sxdg(self, q): return self.append("sxdg", (q,))
    def rx(self, theta, q): return self.append("rx", (q,), (theta,))
    def ry(self, theta, q): return self.append("ry", (q,), (theta,))
    def rz(self, theta, q): return self.append("rz", (q,), (theta,))
    def p(self, lam, q): return self.append("p", (q,), (lam,))
    phase = p
    def u3(self, theta, phi, lam, q): return self.append("u3", (q,), (theta, phi, lam))

    # 2-qubit gates: controlled ones take (control, target)
    def cx(self, c, t): return self.append("cx", (c, t))
    cnot = cx
    def cy(self, c, t): return self.append("cy", (c, t))
    def cz(self, c, t): return self.append("cz", (c, t))
    def ch(self, c, t): return self.append("ch", (c, t))
    def swap(self, q0, q1): return self.append("swap", (q0, q1))
    def iswap(self, q0, q1): return self.append("iswap", (q0, q1))
    def rxx(self, theta, q0, q1): return self.append("rxx", (q0, q1), (theta,))
    def ryy(self, theta, q0, q1): return self.append("ryy", (q0, q1), (theta,))
    def rzz(self, theta, q0, q1): return self.append("rzz", (q0, q1), (theta,))
    def crx(self, theta, c, t): return self.append("crx", (c, t), (theta,))
    def cry(self, theta, c, t): return self.append("cry", (c, t), (theta,))
    def crz(self, theta, c, t): return self.append("crz", (c, t), (theta,))
    def cp(self, lam, c, t): return self.append("cp", (c, t), (lam,))
    def cu3(self, theta, phi, lam, c, t): return self.append("cu3", (c, t), (theta, phi, lam))

    # 3-qubit gates, recorded as their qelib1.inc decompositions (exact, no global phase)
    def ccx(self, c0, c1, t) -> "Circuit":
        """Toffoli as 6 CNOTs and T gates (qelib1.inc's definition)."""
        a, b, c = self._qubits((c0, c1, t), 3, "ccx")
        start = len(self._ops)
        (self.h(c).cx(b, c).tdg(c).cx(a, c).t(c).cx(b, c).tdg(c).cx(a, c)
             .t(b).t(c).h(c).cx(a, b).t(a).tdg(b).cx(a, b))
        self._group = (start, len(self._ops))
        return self

    toffoli = ccx

    def cswap(self, c, q0, q1) -> "Circuit":
        """Fredkin: ``cx q1,q0; ccx c,q0,q1; cx q1,q0``."""
        a, b, t = self._qubits((c, q0, q1), 3, "cswap")
        start = len(self._ops)
        self.cx(t, b).ccx(a, b, t).cx(t, b)
        self._group = (start, len(self._ops))
        return self

    # ------------------------------------------------------------------ reading
    def ops(self, device=None) -> Iterator[Tuple[torch.Tensor, Tuple[int, ...]]]:
        """Yield ``(gate_matrix, qubits)`` in order: ``(d, d)`` or per-sample ``(B, d, d)``.

        Matrices carry the parameters' autograd graphs; real gates come out real (float64
        unless a parameter is float32), the others complex.
        """
        for op in self._ops:
            yield gate_matrix(op, device), op.qubits

    def depth(self) -> int:
        """Number of layers when each op starts as soon as all its qubits (and the classical bits
        it writes or reads) are free."""
        level = [0] * self.n_qubits
        bit_level = [0] * self.n_clbits
        for op in self._ops:
            bits = _clbits_of(op)
            d = 1 + max([level[q] for q in op.qubits] + [bit_level[b] for b in bits])
            for q in op.qubits:
                level[q] = d
            for b in bits:
                bit_level[b] = d
        return max(level)

    def count_ops(self) -> Dict[str, int]:
        """``{name: count}``, most frequent first."""
        return dict(Counter(op.name for op in self._ops).most_common())

    def draw(self) -> str:
        """Text drawing, one wire per qubit (qubit 0 on top), ops packed into columns.

        Controls are ``●``, SWAP ends ``×``, a per-sample parameter prints as ``[B]``; a 2-qubit
        unitary prints ``U₀`` on its first qubit and ``U₁`` on its second.
        """
        columns: List[List[Operation]] = []
        free = [0] * self.n_qubits  # first column where each wire (and the span over it) is free
        bit_free = [0] * self.n_clbits  # a measurement and the ops conditioned on it stay in order
        for op in self._ops:
            lo, hi = min(op.qubits), max(op.qubits)
            bits = _clbits_of(op)
            col = max(free[lo:hi + 1] + [bit_free[b] for b in bits])
            if col == len(columns):
                columns.append([])
            columns[col].append(op)
            for q in range(lo, hi + 1):
                free[q] = col + 1
            for b in bits:
                bit_free[b] = col + 1
        names = [f"q{q}: " for q in range(self.n_qubits)]
        width0 = max(map(len, names))
        wires = [nm.rjust(width0) + "─" for nm in names]
        gaps = [" " * (width0 + 1) for _ in range(self.n_qubits - 1)]
        for ops in columns:
            cells: Dict[int, str] = {}
            spans = []
            for op in ops:
                for q, text in zip(op.qubits, _labels(op)):
                    cells[q] = text
                spans.append((min(op.qubits), max(op.qubits)))
            w = max(len(t) for t in cells.values())
            mid = (w - 1) // 2
            for q in range(self.n_qubits):
                if q in cells:
                    text = cells[q]
                    left = mid - (len(text) - 1) // 2
                    cell = "─" * left + text + "─" * (w - left - len(text))
                elif any(lo < q < hi for lo, hi in spans):
                    cell = "─" * mid + "┼" + "─" * (w - mid - 1)
                else:
                    cell = "─" * w
                wires[q] += cell + "─"
            for q in range(self.n_qubits - 1):
                link = any(lo <= q < hi for lo, hi in spans)
                gaps[q] += " " * mid + ("│" if link else " ") + " " * (w - mid - 1) + " "
        lines = []
        for q in range(self.n_qubits):
            lines.append(wires[q])
            if q < self.n_qubits - 1:
                lines.append(gaps[q].rstrip())
        return "\n".join(lines)

    # ------------------------------------------------------------------ import / export
    @classmethod
    def from_qasm(cls, text: str, drop_final_measurements: bool = False) -> "Circuit":
        """Parse OpenQASM 2.0 (see ``qlam_tn.qasm``)."""
        from .qasm import from_qasm
        return from_qasm(text, drop_final_measurements=drop_final_measurements)

    def to_qasm(self) -> str:
        """OpenQASM 2.0 text (see ``qlam_tn.qasm``)."""
        from .qasm import to_qasm
        return to_qasm(self)

    @classmethod
    def from_qiskit(cls, qc, drop_final_measurements: bool = False) -> "Circuit":
        """From a ``qiskit.QuantumCircuit`` (see ``qlam_tn.interop``)."""
        from .interop import from_qiskit
        return from_qiskit(qc, drop_final_measurements=drop_final_measurements)

    def to_qiskit(self):
        """A ``qiskit.QuantumCircuit`` (see ``qlam_tn.interop``)."""
        from .interop import to_qiskit
        return to_qiskit(self)

    @classmethod
    def from_quimb(cls, qc) -> "Circuit":
        """From a ``quimb.tensor.Circuit`` (reads ``qc.gates``; see ``qlam_tn.interop``)."""
        from .interop import from_quimb
        return from_quimb(qc)

    def to_quimb(self, cls=None, **kwargs):
        """A ``quimb.tensor.Circuit`` (or ``cls(n_qubits, **kwargs)``, e.g. ``CircuitMPS``)."""
        from .interop import to_quimb
        return to_quimb(self, cls=cls, **kwargs)


def _clbits_of(op) -> Tuple[int, ...]:
    """The classical bits an op writes (a measurement) or reads (its condition)."""
    bits = op.params if op.name == "measure" else ()
    return tuple(bits) + (op.condition[0] if op.condition is not None else ())


def _labels(op: Operation) -> List[str]:
    if op.condition is not None:
        bits, value = op.condition
        return [t + f"?{value}" for t in _labels(Operation(op.name, op.qubits, op.params))]
    if op.name == "measure":
        return [f"M→c{op.params[0]}"]
    if op.name == "reset":
        return ["|0⟩"]
    if op.name == "unitary":
        return ["U"] if len(op.qubits) == 1 else ["U₀", "U₁"]
    spec = GATES[op.name]
    text = spec.label
    if op.params:
        text += "(" + ",".join(_format_param(p) for p in op.params) + ")"
    if spec.controlled:
        return ["●", text]
    return [text] * spec.n_qubits


def gate_matrix(op: Operation, device=None) -> torch.Tensor:
    """The matrix of one ``Operation``: ``(d, d)`` or ``(B, d, d)``, big-endian."""
    if op.name in NON_UNITARY:
        raise ValueError(f"{op.name} is not a gate: it has no matrix (run the circuit with simulate(..., shots=S))")
    if op.name == "unitary":
        m = op.params[0]
        return m if device is None else m.to(device)
    return GATES[op.name].build(*op.params, device=device)


def zyz_angles(u: torch.Tensor) -> Tuple[float, float, float, float]:
    """``(theta, phi, lam, gamma)`` with ``u = e^{iγ} U3(θ, φ, λ)`` for one 2x2 unitary.

    ``U3 = [[c, -e^{iλ} s], [e^{iφ} s, e^{i(φ+λ)} c]]`` with ``c, s >= 0``, so ``γ`` is the
    phase of ``u[0,0]``, ``φ`` and ``λ`` those of ``u[1,0]`` and ``-u[0,1]`` relative to it.
    """
    m = u.detach().to(torch.complex128).cpu().numpy()
    theta = 2 * math.atan2(abs(m[1, 0]), abs(m[0, 0]))
    tiny = 1e-14
    if abs(m[0, 0]) > tiny and abs(m[1, 0]) > tiny:
        gamma = cmath.phase(m[0, 0])
        phi = cmath.phase(m[1, 0]) - gamma
        lam = cmath.phase(-m[0, 1]) - gamma
    elif abs(m[0, 0]) > tiny:  # diagonal: only φ + λ is fixed
        gamma, phi = cmath.phase(m[0, 0]), 0.0
        lam = cmath.phase(m[1, 1]) - gamma
    else:  # anti-diagonal: only φ - λ is fixed
        gamma = 0.0
        phi, lam = cmath.phase(m[1, 0]), cmath.phase(-m[0, 1])
    return theta, phi, lam, gamma


_BACKENDS = ("mps", "statevector")


def simulate(circuit: Circuit, backend: str = "mps", max_bond: Optional[int] = None, cutoff: float = 1e-12,
             cutoff_mode: str = "rsum2", batch: Optional[int] = None, renormalize: bool = False,
             grad_eps: float = 1e-12, dtype: torch.dtype = torch.complex128, device="cpu", plan: bool = True,
             shots: Optional[int] = None, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
             noise=None):
    """Run ``circuit`` from ``|0...0>`` and return the engine's state, or with ``shots=S`` the counts.

    With ``shots=S`` (needed by a circuit with ``measure``, ``reset`` or a classical condition)
    the circuit runs as ``S`` sampled trajectories (``qlam_tn.trajectories``: the shots are the
    batch axis) and the result is the classical register counts, ``{"<bits>": count}`` as Qiskit
    Aer's ``result.get_counts()`` gives them (clbit 0 rightmost, registers separated by a space,
    the last declared leftmost). ``seed`` or ``generator`` makes the draws reproducible;
    ``noise`` (a ``qlam_tn.noise.NoiseModel``) adds its channel after every gate.

    Args:
        backend: ``"mps"`` (returns an ``MPS``; its ``discarded_weight`` and
            ``fidelity_estimate`` report what truncation cut) or ``"statevector"`` (exact
            ``StateVector``; ``max_bond`` must then be ``None``).
        max_bond, cutoff, cutoff_mode, renormalize, grad_eps: the MPS options (``MPS.zeros``);
            ``max_bond=None`` keeps every singular value above the cutoff, ``grad_eps`` is the
            broadening of the SVD backward (smaller: less gradient bias near degenerate spectra).
        batch: number of states; ``None`` takes the circuit's batch (1 when all parameters
            are scalars). A circuit without per-sample parameters runs on any ``batch``.
        dtype: ``complex128`` by default; a real dtype runs in real arithmetic until the
            first complex gate, which promotes the state.
        plan: on the mps backend, plan the circuit as a whole first (``qlam_tn.planner``: fused
            neighbour gates, a qubit layout instead of SWAP chains there and back, one compiled
            call); ``False`` applies it gate by gate (the plain reference). The qubit order of
            the result is the circuit's either way.
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"simulate needs a Circuit, got {type(circuit).__name__}")
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if shots is not None or noise is not None or not circuit.is_unitary:
        if batch is not None:
            raise ValueError("with shots= the batch axis holds the shots: leave batch=None")
        from . import trajectories
        return trajectories.counts(circuit, shots, backend=backend, seed=seed, generator=generator, noise=noise,
                                   max_bond=max_bond, cutoff=cutoff, cutoff_mode=cutoff_mode, dtype=dtype,
                                   device=device)
    if batch is None:
        batch = circuit.batch or 1
    elif circuit.batch is not None and batch != circuit.batch:
        raise ValueError(f"batch={batch} but the circuit's per-sample parameters have batch {circuit.batch}")
    if backend == "statevector":
        if max_bond is not None:
            raise ValueError("max_bond applies to the mps backend; the statevector backend is exact")
        state = StateVector.zeros(circuit.n_qubits, batch=batch, dtype=dtype, device=device)
    else:
        state = MPS.zeros(circuit.n_qubits, batch=batch, max_bond=max_bond, cutoff=cutoff,
                          cutoff_mode=cutoff_mode, renormalize=renormalize, dtype=dtype, device=device,
                          grad_eps=grad_eps)
    if plan and backend == "mps":
        from . import planner
        return planner.run(state, planner.plan_circuit(circuit, zeros=True))
    for gate, qubits in circuit.ops(device=state.device):
        state.apply(gate, qubits if len(qubits) == 2 else qubits[0])
    if circuit.global_phase:
        phase = cmath.exp(1j * circuit.global_phase)
        state.apply(torch.tensor([[phase, 0], [0, phase]], dtype=torch.complex128), 0)
    return state
