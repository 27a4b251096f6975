"""PennyLane device ``qlam.mps``: qlam_tn's MPS engine behind PennyLane's device API.

Registered through the ``pennylane.plugins`` entry point (``pip install -e ".[pennylane]"``)::

    import pennylane as qml, torch
    dev = qml.device("qlam.mps", wires=30, max_bond_dim=32)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(theta):                       # theta: (layers, 30) torch tensor
        for layer in theta:
            for q in range(30):
                qml.RY(layer[q], wires=q)
            for q in range(0, 29, 2):
                qml.CNOT([q, q + 1])
        return qml.expval(qml.Z(0) @ qml.Z(29))

    circuit(theta).backward()                  # gradients through the MPS engine

Importing this module imports PennyLane; ``import qlam_tn`` does not.

What the device does with a circuit (``preprocess_transforms``):

* mid-circuit measurements are deferred (``qml.defer_measurements``, no postselection);
* every operation is kept if qlam_tn has it by name (``NAMED_GATES``), or it acts on one or two
  wires and has a matrix (``QubitUnitary``, ``Rot``, ``Adjoint(S)``, controlled gates, ...);
  anything else is decomposed by PennyLane (an op with a matrix but no decomposition, on at
  most ``MAX_LOCAL_WIRES`` wires, through ``QubitUnitary``), and an operation without either
  raises ``DeviceError`` naming it. A ``StatePrep`` / ``BasisState`` at the start of the circuit
  sets the initial MPS (``StatePrep`` through the dense vector, so small ``n`` only);
* parameter broadcasting is unrolled into one circuit per parameter set;
* with shots, measurements are split into qubit-wise commuting groups (one sampling each).

Measurements. Analytic: ``expval`` / ``var`` of Pauli words and their sums (Hamiltonians,
read off the MPS one word at a time) and of any observable with a matrix on at most
``MAX_LOCAL_WIRES`` wires (``Hermitian``, ``Projector``, ...; through its reduced density
matrix), ``probs`` and ``density_matrix`` on at most ``MAX_LOCAL_WIRES`` wires (marginals,
``2**k`` / ``4**k`` entries for ``k`` wires); all of these come from ``qlam_tn.environments``,
whose left/right environments one circuit's measurements share. ``state`` and the other state
measurements (purity, entropies, ...) go through the dense vector, for at most
``MAX_DENSE_WIRES`` wires.
With shots: ``sample``, ``counts``, ``expval``, ``var`` and ``probs`` from exact MPS sampling
in the observables' eigenbasis.

Gradients. ``diff_method="backprop"`` with the torch interface: the gate parameters stay torch
tensors through the engine (SVD-based canonical moves and truncation have a backward), so one
backward pass gives the whole gradient. Every other interface gets PennyLane's own methods
(parameter-shift, finite differences), which only need ``execute``.

Truncation. ``max_bond_dim=None`` keeps every singular value above ``cutoff`` (exact up to it);
with a cap, results are those of the truncated state (normalised). The weight cut by
truncation is reported to the device tracker (``discarded_weight``, with ``max_bond`` the
largest bond dimension reached)::

    with qml.Tracker(dev) as tracker:
        circuit(theta)
    tracker.history["discarded_weight"]
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Sequence

import numpy as np
import pennylane as qml
import torch
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.modifiers import simulator_tracking, single_tape_support
from pennylane.devices.preprocess import decompose, validate_device_wires, validate_measurements, validate_observables
from pennylane.exceptions import DecompositionUndefinedError, DeviceError
from pennylane.math import Interface
from pennylane.measurements import (
    DensityMatrixMP,
    ExpectationMP,
    ProbabilityMP,
    SampleMeasurement,
    StateMeasurement,
    VarianceMP,
)
from pennylane.operation import StatePrepBase
from pennylane.ops import SProd, Sum

from . import planner
from .circuit import GATES
from .environments import MAX_MARGINAL_QUBITS, MPSEnvironment
from .measure import pauli_matrix
from .mps import MPS
from .state import complex_dtype_of

try:  # PennyLane >= 0.45
    from pennylane.transforms.core import CompilePipeline
except ImportError:  # PennyLane 0.43 / 0.44
    from pennylane.transforms.core import TransformProgram as CompilePipeline

__all__ = ["QLAMMPSDevice", "MAX_LOCAL_WIRES", "MAX_DENSE_WIRES", "NAMED_GATES"]

MAX_LOCAL_WIRES = MAX_MARGINAL_QUBITS
"""Most wires of a matrix observable, ``probs`` or ``density_matrix`` (``4**k`` entries)."""

MAX_DENSE_WIRES = 24
"""Most wires for ``state()`` and the other measurements that need the dense vector."""

_MAX_LOCAL_BYTES = 2 ** 31
"""Memory refused for one reduced contraction (``2**k``/``4**k`` entries times ``χ²``)."""

# PennyLane name -> qlam_tn.circuit.GATES name (same matrix, same wire order: the first wire
# is the most significant bit, the control of a controlled gate). Real gates stay real.
NAMED_GATES: Dict[str, str] = {
    "Hadamard": "h", "PauliX": "x", "PauliY": "y", "PauliZ": "z",
    "S": "s", "T": "t", "SX": "sx", "RX": "rx", "RY": "ry", "RZ": "rz", "PhaseShift": "p",
    "CNOT": "cx", "CY": "cy", "CZ": "cz", "CH": "ch", "SWAP": "swap", "ISWAP": "iswap",
    "IsingXX": "rxx", "IsingYY": "ryy", "IsingZZ": "rzz",
    "CRX": "crx", "CRY": "cry", "CRZ": "crz", "ControlledPhaseShift": "cp",
}

_DTYPES = {"complex128": torch.complex128, "complex64": torch.complex64}


def _supported_operation(op: qml.operation.Operator) -> bool:
    """Kept as is by ``decompose``: named gates, identities, GlobalPhase, any 1-2 wire op with a matrix."""
    if op.name in NAMED_GATES or isinstance(op, (qml.Identity, qml.GlobalPhase)):
        return True
    return op.has_matrix and 1 <= len(op.wires) <= 2 and not isinstance(op, StatePrepBase)


def _decomposition(op: qml.operation.Operator) -> List[qml.operation.Operator]:
    """PennyLane's decomposition of ``op``; an op without one but with a matrix on at most
    ``MAX_LOCAL_WIRES`` wires becomes a ``QubitUnitary`` (which PennyLane decomposes)."""
    if op.has_decomposition:
        return op.decomposition()
    if op.has_matrix and len(op.wires) <= MAX_LOCAL_WIRES:
        return [qml.QubitUnitary(op.matrix(), wires=op.wires)]
    raise DecompositionUndefinedError(f"{op.name} has no decomposition")


def _supported_observable(obs: qml.operation.Operator) -> bool:
    if obs.pauli_rep is not None:
        return True
    if obs.has_matrix and len(obs.wires) <= MAX_LOCAL_WIRES:
        return True
    if isinstance(obs, SProd):
        return _supported_observable(obs.base)
    if isinstance(obs, Sum):
        return all(_supported_observable(o) for o in obs.operands)
    return False


def _analytic_measurement(mp) -> bool:
    return isinstance(mp, (ExpectationMP, VarianceMP, ProbabilityMP, StateMeasurement))


def _sample_measurement(mp) -> bool:
    return isinstance(mp, SampleMeasurement)


@qml.transform
def _split_non_commuting_with_shots(tape):
    """With shots, one tape per qubit-wise commuting group (each is sampled once)."""
    if not tape.shots:
        return (tape,), lambda results: results[0]
    return qml.transforms.split_non_commuting(tape, grouping_strategy="qwc")


# ----------------------------------------------------------------------------- marginals

def _check_marginal_memory(psi: MPS, sites: Sequence[int], diagonal: bool) -> None:
    """Refuse a marginal whose sweep would carry more than ``_MAX_LOCAL_BYTES``: ``2**k``
    (``diagonal``) or ``4**k`` open entries, each ``χ²`` wide, over the sites it spans."""
    lo, hi = min(sites), max(sites)
    span = psi.tensors[lo:hi + 1]
    chi = max([t.shape[3] for t in span] + [span[0].shape[1]])
    entries = 2 ** len(sites) if diagonal else 4 ** len(sites)
    need = psi.batch * entries * chi * chi * span[0].element_size()
    if need > _MAX_LOCAL_BYTES:
        raise DeviceError(f"a marginal on {len(sites)} wires at bond dimension {chi} needs "
                          f"{need / 2 ** 30:.1f} GiB; measure fewer wires")


def _as_complex(t: torch.Tensor) -> torch.Tensor:
    return t.to(complex_dtype_of(t.dtype))


def _real_coefficient(c):
    if isinstance(c, torch.Tensor):
        return c.real if c.is_complex() else c
    return float(np.real(c))


class _Run:
    """One circuit being simulated: the state, and how wire labels map to MPS sites."""

    def __init__(self, psi: MPS, wire_order: qml.wires.Wires):
        self.psi = psi
        self.wire_order = wire_order
        self.site = {w: i for i, w in enumerate(wire_order)}
        self._environment: Optional[MPSEnvironment] = None

    def sites(self, wires) -> List[int]:
        return [self.site[w] for w in wires]

    def environment(self) -> MPSEnvironment:
        """The state's environments, shared by every measurement until the next operation."""
        if self._environment is None:
            self._environment = MPSEnvironment(self.psi.tensors, self.psi.center)
        return self._environment

    def probs(self, wires) -> torch.Tensor:
        """``(B, 2**k)`` computational-basis probabilities of ``wires`` (in that order)."""
        sites = self.sites(wires)
        _check_marginal_memory(self.psi, sites, diagonal=True)
        return self.environment().probs(sites)

    def density_matrix(self, wires) -> torch.Tensor:
        """``(B, 2**k, 2**k)`` reduced density matrix of ``wires`` (big-endian in that order)."""
        sites = self.sites(wires)
        _check_marginal_memory(self.psi, sites, diagonal=False)
        return self.environment().rdm(sites)

    # ------------------------------------------------------------------ operations
    def apply_all(self, ops: Sequence[qml.operation.Operator], zeros: bool = False) -> None:
        """The circuit's operations planned as a whole (``qlam_tn.planner``: fused neighbour gates,
        a qubit layout instead of SWAP chains, one compiled call); ``apply`` one by one is the
        reference it is tested against. ``zeros``: the state is ``|0...0>`` (untouched qubits then
        move for free)."""
        self._environment = None
        gates = []
        for op in ops:
            if isinstance(op, qml.Identity):
                continue
            if isinstance(op, qml.GlobalPhase):
                phi = _param(op.parameters[0])
                phase = torch.exp(-1j * torch.as_tensor(phi, dtype=torch.float64))
                gates.append((_numeric(phase * torch.eye(2, dtype=torch.complex128)), (0,)))
                continue
            if op.name in NAMED_GATES:
                matrix = GATES[NAMED_GATES[op.name]].build(*[_param(p) for p in op.parameters])
            else:
                matrix = torch.as_tensor(op.matrix())
            if matrix.dim() != 2:
                raise DeviceError(f"{op.name}: a broadcast parameter reached the device (broadcast_expand "
                                  "should have split it)")
            gates.append((_numeric(matrix), tuple(self.sites(op.wires))))
        planner.run(self.psi, planner.plan(self.psi.n_qubits, gates, zeros=zeros))

    def apply(self, op: qml.operation.Operator) -> None:
        if isinstance(op, qml.Identity):
            return
        self._environment = None
        if isinstance(op, qml.GlobalPhase):
            phi = _param(op.parameters[0])
            phase = torch.exp(-1j * torch.as_tensor(phi, dtype=torch.float64))
            self.psi.apply(phase * torch.eye(2, dtype=torch.complex128), 0)
            return
        if op.name in NAMED_GATES:
            matrix = GATES[NAMED_GATES[op.name]].build(*[_param(p) for p in op.parameters])
        else:
            matrix = torch.as_tensor(op.matrix())
        qubits = self.sites(op.wires)
        self.psi.apply(matrix, qubits[0] if len(qubits) == 1 else tuple(qubits))

    # ------------------------------------------------------------------ analytic values
    def expval(self, obs) -> torch.Tensor:
        """``(B,)`` expectation of a supported observable."""
        if obs.pauli_rep is not None:
            return self._pauli_sentence(obs.pauli_rep)
        if obs.has_matrix and len(obs.wires) <= MAX_LOCAL_WIRES:
            return self._matrix_expvals([torch.as_tensor(obs.matrix())], obs.wires)[0]
        if isinstance(obs, SProd):
            return _real_coefficient(obs.scalar) * self.expval(obs.base)
        if isinstance(obs, Sum):
            return sum(self.expval(o) for o in obs.operands)
        raise DeviceError(f"observable {obs!r} is not supported on qlam.mps")

    def var(self, obs) -> torch.Tensor:
        """``(B,)`` variance ``<O²> - <O>²``."""
        if obs.pauli_rep is not None:
            ps = obs.pauli_rep
            return self._pauli_sentence(ps @ ps) - self._pauli_sentence(ps) ** 2
        if obs.has_matrix and len(obs.wires) <= MAX_LOCAL_WIRES:
            m = torch.as_tensor(obs.matrix())
            mean, square = self._matrix_expvals([m, m @ m], obs.wires)
            return square - mean ** 2
        raise DeviceError(f"var({obs!r}) on qlam.mps needs a sum of Pauli words or an observable on at most "
                          f"{MAX_LOCAL_WIRES} wires")

    def _pauli_sentence(self, sentence) -> torch.Tensor:
        dtype, device = self.psi.dtype, self.psi.device
        real = dtype.to_real() if dtype.is_complex else dtype
        total = torch.zeros(self.psi.batch, dtype=real)
        for word, coeff in sentence.items():
            if len(word) == 0:
                value = torch.ones(self.psi.batch, dtype=real)
            else:
                value = self.environment().expect_product(
                    {self.site[w]: pauli_matrix(p, dtype, device) for w, p in word.items()})
            total = total + _real_coefficient(coeff) * value
        return total

    def _matrix_expvals(self, matrices: Sequence[torch.Tensor], wires) -> List[torch.Tensor]:
        """``(B,)`` ``tr(ρ M)`` for each ``(2**k, 2**k)`` matrix, ρ the reduced state of ``wires``."""
        rho = _as_complex(self.density_matrix(wires))
        return [torch.einsum("bij,ji->b", rho, m.to(rho.dtype)).real for m in matrices]

    def eigvals_expval(self, mp, squared: bool = False) -> torch.Tensor:
        """``(B,)`` ``Σ p λ`` (or ``Σ p λ²``) over the eigenvalues of a measurement without
        an observable (a deferred mid-circuit measurement value)."""
        lam = torch.as_tensor(np.asarray(mp.eigvals(), dtype=np.float64))
        p = self.probs(mp.wires).to(torch.float64)
        return p @ (lam ** 2 if squared else lam)

    def dense(self) -> torch.Tensor:
        """The state vector ``(2**n,)`` (complex), for the dense state measurements."""
        n = len(self.wire_order)
        if n > MAX_DENSE_WIRES:
            raise DeviceError(f"this measurement needs the dense state of {n} wires; qlam.mps builds it "
                              f"for at most {MAX_DENSE_WIRES}")
        return _as_complex(self.psi.to_dense()[0])


