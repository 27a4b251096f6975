"""Plan a circuit as a whole before it runs on an MPS: fused neighbour gates and a qubit layout.

Gate by gate, a gate between distant qubits is routed by a chain of SWAPs there and back, and
every one- and two-qubit gate is a step of its own. The planner instead turns the whole circuit
into one list of nearest-neighbour ``(4, 4)`` gates, run in one compiled call
(``MPS.apply_program``)::

    circuit ops (logical qubits)          planned program (sites)
    h q3; cx q0,q3; rz q3; cp q3,q1 ...   ("2q", gates (P, 4, 4), firsts (P,))

- **consecutive gates on one logical pair** (one-qubit gates between them included: a transpiled
  controlled phase ``p cx p cx p``) are first multiplied into one ``(4, 4)`` block;
- a **layout** ``pos[q]`` (logical qubit -> site) is kept, as Qiskit Aer's MPS does: a distant
  pair is brought together by SWAPs that are not undone; the next gates decide which of the two
  qubits travels and where they meet (a short look-ahead over the next two-qubit gates, and how
  far each qubit ends from its home site). A SWAP of the circuit itself only relabels the
  layout. The user's order is restored once, at the end. From ``|0...0>`` (``zeros``) two sites no
  gate has touched yet trade places for free;
- a **run of diagonal gates** (controlled phases, ZZ rotations: they commute) is applied nearest
  pair first;
- a **one-qubit gate** is multiplied into the last two-qubit gate on its site, or, on a site no
  two-qubit gate has touched yet, held and multiplied into the first one that does (a site no
  two-qubit gate ever touches gets a one-qubit layer);
- **consecutive gates on one pair** of sites (a routing SWAP included) become one ``(4, 4)``
  before a single split.

Everything is exact: the planned program is the circuit's unitary (SWAPs and all), so without
truncation it gives the same state as the gate-by-gate route; with truncation the splits differ
(fewer of them, at other places), each still within its cut. ``simulate(..., plan=False)`` is the
gate-by-gate reference this is tested against.

Matrices are built once per distinct (gate, parameters) and multiplied in numpy (float64 or
complex128) unless a parameter is under autograd, when the same steps run in torch and keep the
graph. Per-sample parameters give per-sample gates ``(B, 4, 4)``; a plan's gates are then
``(B, P, 4, 4)``.
"""
from __future__ import annotations

import cmath
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["Plan", "plan", "plan_circuit", "run", "LOOKAHEAD", "CHUNK"]

# How many following two-qubit gates decide which qubit of a distant pair travels, and how much
# less each further one counts.
LOOKAHEAD = 8
_DECAY = 0.7
# What a step away from a qubit's home site weighs against the look-ahead's distances.
HOME = 0.05
# How many of a run of commuting gates are scanned for the nearest pair.
_SCAN = 16
# Gates per compiled call: bounds the kernel's bookkeeping arrays (one row per gate and site move).
CHUNK = 2048

_SWAP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


@dataclass
class Plan:
    """A circuit as nearest-neighbour gates in the user's qubit order.

    Attributes:
        n_qubits: number of qubits (= sites).
        gates: ``(P, 4, 4)`` or per-sample ``(B, P, 4, 4)`` (numpy, or torch under autograd);
            gate ``k`` acts on sites ``(firsts[k], firsts[k] + 1)``, row index ``2*b(s) + b(s+1)``.
        firsts: ``P`` site indices.
        ones: ``(n, 2, 2)`` / ``(B, n, 2, 2)`` one-qubit gates on sites that no two-qubit gate
            touches, applied first, or ``None``.
        zeros: the plan holds only from ``|0...0>`` (it moved untouched qubits for free).
        stats: counts: ``ops`` (input gates), ``two_qubit`` (two-qubit blocks after fusing
            consecutive gates on a pair; circuit SWAPs excluded), ``swaps`` (routing SWAPs, those
            of the restore included), ``free_swaps`` (of them, SWAPs of two untouched sites),
            ``relabels`` (circuit SWAPs taken by the layout), ``gates`` (``P``, after merging).
    """

    n_qubits: int
    gates: Any
    firsts: List[int]
    ones: Any = None
    stats: Dict[str, int] = field(default_factory=dict)
    zeros: bool = False

    def program(self, dtype: torch.dtype, device) -> List[tuple]:
        """The plan as ``MPS.apply_program`` layers in ``dtype`` on ``device``, at most ``CHUNK``
        two-qubit gates a layer."""
        out: List[tuple] = []
        if self.ones is not None:
            out.append(("1q", _tensor(self.ones, dtype, device)))
        if self.firsts:
            gates = _tensor(self.gates, dtype, device)
            for start in range(0, len(self.firsts), CHUNK):
                stop = min(start + CHUNK, len(self.firsts))
                out.append(("2q", gates[..., start:stop, :, :], self.firsts[start:stop]))
        return out

    @property
    def is_complex(self) -> bool:
        arrays = [a for a in (self.gates, self.ones) if a is not None]
        return any(a.is_complex() if isinstance(a, torch.Tensor) else np.iscomplexobj(a) for a in arrays)


