"""``Circuit`` to and from Qiskit and quimb.

Qubit order. Both libraries index qubits explicitly, so qubit ``k`` of a Qiskit or quimb
circuit is qubit ``k`` here and named gates keep their argument order (``cx(control,
target)``). What differs is how a basis label is read:

* the engine and quimb are big-endian: qubit 0 is the leftmost bit of ``|b0 b1 ... b_{n-1}>``;
* Qiskit is little-endian: qubit 0 is the rightmost bit, in ``Statevector`` amplitudes, in
  Pauli labels (``"XZ"`` is X on qubit 1, Z on qubit 0) and in ``Operator``/``to_matrix()``
  matrices (a gate on qargs ``(a, b)`` has row index ``b(a) + 2*b(b)``).

So a Qiskit ``Statevector`` ``v`` of ``n`` qubits equals the engine's amplitudes after
``v.reshape([2]*n).transpose(reversed axes)``, and a 2-qubit matrix from Qiskit is converted by
swapping its two bit positions (``_swap_bit_order``) before it becomes a ``unitary`` op, and
back again on export. Named gates need no conversion: their definitions agree.

``from_qiskit`` reads ``measure``, ``reset`` and ``if_test`` blocks conditioned on a register or
a clbit (``if_else`` with no else branch, as OpenQASM 2's ``if``) into ``measure`` / ``reset`` /
conditioned ops, and the classical registers into ``Circuit.cregs`` (when they partition the
clbits in order; otherwise one register ``c`` of all the clbits); such a circuit runs with
``qt.simulate(c, shots=S)``. Nested blocks condition their ops on all the enclosing conditions
at once. Qiskit reads a block's condition once, at its start, the engine at each op: an op in a
block after a measurement into a bit that block is conditioned on is refused (the two would
part there). With ``drop_final_measurements=True`` it asks for a unitary circuit
instead: final measurements are dropped and a measured qubit used again, ``reset`` and control
flow are refused. Always refused (``ValueError`` naming the instruction): other control flow
(``while_loop``, ``for_loop``, ``switch_case``, ``box``, an else branch, a condition that is an
expression), unbound parameters, and opaque instructions (no matrix and no definition). ``barrier``
and ``delay`` are skipped. A gate that is not one of the named gates becomes a ``unitary`` op
(up to 2 qubits, from ``to_matrix()``) or is expanded through its ``definition`` (more
qubits, e.g. ``ccx``, ``mcx``, ``QFT``), keeping global phases in ``Circuit.global_phase``.
"""
from __future__ import annotations

import cmath
import math
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import torch

from .circuit import Circuit
from .gates import controlled

__all__ = ["from_qiskit", "to_qiskit", "from_quimb", "to_quimb"]


def _swap_bit_order(m: np.ndarray) -> np.ndarray:
    """A 2-qubit matrix re-indexed between ``2*b(q0)+b(q1)`` and ``b(q0)+2*b(q1)`` (an involution)."""
    return m.reshape(2, 2, 2, 2).transpose(1, 0, 3, 2).reshape(4, 4)