def _param(p):
    """A gate parameter for qlam_tn's builders: torch tensors keep their graph."""
    if isinstance(p, torch.Tensor):
        return p
    return float(np.real(p))


@simulator_tracking
@single_tape_support
class QLAMMPSDevice(Device):
    """qlam_tn's batched MPS engine as a PennyLane device (``qml.device("qlam.mps", ...)``).

    Args:
        wires: number of wires or their labels; ``None`` takes each circuit's wires.
        shots: default shots (PennyLane >= 0.45 prefers ``qml.set_shots`` on the QNode).
        max_bond_dim: bond dimension cap, ``None`` for no cap (exact up to ``cutoff``).
        cutoff: singular values are cut while their relative squared sum stays below it
            (``cutoff_mode="rsum2"``; see ``qlam_tn.TruncationPolicy`` for the other modes).
        cutoff_mode: ``"rsum2"`` (default), ``"sum2"``, ``"rel"`` or ``"abs"``.
        dtype: ``torch.complex128`` (default) or ``torch.complex64`` (or their names). Circuits
            of real gates (RY, CNOT, CZ, H, ...) run in the matching real dtype until the first
            complex gate.
        seed: seed of the sampler's generator (``None``: fresh entropy).
    """

    _device_options = ("max_bond_dim", "cutoff", "cutoff_mode", "dtype")

    def __init__(self, wires=None, shots=None, max_bond_dim: Optional[int] = None, cutoff: float = 1e-12,
                 cutoff_mode: str = "rsum2", dtype=torch.complex128, seed: Optional[int] = None):
        super().__init__(wires=wires, shots=shots)
        if isinstance(dtype, str):
            dtype = _DTYPES.get(dtype)
        elif not isinstance(dtype, torch.dtype):
            dtype = _DTYPES.get(np.dtype(dtype).name)
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype must be complex128 or complex64, got {dtype!r}")
        # Validates max_bond_dim / cutoff / cutoff_mode now rather than at the first circuit.
        MPS.zeros(1, max_bond=max_bond_dim, cutoff=cutoff, cutoff_mode=cutoff_mode)
        self._max_bond_dim = max_bond_dim
        self._cutoff = cutoff
        self._cutoff_mode = cutoff_mode
        self._dtype = dtype
        self._generator = torch.Generator()
        self._generator.manual_seed(seed if seed is not None else int(np.random.SeedSequence().entropy % 2 ** 63))

    @property
    def name(self) -> str:
        return "qlam.mps"

    # ------------------------------------------------------------------ configuration
    def supports_derivatives(self, execution_config: Optional[ExecutionConfig] = None, circuit=None) -> bool:
        """Backprop through the engine, analytic circuits, torch (or no) interface."""
        if execution_config is None or execution_config.gradient_method not in ("backprop", "best"):
            return False
        interface = Interface(execution_config.interface)
        if interface not in (Interface.TORCH, Interface.NUMPY, Interface.AUTO):
            return False
        return circuit is None or not circuit.shots

    def setup_execution_config(self, config: Optional[ExecutionConfig] = None, circuit=None) -> ExecutionConfig:
        config = config or ExecutionConfig()
        if config.mcm_config.mcm_method not in (None, "deferred"):
            raise DeviceError(f"qlam.mps only defers mid-circuit measurements (mcm_method='deferred'), "
                              f"not {config.mcm_config.mcm_method!r}")
        updated = {"mcm_config": replace(config.mcm_config, mcm_method="deferred")}
        if config.gradient_method == "best" and self.supports_derivatives(config, circuit):
            updated["gradient_method"] = "backprop"
        if updated.get("gradient_method", config.gradient_method) == "backprop":
            updated["use_device_gradient"] = True
            updated["grad_on_execution"] = False
        options = dict(config.device_options)
        for option in self._device_options:
            options.setdefault(option, getattr(self, f"_{option}"))
        unknown = set(options) - set(self._device_options)
        if unknown:
            raise DeviceError(f"unknown device options {sorted(unknown)} for qlam.mps")
        updated["device_options"] = options
        return replace(config, **updated)

    def preprocess_transforms(self, execution_config: Optional[ExecutionConfig] = None) -> CompilePipeline:
        program = CompilePipeline()
        program.add_transform(qml.defer_measurements, allow_postselect=False)
        program.add_transform(decompose, stopping_condition=_supported_operation, skip_initial_state_prep=True,
                              decomposer=_decomposition, name=self.name, device_wires=self.wires)
        program.add_transform(validate_device_wires, self.wires, name=self.name)
        program.add_transform(validate_measurements, analytic_measurements=_analytic_measurement,
                              sample_measurements=_sample_measurement, name=self.name)
        program.add_transform(validate_observables, stopping_condition=_supported_observable, name=self.name)
        program.add_transform(qml.transforms.broadcast_expand)
        program.add_transform(_split_non_commuting_with_shots)
        return program

    # ------------------------------------------------------------------ execution
    def execute(self, circuits, execution_config: Optional[ExecutionConfig] = None):
        options = dict(execution_config.device_options) if execution_config is not None else {}
        return tuple(self._simulate(c, options) for c in circuits)

    def _simulate(self, circuit, options):
        wire_order = self.wires if self.wires is not None else circuit.wires
        if len(wire_order) == 0:
            raise DeviceError("qlam.mps needs at least one wire")
        opt = {o: options.get(o, getattr(self, f"_{o}")) for o in self._device_options}
        run = _Run(self._initial_state(circuit.operations, wire_order, opt), wire_order)
        ops = circuit.operations
        prepared = bool(ops) and isinstance(ops[0], StatePrepBase)
        run.apply_all(ops[1:] if prepared else ops, zeros=not prepared)
        if self.tracker.active:
            self.tracker.update(discarded_weight=float(run.psi.discarded_weight[0]),
                                max_bond=max(run.psi.bond_dims, default=1))

        if circuit.shots:
            return self._sampled(run, circuit)
        use_torch = any(isinstance(p, torch.Tensor) for p in circuit.get_parameters(trainable_only=False))
        results = tuple(_output(self._analytic(run, mp), use_torch) for mp in circuit.measurements)
        return results[0] if len(results) == 1 else results

    def _initial_state(self, ops, wire_order, opt) -> MPS:
        n = len(wire_order)
        real = torch.float64 if opt["dtype"] == torch.complex128 else torch.float32
        policy = dict(max_bond=opt["max_bond_dim"], cutoff=opt["cutoff"], cutoff_mode=opt["cutoff_mode"])
        first = ops[0] if ops else None
        if isinstance(first, qml.BasisState):
            bits = np.asarray(qml.math.toarray(first.parameters[0]), dtype=int).reshape(-1)
            vectors = torch.zeros(n, 2, dtype=real)
            vectors[:, 0] = 1
            for w, bit in zip(first.wires, bits):
                vectors[wire_order.index(w)] = torch.tensor([1 - bit, bit], dtype=real)
            return MPS.product_state(vectors, **policy)
        if isinstance(first, StatePrepBase):
            if n > MAX_DENSE_WIRES:
                raise DeviceError(f"{first.name} at the start goes through the dense vector: at most "
                                  f"{MAX_DENSE_WIRES} wires, got {n}")
            vec = first.state_vector(wire_order=wire_order)
            vec = torch.as_tensor(vec) if not isinstance(vec, torch.Tensor) else vec
            return MPS.from_dense(vec.reshape(-1).to(opt["dtype"]), **policy)
        return MPS.zeros(n, dtype=real, **policy)

    def _analytic(self, run: _Run, mp):
        if isinstance(mp, ExpectationMP):
            return run.expval(mp.obs)[0] if mp.obs is not None else run.eigvals_expval(mp)[0]
        if isinstance(mp, VarianceMP):
            if mp.obs is not None:
                return run.var(mp.obs)[0]
            return run.eigvals_expval(mp, squared=True)[0] - run.eigvals_expval(mp)[0] ** 2
        if isinstance(mp, ProbabilityMP):
            if mp.obs is not None:
                rotated = _Run(run.psi.copy(), run.wire_order)
                for g in mp.obs.diagonalizing_gates():
                    rotated.apply(g)
                run = rotated
            wires = mp.wires if len(mp.wires) else run.wire_order
            _check_local(len(wires), "probs")
            return run.probs(wires)[0]
        if isinstance(mp, DensityMatrixMP):
            wires = mp.wires if len(mp.wires) else run.wire_order
            _check_local(len(wires), "density_matrix")
            return _as_complex(run.density_matrix(wires)[0])
        return mp.process_state(run.dense(), run.wire_order)

    def _sampled(self, run: _Run, circuit):
        """Sample once in the common eigenbasis of the (qubit-wise commuting) measurements."""
        rotated = _Run(run.psi.copy(), run.wire_order)
        for g in circuit.diagonalizing_gates:
            for op in _decomposed(g):
                rotated.apply(op)
        bits = rotated.psi.sample(circuit.shots.total_shots, generator=self._generator)[0].numpy()
        groups = []
        start = 0
        for shots in circuit.shots:  # one entry per shot group of a shot vector
            values = tuple(mp.process_samples(bits, run.wire_order, shot_range=(start, start + shots))
                           for mp in circuit.measurements)
            groups.append(values[0] if len(values) == 1 else values)
            start += shots
        return tuple(groups) if circuit.shots.has_partitioned_shots else groups[0]


def _numeric(matrix: torch.Tensor):
    """A gate matrix as the planner multiplies it fastest: numpy, unless autograd records it."""
    if matrix.requires_grad and torch.is_grad_enabled():
        return matrix
    return matrix.detach().resolve_conj().cpu().numpy()


def _check_local(k: int, what: str) -> None:
    if k > MAX_LOCAL_WIRES:
        raise DeviceError(f"{what} on {k} wires: qlam.mps contracts marginals on at most {MAX_LOCAL_WIRES} "
                          "wires; measure fewer wires or sample")


def _decomposed(op) -> List[qml.operation.Operator]:
    """``op`` as operations ``_Run.apply`` takes (a diagonalizing gate may act on more wires)."""
    if _supported_operation(op):
        return [op]
    return [leaf for sub in _decomposition(op) for leaf in _decomposed(sub)]


def _output(value, use_torch: bool):
    """A result as the interface expects it: a torch tensor under backprop, numpy otherwise."""
    if use_torch or not isinstance(value, torch.Tensor):
        return value
    return value.detach().cpu().numpy()