def _tensor(a, dtype: torch.dtype, device) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    if t.is_complex() and not dtype.is_complex:
        raise TypeError("complex gates on a real state: promote the state first")
    return t.to(dtype=dtype, device=device)


def _on_first(u):
    """``u ⊗ I`` for ``u (..., 2, 2)`` -> ``(..., 4, 4)`` (numpy or torch)."""
    k = _zeros_like4(u)
    k[..., 0::2, 0::2] = u
    k[..., 1::2, 1::2] = u
    return k


def _on_second(u):
    """``I ⊗ u`` for ``u (..., 2, 2)`` -> ``(..., 4, 4)``."""
    k = _zeros_like4(u)
    k[..., 0:2, 0:2] = u
    k[..., 2:4, 2:4] = u
    return k


def _zeros_like4(u):
    if isinstance(u, torch.Tensor):
        return torch.zeros(u.shape[:-2] + (4, 4), dtype=u.dtype, device=u.device)
    return np.zeros(u.shape[:-2] + (4, 4), dtype=u.dtype)


def _swap_pair(m):
    """A ``(..., 4, 4)`` gate on ``(q0, q1)`` re-expressed on ``(q1, q0)``: ``SWAP · m · SWAP``."""
    t = m.reshape(m.shape[:-2] + (2, 2, 2, 2))
    return t.swapaxes(-4, -3).swapaxes(-2, -1).reshape(m.shape)


