"""Exact tensor-network oracle: a circuit contracted as a whole network with cotengra.

The independent reference for the MPS beyond statevector range (40-60 qubits, shallow
circuits): nothing is truncated, so the MPS's true error can be measured, not only its
discarded weight.

A circuit is ``n_qubits`` and a sequence of ops ``(gate, qubits)`` applied in order to
``|0...0>``:

- ``gate``: a ``(2, 2)`` matrix for one qubit, ``(4, 4)`` for two (``2^k x 2^k`` for k), a
  torch tensor or numpy array; converted to complex128 numpy;
- ``qubits``: a tuple of distinct ints (an int for one qubit). Qubit 0 is the leftmost bit of
  a basis label (big-endian), and a k-qubit gate's row index is the big-endian label of
  ``|q0 q1 ...>`` in the order given, e.g. ``CNOT`` on ``(0, 1)`` flips qubit 1 when qubit 0
  is 1.

The network is quimb's ``Circuit`` (one tensor per gate, no splitting or truncation), reduced
by quimb's local simplifications (exact up to their 1e-12 tolerance) and contracted along a
cotengra hyper-optimised tree.
Local expectations keep only the backward light cone of the operator's qubits: a gate
outside it meets its adjoint and cancels, ``U^dagger U = I``. That needs unitary gates, so
:meth:`ExactCircuit.expectation` checks unitarity (to ``UNITARY_ATOL``; a float32 gate is
unitary only to ~1e-7, and the oracle is then exact only to that level).

Example::

    from qlam_tn.contraction import oracle
    ops = [(H, (0,)), (CNOT, (0, 1))]
    oracle.amplitude(2, ops, "11")          # 0.7071...
    oracle.expectation(2, ops, "Z0 Z1")     # 1.0
    oracle.statevector(2, ops)              # (4,) complex128
"""
from __future__ import annotations

import warnings

import numpy as np

from qlam_tn.measure import parse_pauli

with warnings.catch_warnings():
    # cotengra warns at import that the optional kahypar is missing; greedy trees suffice here
    warnings.simplefilter("ignore")
    import cotengra
    import quimb.tensor as qtn

STATEVECTOR_MAX_QUBITS = 24
UNITARY_ATOL = 1e-6

_PAULIS = {
    "I": np.eye(2, dtype=np.complex128),
    "X": np.array([[0, 1], [1, 0]], dtype=np.complex128),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=np.complex128),
    "Z": np.array([[1, 0], [0, -1]], dtype=np.complex128),
}

_default_optimizer = None


def default_optimizer(max_repeats: int = 16):
    """A cotengra ``ReusableHyperOptimizer`` tuned for shallow circuits.

    Greedy trees with ``max_repeats`` sampled hyper-parameters, no subtree reconfiguration
    and no worker processes: on shallow circuits (50 qubits, 3 brickwork layers) the full default
    search spends many times longer to find a tree no cheaper than this one (docs/benchmarks.md,
    "Measured once"). Trees are cached by network
    structure, so repeated contractions of the same circuit shape plan once. Pass another
    cotengra optimizer as ``optimize=`` for deep circuits.
    """
    return cotengra.ReusableHyperOptimizer(
        methods=("greedy",),
        max_repeats=max_repeats,
        reconf_opts=None,
        parallel=False,
        progbar=False,
    )


def _optimizer(optimize):
    global _default_optimizer
    if optimize is not None:
        return optimize
    if _default_optimizer is None:
        _default_optimizer = default_optimizer()
    return _default_optimizer


def _as_matrix(gate, index: int) -> np.ndarray:
    if hasattr(gate, "detach"):
        gate = gate.detach().cpu().numpy()
    m = np.asarray(gate)
    if m.dtype.kind not in "biufc":
        raise ValueError(f"op {index}: gate has non-numeric dtype {m.dtype}")
    m = m.astype(np.complex128)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"op {index}: gate has non-finite entries")
    return m


def _check_ops(n_qubits: int, ops) -> list:
    """Validate ops and return ``[(matrix (2^k, 2^k) complex128, qubits tuple), ...]``."""
    checked = []
    for index, op in enumerate(ops):
        if not isinstance(op, (tuple, list)) or len(op) != 2:
            raise ValueError(f"op {index} must be a pair (gate, qubits), got {op!r}")
        gate, qubits = op
        if isinstance(qubits, (int, np.integer)):
            qubits = (qubits,)
        qubits = tuple(qubits)
        for q in qubits:
            if not isinstance(q, (int, np.integer)) or isinstance(q, bool):
                raise ValueError(f"op {index}: qubit {q!r} is not an int")
            if not 0 <= q < n_qubits:
                raise ValueError(
                    f"op {index} acts on qubit {q}, but the circuit has {n_qubits} qubits "
                    f"(0..{n_qubits - 1})"
                )
        if not qubits:
            raise ValueError(f"op {index} acts on no qubit")
        if len(set(qubits)) != len(qubits):
            raise ValueError(f"op {index}: qubits {qubits} are not distinct")
        m = _as_matrix(gate, index)
        dim = 2 ** len(qubits)
        if m.shape != (dim, dim):
            raise ValueError(
                f"op {index}: a gate on {len(qubits)} qubit(s) must have shape "
                f"({dim}, {dim}), got {tuple(m.shape)}"
            )
        checked.append((m, tuple(int(q) for q in qubits)))
    return checked