def _scalar(value, where: str) -> float:
    """A Python float from a float, 0-d / size-1 tensor; per-sample values are refused."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{where}: a per-sample parameter (batch {value.numel()}) has no single value "
                             "to export")
        return float(value.detach().reshape(()))
    return float(value)


# ---------------------------------------------------------------------------- Qiskit

# Qiskit gate name -> how to append it (params first, then qubits, in Qiskit's order).
_FROM_QISKIT = {
    "id": lambda c, p, q: c.id(*q),
    "h": lambda c, p, q: c.h(*q), "x": lambda c, p, q: c.x(*q), "y": lambda c, p, q: c.y(*q),
    "z": lambda c, p, q: c.z(*q), "s": lambda c, p, q: c.s(*q), "sdg": lambda c, p, q: c.sdg(*q),
    "t": lambda c, p, q: c.t(*q), "tdg": lambda c, p, q: c.tdg(*q), "sx": lambda c, p, q: c.sx(*q),
    "sxdg": lambda c, p, q: c.sxdg(*q),
    "rx": lambda c, p, q: c.rx(*p, *q), "ry": lambda c, p, q: c.ry(*p, *q), "rz": lambda c, p, q: c.rz(*p, *q),
    "p": lambda c, p, q: c.p(*p, *q), "u1": lambda c, p, q: c.p(*p, *q),
    "u2": lambda c, p, q: c.u3(math.pi / 2, *p, *q),
    "u3": lambda c, p, q: c.u3(*p, *q), "u": lambda c, p, q: c.u3(*p, *q),
    "cx": lambda c, p, q: c.cx(*q), "cy": lambda c, p, q: c.cy(*q), "cz": lambda c, p, q: c.cz(*q),
    "ch": lambda c, p, q: c.ch(*q), "swap": lambda c, p, q: c.swap(*q), "iswap": lambda c, p, q: c.iswap(*q),
    "rxx": lambda c, p, q: c.rxx(*p, *q), "ryy": lambda c, p, q: c.ryy(*p, *q), "rzz": lambda c, p, q: c.rzz(*p, *q),
    "crx": lambda c, p, q: c.crx(*p, *q), "cry": lambda c, p, q: c.cry(*p, *q), "crz": lambda c, p, q: c.crz(*p, *q),
    "cp": lambda c, p, q: c.cp(*p, *q), "cu1": lambda c, p, q: c.cp(*p, *q),
    "cu3": lambda c, p, q: c.cu3(*p, *q),
}

_CONTROL_FLOW = ("if_else", "while_loop", "for_loop", "switch_case", "box")


def _qiskit_cregs(qc) -> List[tuple]:
    """``(name, size)`` of ``qc``'s classical registers if they partition its clbits in order,
    else one register ``c`` of all of them (none without clbits)."""
    flat = [b for reg in qc.cregs for b in reg]
    if flat == list(qc.clbits):
        return [(reg.name, reg.size) for reg in qc.cregs if reg.size]
    return [("c", qc.num_clbits)] if qc.num_clbits else []


def both_conditions(a, b):
    """The condition ``(clbits, value)`` (``clbits[0]`` least significant) that holds when both
    ``a`` and ``b`` hold (``a`` may be ``None``: then ``b``), or ``None`` when they ask for
    different values of a shared clbit."""
    if a is None:
        return b
    want: Dict[int, int] = {}
    for bits, value in (a, b):
        for k, c in enumerate(bits):
            if want.setdefault(c, (value >> k) & 1) != (value >> k) & 1:
                return None
    return tuple(want), sum(bit << k for k, bit in enumerate(want.values()))


class _QiskitReader:
    def __init__(self, n_qubits: int, drop_final_measurements: bool, cregs=()):
        self.out = Circuit(n_qubits)
        for name, size in cregs:
            self.out.add_creg(name, size)
        self.drop_final = drop_final_measurements
        self.measured: Set[int] = set()
        # (clbits, value) of the if_test blocks being read, all of them at once; None outside.
        self.condition: Optional[Tuple[Tuple[int, ...], int]] = None
        # The if_test blocks open, outermost first: each one's own clbits, and the clbits measured
        # into since it began (its condition was read before those measurements).
        self.blocks: List[Tuple[Tuple[int, ...], Set[int]]] = []

    @staticmethod
    def _float(value, name: str, context: str) -> float:
        try:
            return float(value)
        except TypeError:
            raise ValueError(f"unsupported Qiskit instruction {name!r}{context}: parameter {value} is not bound "
                             "(bind parameters with QuantumCircuit.assign_parameters first)") from None

    def read(self, qc, qubit_map: List[int], context: str = "", clbit_map: Optional[List[int]] = None) -> None:
        if clbit_map is None:
            clbit_map = list(range(qc.num_clbits))
        self.out.global_phase += self._float(qc.global_phase, "global_phase", context)
        for inst in qc.data:
            qs = [qubit_map[qc.find_bit(b).index] for b in inst.qubits]
            if inst.operation.name == "if_else" and not self.drop_final:
                self.if_else(qc, inst, qs, clbit_map, context)
                continue
            if self.condition is None:
                self.read_one(qc, inst, qs, clbit_map, context)
                continue
            # Inside an if_test block: everything this instruction appends (a definition's
            # expansion included) gets the block's condition, once.
            if inst.operation.name in ("barrier", "delay"):
                continue
            self.check_fresh(inst.operation.name, context)
            condition, self.condition = self.condition, None
            try:
                with self.out.conditioned(*condition):
                    self.read_one(qc, inst, qs, clbit_map, context)
            finally:
                self.condition = condition
            if inst.operation.name == "measure":
                for _, written in self.blocks:
                    written.update(clbit_map[qc.find_bit(b).index] for b in inst.clbits)

    def check_fresh(self, name: str, where: str) -> None:
        """Refuse an op inside if_test blocks after a measurement into a bit one of them is
        conditioned on. The engine reads a condition at each op, Qiskit once at the block's start:
        the two part only then."""
        stale = set().union(*(written.intersection(bits) for bits, written in self.blocks))
        if stale:
            raise ValueError(f"unsupported Qiskit instruction {name!r}{where or ''}: it follows a measurement into "
                             f"clbit {min(stale)} inside an if_test block conditioned on that bit (Qiskit reads the "
                             "condition once, at the block's start, the engine at each op: measure into another "
                             "clbit)")

    def read_one(self, qc, inst, qs: List[int], clbit_map: List[int], where: str) -> None:
        """One instruction other than an ``if_test`` block (read unconditioned)."""
        from qiskit.circuit import ControlFlowOp

        op = inst.operation
        name = op.name
        cs = [clbit_map[qc.find_bit(b).index] for b in inst.clbits]
        if name in ("barrier", "delay"):
            return
        if name == "measure":
            if not self.drop_final:
                self.out.measure(qs[0], cs[0])
            else:
                self.measured.update(qs)
            return
        if name == "reset":
            if self.drop_final:
                raise ValueError(f"unsupported Qiskit instruction 'reset'{where}: reset is not unitary (read the "
                                 "circuit without drop_final_measurements=True and run it with shots=)")
            self.out.reset(qs[0])
            return
        if isinstance(op, ControlFlowOp) or name in _CONTROL_FLOW:
            raise ValueError(f"unsupported Qiskit instruction {name!r}{where}: only if_test blocks (no else, "
                             "without drop_final_measurements=True) are read")
        if inst.clbits:
            raise ValueError(f"unsupported Qiskit instruction {name!r}{where}: it acts on classical bits")
        late = self.measured.intersection(qs)
        if late:
            raise ValueError(f"unsupported Qiskit instruction 'measure'{where}: qubit {min(late)} is "
                             f"measured mid-circuit ({name!r} follows it)")
        self.instruction(op, qs, where)

    def if_else(self, qc, inst, qs: List[int], clbit_map: List[int], where: str) -> None:
        """An ``if_test`` block: its body's ops, each conditioned on the block's register or clbit
        (and, in a nested block, on the enclosing blocks' conditions too)."""
        op = inst.operation
        cond = op.condition
        if not isinstance(cond, tuple) or len(op.blocks) > 1 and len(op.blocks[1].data):
            raise ValueError(f"unsupported Qiskit instruction 'if_else'{where}: only a condition (register or "
                             "clbit, value) without an else branch is read")
        if op.blocks[0].data:
            self.check_fresh("if_else", where)
        target, value = cond
        bits = list(target) if hasattr(target, "size") else [target]  # a ClassicalRegister, or one Clbit
        clbits = [clbit_map[qc.find_bit(b).index] for b in bits]
        merged = both_conditions(self.condition, (tuple(clbits), int(value)))
        if merged is None:  # the enclosing blocks ask for other values of the same bits: never runs
            return
        body = op.blocks[0]
        inner = [clbit_map[qc.find_bit(b).index] for b in inst.clbits]
        outer, self.condition = self.condition, merged
        self.blocks.append((tuple(clbits), set()))
        try:
            self.read(body, qs, where or " (inside 'if_else')", inner)
        finally:
            self.condition = outer
            self.blocks.pop()

    def instruction(self, op, qs: List[int], where: str) -> None:
        from qiskit.circuit import Gate

        name = op.name
        # A user's own Gate may reuse a standard name: trust the name only for library classes.
        standard = any((k.__module__ or "").startswith("qiskit.circuit.library") for k in type(op).__mro__)
        if name in _FROM_QISKIT and standard:
            params = [self._float(p, name, where) for p in op.params]
            _FROM_QISKIT[name](self.out, params, qs)
            return
        if name == "global_phase" and standard:
            self.out.global_phase += self._float(op.params[0], name, where)
            return
        if isinstance(op, Gate) and 1 <= op.num_qubits <= 2:
            try:
                m = np.asarray(op.to_matrix(), dtype=complex)
            except Exception:  # noqa: BLE001 - no matrix: fall back on the definition below
                m = None
            if m is not None:
                if op.num_qubits == 2:
                    m = _swap_bit_order(m)
                self.out.unitary(torch.as_tensor(m), tuple(qs))
                return
        definition = getattr(op, "definition", None)
        if definition is None:
            raise ValueError(f"unsupported Qiskit instruction {name!r}{where}: it has neither a matrix nor a "
                             "definition (opaque)")
        self.read(definition, qs, f" (inside {name!r})" if not where else f"{where[:-1]} > {name!r})")


def from_qiskit(qc, drop_final_measurements: bool = False) -> Circuit:
    """A ``Circuit`` from a ``qiskit.QuantumCircuit`` (all quantum registers, in Qiskit's order)."""
    from qiskit import QuantumCircuit

    if not isinstance(qc, QuantumCircuit):
        raise TypeError(f"from_qiskit needs a qiskit.QuantumCircuit, got {type(qc).__name__}")
    reader = _QiskitReader(qc.num_qubits, drop_final_measurements,
                           () if drop_final_measurements else _qiskit_cregs(qc))
    reader.read(qc, list(range(qc.num_qubits)))
    return reader.out


def to_qiskit(circuit: Circuit):
    """A ``qiskit.QuantumCircuit`` with the same ops, qubit ``k`` -> Qiskit qubit ``k``.

    Parameters become floats (the autograd graph stays here); ``cu3`` becomes ``CUGate`` with
    ``γ = 0``; a ``unitary`` op becomes a ``UnitaryGate`` with its matrix re-indexed to
    little-endian. Classical registers become ``ClassicalRegister``s of the same names,
    ``measure``/``reset`` Qiskit's, and a conditioned op an ``if_test`` block on its register (or
    its one clbit); a condition on other sets of clbits raises ``ValueError``.
    """
    from qiskit import ClassicalRegister, QuantumCircuit

    if circuit.batch is not None and circuit.batch > 1:
        raise ValueError(f"to_qiskit: the circuit has per-sample parameters (batch {circuit.batch}); "
                         "a Qiskit circuit holds one value per parameter")
    qc = QuantumCircuit(circuit.n_qubits, global_phase=circuit.global_phase)
    registers = {}
    for name, size in circuit.cregs:
        reg = ClassicalRegister(size, name)
        qc.add_register(reg)
        registers[tuple(qc.find_bit(b).index for b in reg)] = reg
    for k, op in enumerate(circuit):
        where = f"to_qiskit: op {k} ({op.name})"
        if op.condition is None:
            _append_qiskit(qc, op, where)
            continue
        bits, value = op.condition
        target = registers.get(tuple(bits)) or (qc.clbits[bits[0]] if len(bits) == 1 else None)
        if target is None:
            raise ValueError(f"{where}: conditioned on clbits {bits}, neither one register nor one clbit")
        with qc.if_test((target, value)):
            _append_qiskit(qc, op, where)
    return qc


def _append_qiskit(qc, op, where: str) -> None:
    """Append one op (its condition already handled) to the Qiskit circuit ``qc``."""
    from qiskit.circuit.library import UnitaryGate

    q = list(op.qubits)
    if op.name == "measure":
        qc.measure(q[0], op.params[0])
    elif op.name == "reset":
        qc.reset(q[0])
    elif op.name == "unitary":
        m = op.params[0].detach().cpu().to(torch.complex128).numpy().reshape(2 ** len(op.qubits), -1)
        if len(op.qubits) == 2:
            m = _swap_bit_order(m)
        qc.append(UnitaryGate(m, check_input=False), q)
    else:
        p = [_scalar(v, where) for v in op.params]
        if op.name == "u3":
            qc.u(*p, *q)
        elif op.name == "cu3":
            qc.cu(*p, 0.0, *q)
        else:
            getattr(qc, op.name)(*p, *q)


# ---------------------------------------------------------------------------- quimb

_TO_QUIMB = {
    "id": "IDEN", "h": "H", "x": "X", "y": "Y", "z": "Z", "s": "S", "sdg": "SDG", "t": "T", "tdg": "TDG",
    "sx": "SX", "sxdg": "SXDG", "rx": "RX", "ry": "RY", "rz": "RZ", "p": "U1", "u3": "U3",
    "cx": "CX", "cy": "CY", "cz": "CZ", "swap": "SWAP", "iswap": "ISWAP", "rxx": "RXX", "ryy": "RYY",
    "rzz": "RZZ", "crx": "CRX", "cry": "CRY", "crz": "CRZ", "cp": "CU1", "cu3": "CU3",
}
# quimb label -> our name, for the labels whose matrices agree (tested); the rest go by matrix.
_FROM_QUIMB: Dict[str, str] = {v: k for k, v in _TO_QUIMB.items()}
_FROM_QUIMB.update({"CNOT": "cx", "PHASE": "p"})


def to_quimb(circuit: Circuit, cls=None, **kwargs):
    """A ``quimb.tensor.Circuit`` (or ``cls(n_qubits, **kwargs)``, e.g. ``quimb.tensor.CircuitMPS``).

    Named gates keep their quimb labels; ``ch`` and ``unitary`` ops go in as raw matrices, and a
    nonzero ``global_phase`` as a raw phase on qubit 0. Parameters become floats.
    """
    import quimb.tensor as qtn

    if circuit.batch is not None and circuit.batch > 1:
        raise ValueError(f"to_quimb: the circuit has per-sample parameters (batch {circuit.batch}); "
                         "a quimb circuit holds one value per parameter")
    qc = (cls or qtn.Circuit)(circuit.n_qubits, **kwargs)
    for k, op in enumerate(circuit):
        label = _TO_QUIMB.get(op.name)
        if label is None:
            from .circuit import gate_matrix
            m = gate_matrix(op).detach().cpu().to(torch.complex128).numpy()
            qc.apply_gate_raw(m.reshape(m.shape[-2:]), op.qubits)
        else:
            params = [_scalar(v, f"to_quimb: op {k} ({op.name})") for v in op.params]
            qc.apply_gate(label, *params, *op.qubits)
    if circuit.global_phase:
        qc.apply_gate_raw(cmath.exp(1j * circuit.global_phase) * np.eye(2), (0,))
    return qc


def from_quimb(qc) -> Circuit:
    """A ``Circuit`` from a ``quimb.tensor.Circuit``'s ``gates`` (parameters kept as given, torch
    tensors included). Gates on 3 qubits are supported for ``CCX``/``TOFFOLI``/``CCNOT``,
    ``CCZ`` and ``CSWAP``/``FREDKIN``; other gates on more than 2 qubits raise ``ValueError``.
    """
    n = qc.N
    out = Circuit(n)
    for gate in qc.gates:
        label = gate.label.upper() if isinstance(gate.label, str) else str(gate.label)
        qubits = tuple(gate.qubits)
        controls = tuple(gate.controls or ())
        params = [] if isinstance(gate.params, str) else list(gate.params)
        params = [p if isinstance(p, torch.Tensor) else float(p) for p in params]
        if not controls and label in _FROM_QUIMB:
            out.append(_FROM_QUIMB[label], qubits, params)
        elif not controls and label == "U2":
            out.u3(math.pi / 2, *params, *qubits)
        elif not controls and label in ("CCX", "TOFFOLI", "CCNOT"):
            out.ccx(*qubits)
        elif not controls and label == "CCZ":
            out.h(qubits[2]).ccx(*qubits).h(qubits[2])
        elif not controls and label in ("CSWAP", "FREDKIN"):
            out.cswap(*qubits)
        else:
            m = torch.as_tensor(np.array(gate.array, dtype=complex)).reshape(2 ** len(qubits), -1)
            if controls:
                if len(controls) + len(qubits) != 2:
                    raise ValueError(f"from_quimb: gate {label!r} with controls {controls} acts on more than 2 qubits")
                m = controlled(m)
                qubits = controls + qubits
            if len(qubits) > 2:
                raise ValueError(f"from_quimb: gate {label!r} acts on {len(qubits)} qubits; only 1- and 2-qubit "
                                 "gates (and CCX, CCZ, CSWAP) are supported")
            out.unitary(m, qubits)
    return out