class _Planner:
    """The layout and the output gate list while the ops are read (see the module docstring)."""

    def __init__(self, n: int, lookahead: int, swap, zeros: bool = False):
        self.n = n
        self.zeros = zeros  # the plan starts from |0...0>
        self.swap = swap  # the SWAP matrix in the ops' array type
        self.pos = list(range(n))  # logical qubit -> site
        self.at = list(range(n))  # site -> logical qubit
        self.gates: List[Any] = []
        self.firsts: List[int] = []
        self.last = [-1] * n  # site -> index of the last output gate touching it
        self.pending: List[Any] = [None] * n  # one-qubit gates on sites no gate has touched yet
        self.lookahead = lookahead
        self.stats = {"two_qubit": 0, "swaps": 0, "free_swaps": 0, "relabels": 0}

    # -------------------------------------------------------------- output gates on sites
    def emit(self, s: int, m) -> None:
        """Gate ``m (..., 4, 4)`` on sites ``(s, s+1)``: merged into the previous gate on that pair
        when nothing came between, else appended."""
        p0, p1 = self.pending[s], self.pending[s + 1]
        if p0 is not None:
            m = m @ _on_first(p0)
            self.pending[s] = None
        if p1 is not None:
            m = m @ _on_second(p1)
            self.pending[s + 1] = None
        k = self.last[s]
        if k >= 0 and k == self.last[s + 1]:
            self.gates[k] = m @ self.gates[k]
            return
        self.gates.append(m)
        self.firsts.append(s)
        self.last[s] = self.last[s + 1] = len(self.gates) - 1

    def emit1(self, s: int, u) -> None:
        """One-qubit gate ``u (..., 2, 2)`` on site ``s``."""
        k = self.last[s]
        if k < 0:
            p = self.pending[s]
            self.pending[s] = u if p is None else u @ p
        elif self.firsts[k] == s:
            self.gates[k] = _on_first(u) @ self.gates[k]
        else:
            self.gates[k] = _on_second(u) @ self.gates[k]

    def swap_sites(self, s: int) -> None:
        """A routing SWAP of sites ``(s, s+1)``: emitted and followed by the layout. Two sites no
        two-qubit gate has touched yet hold their held one-qubit gates on ``|0>`` when the plan
        starts from ``|0...0>`` (``zeros``): they trade those instead (no gate)."""
        if self.zeros and self.last[s] < 0 and self.last[s + 1] < 0:
            self.pending[s], self.pending[s + 1] = self.pending[s + 1], self.pending[s]
            self.stats["free_swaps"] += 1
        else:
            self.emit(s, self.swap)
        a, b = self.at[s], self.at[s + 1]
        self.at[s], self.at[s + 1] = b, a
        self.pos[a], self.pos[b] = s + 1, s
        self.stats["swaps"] += 1

    # -------------------------------------------------------------- logical gates
    def one(self, u, q: int) -> None:
        self.emit1(self.pos[q], u)

    def relabel(self, a: int, b: int) -> None:
        """A SWAP of the circuit: the two qubits trade sites in the layout (no gate)."""
        self.stats["relabels"] += 1
        pa, pb = self.pos[a], self.pos[b]
        self.pos[a], self.pos[b] = pb, pa
        self.at[pa], self.at[pb] = b, a

    def two(self, m, a: int, b: int, window: Sequence[Tuple[int, int]]) -> None:
        """Gate ``m`` on logical ``(a, b)`` (row ``2*b(a) + b(b)``); ``window``: the next two-qubit
        gates' pairs (the look-ahead)."""
        self.stats["two_qubit"] += 1
        lo, hi = sorted((self.pos[a], self.pos[b]))
        if hi - lo > 1:
            meet = self.meeting_site(lo, hi, window)
            for s in range(lo, meet):  # the qubit at lo travels up to meet
                self.swap_sites(s)
            for s in range(hi - 1, meet, -1):  # the qubit at hi travels down to meet + 1
                self.swap_sites(s)
        if self.pos[a] < self.pos[b]:
            self.emit(self.pos[a], m)
        else:
            self.emit(self.pos[b], _swap_pair(m))

    def meeting_site(self, lo: int, hi: int, window: Sequence[Tuple[int, int]]) -> int:
        """Where the qubit at ``lo`` ends (the one at ``hi`` ends next to it): any choice costs
        ``hi - lo - 1`` SWAPs; the next two-qubit gates (``window``) pick the one that leaves them
        closest, a first SWAP that merges into the previous gate on its pair breaking ties."""
        best, best_cost = lo, None
        after, pos = self._after, self.pos
        moved = []  # the window's pairs with a qubit in [lo, hi]: the others do not depend on the choice
        w = 1.0
        for u, v in window:
            pu, pv = pos[u], pos[v]
            if lo <= pu <= hi or lo <= pv <= hi:
                moved.append((pu, pv, w))
            w *= _DECAY
        x, y = self.at[lo], self.at[hi]  # their home sites (the user's order) are x and y
        for meet in (lo, hi - 1, (lo + hi - 1) // 2):
            # every SWAP a qubit ends away from home costs one more in the restore
            cost = HOME * (abs(meet - x) + abs(meet + 1 - y))
            for pu, pv, w in moved:
                cost += w * abs(after(pu, lo, hi, meet) - after(pv, lo, hi, meet))
            first = lo if meet > lo else hi - 1  # the first SWAP's lower site
            if not (self.last[first] >= 0 and self.last[first] == self.last[first + 1]):
                cost += 0.5
            if best_cost is None or cost < best_cost:
                best, best_cost = meet, cost
        return best

    @staticmethod
    def _after(t: int, lo: int, hi: int, meet: int) -> int:
        """Site ``t``'s occupant's site after the qubits at ``lo`` / ``hi`` meet at ``meet``/``meet+1``."""
        if t == lo:
            return meet
        if t == hi:
            return meet + 1
        if lo < t <= meet:
            return t - 1
        if meet < t < hi:
            return t + 1
        return t

    def restore(self) -> None:
        """SWAPs that bring every qubit back to its own site (the user's order)."""
        for q in range(self.n):
            for s in range(self.pos[q] - 1, q - 1, -1):
                self.swap_sites(s)


def plan(n_qubits: int, ops: Sequence[Tuple[Any, Tuple[int, ...]]], global_phase: float = 0.0,
         lookahead: int = LOOKAHEAD, commute: bool = True, zeros: bool = False) -> Plan:
    """Plan ``ops``, a sequence of ``(matrix, qubits)``: ``(2, 2)`` / ``(4, 4)`` matrices or
    per-sample ``(B, d, d)`` (numpy arrays, or torch tensors, which are kept as such and keep their
    graphs), on 1 or 2 qubits; a two-qubit matrix's row index is ``2*b(q0) + b(q1)``. A qubit pair
    given as ``("swap", (a, b))`` is a SWAP the layout takes without a gate. ``global_phase``
    (radians) multiplies the state. ``commute``: reorder runs of diagonal gates (numpy matrices
    only). ``zeros``: the plan starts from ``|0...0>`` (``run`` then refuses another state).
    Returns the ``Plan`` (user's qubit order restored)."""
    n = int(n_qubits)
    swap = _SWAP
    if any(isinstance(m, torch.Tensor) for m, _ in ops):
        # Under autograd the steps run in torch, every matrix in one dtype (torch's matmul mixes none).
        mats = [m for m, _ in ops if not _is_swap(m)]
        dtype = torch.complex128 if any(torch.as_tensor(m).is_complex() for m in mats) else torch.float64
        ops = [(m if _is_swap(m) else torch.as_tensor(m).to(dtype), qs) for m, qs in ops]
        swap = torch.from_numpy(_SWAP).to(dtype)
    items = _blocks(n, ops, swap)
    planner = _Planner(n, lookahead, swap, zeros)
    planner.stats["ops"] = len(ops)
    pairs = [qs for m, qs in items if len(qs) == 2 and not _is_swap(m)]
    numeric = not isinstance(swap, torch.Tensor)
    index = k = numeric_stop = 0  # index: of the next two-qubit block in ``pairs``
    while k < len(items):
        m, qs = items[k]
        if numeric and k >= numeric_stop and _diagonal(m):
            stop = k
            while stop < len(items) and _diagonal(items[stop][0]):
                stop += 1
            if commute and sum(len(qs) == 2 for _, qs in items[k:stop]) > 1:
                index = _commuting(planner, items[k:stop], pairs, index, lookahead)
                k = stop
                continue
            numeric_stop = stop  # a run with nothing to reorder: in order, scanned once
        if len(qs) == 1:
            planner.one(m, qs[0])
        elif _is_swap(m):
            planner.relabel(qs[0], qs[1])
        else:
            planner.two(m, qs[0], qs[1], pairs[index + 1:index + 1 + lookahead])
            index += 1
        k += 1
    planner.restore()
    return _finish(planner, n, global_phase, zeros)


def _diagonal(m) -> bool:
    """Whether ``m`` (numpy ``(..., d, d)``) is exactly diagonal; a circuit SWAP is not."""
    if isinstance(m, str):
        return False
    if m.ndim == 2 and (m[0, 1] != 0 or m[1, 0] != 0 or m[-1, -2] != 0 or m[-2, -1] != 0):
        return False  # (most gates: no reduction needed)
    d = m.shape[-1]
    return not m.reshape(m.shape[:-2] + (d * d,))[..., :-1].reshape(m.shape[:-2] + (d - 1, d + 1))[..., 1:].any()


def _commuting(planner: "_Planner", run: List[tuple], pairs: List[Tuple[int, int]], index: int,
               lookahead: int) -> int:
    """A run of diagonal gates (they commute): one-qubit ones first, then the two-qubit ones
    nearest in the current layout first (earliest first among equals). Returns the new ``index``."""
    for m, qs in run:
        if len(qs) == 1:
            planner.one(m, qs[0])
    todo = [(m, qs) for m, qs in run if len(qs) == 2]
    after = index + len(todo)
    pos = planner.pos
    while todo:
        scan = todo[:_SCAN]
        j = min(range(len(scan)), key=lambda i: abs(pos[scan[i][1][0]] - pos[scan[i][1][1]]))
        m, (a, b) = todo.pop(j)
        window = [qs for _, qs in todo[:lookahead]]
        window += pairs[after:after + lookahead - len(window)]
        planner.two(m, a, b, window)
    return after


def _blocks(n: int, ops: Sequence[Tuple[Any, Tuple[int, ...]]], swap) -> List[tuple]:
    """The ops with consecutive gates on one logical pair multiplied into one ``(4, 4)`` block
    (one-qubit gates between them included); other one-qubit gates stay ops of their own, in an
    order the circuit allows."""
    out: List[list] = []
    open_ = [-1] * n  # qubit -> index in ``out`` of the last two-qubit block on it
    tail: List[List[Any]] = [[] for _ in range(n)]  # one-qubit gates on a qubit after its last block

    def flush(q):
        out.extend([u, (q,)] for u in tail[q])
        tail[q] = []
        open_[q] = -1

    for m, qs in ops:
        if len(qs) == 1:
            q = qs[0]
            if open_[q] < 0:
                out.append([m, qs])
            else:
                tail[q].append(m)
            continue
        a, b = qs
        k = open_[a]
        if not _is_swap(m) and k >= 0 and k == open_[b]:
            block, (x, y) = out[k]
            for u in tail[x]:
                block = _on_first(u) @ block
            for u in tail[y]:
                block = _on_second(u) @ block
            tail[x], tail[y] = [], []
            out[k][0] = (m if (a, b) == (x, y) else _swap_pair(m)) @ block
            continue
        flush(a)
        flush(b)
        out.append([m, (a, b)])
        if not _is_swap(m):
            open_[a] = open_[b] = len(out) - 1
    for q in range(n):
        flush(q)
    return [tuple(item) for item in out]


def _is_swap(m) -> bool:
    return isinstance(m, str) and m == "swap"


def _finish(planner: _Planner, n: int, global_phase: float, zeros: bool) -> Plan:
    gates = planner.gates
    torch_mode = any(isinstance(g, torch.Tensor) for g in gates) or any(
        isinstance(p, torch.Tensor) for p in planner.pending)
    ones = None
    if any(p is not None for p in planner.pending):
        eye = np.eye(2)
        ones = [p if p is not None else eye for p in planner.pending]
    if global_phase:
        phase = cmath.exp(1j * global_phase)
        if gates:
            gates[0] = phase * gates[0]
        elif ones is not None:
            ones[0] = phase * ones[0]
        else:
            ones = [np.eye(2)] * n
            ones[0] = phase * np.eye(2)
    stacked = _stack(gates, torch_mode) if gates else None
    stacked_ones = _stack(ones, torch_mode) if ones is not None else None
    for a in (stacked, stacked_ones):
        if a is not None and not bool((torch.isfinite(a) if torch_mode else np.isfinite(a)).all()):
            raise ValueError("a gate matrix contains NaN or infinite entries")
    stats = dict(planner.stats, gates=len(gates))
    return Plan(n, stacked, list(planner.firsts), stacked_ones, stats, zeros)


def _stack(mats: List[Any], torch_mode: bool):
    """``(P, d, d)``, or ``(B, P, d, d)`` when any matrix is per-sample ``(B, d, d)``."""
    batch = max((m.shape[0] for m in mats if m.ndim == 3), default=None)
    if torch_mode:
        ts = [m if isinstance(m, torch.Tensor) else torch.from_numpy(np.asarray(m)) for m in mats]
        dtype = torch.complex128 if any(t.is_complex() for t in ts) else torch.float64
        ts = [t.to(dtype) for t in ts]
        if batch is None:
            return torch.stack(ts)
        return torch.stack([t.expand(batch, *t.shape[-2:]) for t in ts], dim=1)
    if batch is None:
        return np.stack(mats)
    return np.stack([np.broadcast_to(m, (batch,) + m.shape[-2:]) for m in mats], axis=1)


def plan_circuit(circuit, lookahead: int = LOOKAHEAD, commute: bool = True, zeros: bool = False) -> Plan:
    """``plan`` of a ``Circuit``'s ops. Matrices come from ``circuit.gate_matrix`` (one build per
    distinct gate and scalar parameters); numpy unless a parameter is under autograd."""
    from .circuit import gate_matrix  # (circuit imports this module)

    numeric = True
    if torch.is_grad_enabled():
        for op in circuit.operations:
            for v in op.params:
                if isinstance(v, torch.Tensor) and v.requires_grad:
                    numeric = False
    # Keyed by the parameters themselves: floats by value, tensors by identity (the same tensor
    # gives the same matrix).
    cache: Dict[tuple, Any] = {}
    ops = []
    for op in circuit.operations:
        if op.name == "swap":
            ops.append(("swap", op.qubits))
            continue
        key = (op.name, op.params)
        m = cache.get(key)
        if m is None:
            m = gate_matrix(op)
            if numeric:
                m = m.detach().resolve_conj().numpy()
            cache[key] = m
        ops.append((m, op.qubits))
    return plan(circuit.n_qubits, ops, circuit.global_phase, lookahead, commute=commute, zeros=zeros)


def run(state, p: Plan):
    """Apply plan ``p`` to ``state`` (an ``MPS``, in place; promoted to complex where the plan's
    gates are complex) and return it."""
    if p.n_qubits != state.n_qubits:
        raise ValueError(f"the plan is for {p.n_qubits} qubits, the state has {state.n_qubits}")
    if p.zeros and not _is_zeros(state):
        raise ValueError("the plan was made for |0...0> (zeros=True) and the state is another one")
    if p.is_complex and not state.dtype.is_complex:
        state.promote(torch.complex128 if state.dtype == torch.float64 else torch.complex64)
    program = p.program(state.dtype, state.device)
    if program:
        state.apply_program(program)
    return state


def _is_zeros(state) -> bool:
    """Whether every sample of ``state`` is ``|0...0>`` up to a norm (bonds of 1, no ``|1>`` part)."""
    ts = state.tensors
    if any(t.shape[1] != 1 or t.shape[3] != 1 for t in ts):
        return False
    sites = torch.cat([t.detach().reshape(-1, 2) for t in ts])  # (n·B, 2): one check for every site
    return not bool(sites[:, 1].any())