class ExactCircuit:
    """A validated circuit and its quimb tensor network, built once, contracted exactly.

    Args:
        n_qubits: number of qubits n >= 1.
        ops: sequence of ``(gate, qubits)`` (see the module docstring).
        optimize: cotengra optimizer for the contraction trees; ``None`` for
            :func:`default_optimizer` (shared, trees cached by network structure).
    """

    def __init__(self, n_qubits: int, ops, optimize=None):
        if not isinstance(n_qubits, (int, np.integer)) or isinstance(n_qubits, bool) or n_qubits < 1:
            raise ValueError(f"n_qubits must be a positive int, got {n_qubits!r}")
        self.n_qubits = int(n_qubits)
        self.ops = _check_ops(self.n_qubits, ops)
        self.optimize = _optimizer(optimize)
        # one tensor per gate: splitting gates would truncate at quimb's default cutoff
        self.circuit = qtn.Circuit(self.n_qubits, gate_contract=False)
        for m, qubits in self.ops:
            self.circuit.apply_gate_raw(m, qubits)

    def amplitude(self, bitstring) -> complex:
        """``<x|psi>`` for a bitstring ``x``: a string of '0'/'1' or a sequence of 0/1,
        qubit 0 first."""
        bits = [str(int(b)) if b in (0, 1, "0", "1") else None for b in bitstring]
        if len(bits) != self.n_qubits or None in bits:
            raise ValueError(
                f"bitstring {bitstring!r} must be {self.n_qubits} bits of 0/1, qubit 0 first"
            )
        value = self.circuit.amplitude("".join(bits), optimize=self.optimize)
        return complex(value)

    def expectation(self, pauli) -> float:
        """``<psi|P|psi>`` for a Pauli string P (``"Z0"``, ``"X3 Z4"`` or ``{3: "X", 4: "Z"}``),
        contracting only the backward light cone of P's qubits. Needs unitary gates."""
        terms = parse_pauli(pauli, self.n_qubits)
        for index, (m, _) in enumerate(self.ops):
            err = np.abs(m.conj().T @ m - np.eye(len(m))).max()
            if err > UNITARY_ATOL:
                raise ValueError(
                    f"op {index} is not unitary (|U^dagger U - I| = {err:.1e}); light-cone "
                    "cancellation needs unitary gates"
                )
        if not terms:
            return 1.0
        where = tuple(terms)
        rho = self.circuit.get_rdm_lightcone_simplified(where)
        for q, p in terms.items():
            # bra index first: the network is <psi|_b P_bk |psi>_k
            inds = (self.circuit.bra_site_ind(q), self.circuit.ket_site_ind(q))
            rho |= qtn.Tensor(_PAULIS[p], inds=inds)
        rho.full_simplify_(output_inds=())
        value = rho.contract(all, output_inds=(), optimize=self.optimize)
        return float(np.real(value))

    def statevector(self) -> np.ndarray:
        """The dense state, shape ``(2**n,)`` complex128, big-endian; n <= 24."""
        if self.n_qubits > STATEVECTOR_MAX_QUBITS:
            raise ValueError(
                f"statevector of {self.n_qubits} qubits needs 2^{self.n_qubits} amplitudes; "
                f"the limit is {STATEVECTOR_MAX_QUBITS} qubits (use amplitude/expectation)"
            )
        psi = self.circuit.to_dense(optimize=self.optimize)
        return np.asarray(psi, dtype=np.complex128).reshape(-1)


def amplitude(n_qubits: int, ops, bitstring, optimize=None) -> complex:
    """``<x|psi>`` of the circuit ``ops`` on ``n_qubits`` (see :class:`ExactCircuit`)."""
    return ExactCircuit(n_qubits, ops, optimize).amplitude(bitstring)


def expectation(n_qubits: int, ops, pauli, optimize=None) -> float:
    """``<psi|P|psi>`` of a Pauli string with light-cone simplification (see
    :class:`ExactCircuit`)."""
    return ExactCircuit(n_qubits, ops, optimize).expectation(pauli)


def statevector(n_qubits: int, ops, optimize=None) -> np.ndarray:
    """The dense ``(2**n,)`` complex128 state of the circuit, big-endian, n <= 24."""
    return ExactCircuit(n_qubits, ops, optimize).statevector()
