"""Circuits with mid-circuit measurement, reset and classical control, run as sampled trajectories.

A circuit holding ``measure``, ``reset`` or a classically conditioned op is not one pure state:
each shot follows its own branch. ``run(circuit, shots)`` runs the ``S`` shots as the batch axis
of one state (``MPS`` or ``StateVector``, in chunks of at most ``max_batch``): a gate is applied
to every shot at once; a measurement draws one outcome per shot from its Born probability and
collapses that shot (``QuantumState.measure``); a conditioned op becomes a per-shot gate, the
op's matrix where the shot's classical bits read the value and the identity elsewhere. An
optional ``NoiseModel`` adds its channel after every gate as a per-shot Kraus jump
(``qlam_tn.noise``). Cost: one batched simulation of ``S`` states, linear in the circuit's length.

``counts(circuit, shots)`` returns what Qiskit Aer's ``result.get_counts()`` returns for the
same circuit: ``{"<bits>": count}``, each register written most significant bit first (clbit 0
rightmost), registers separated by a space, the last declared leftmost::

    c = qt.Circuit(2, n_clbits=2).h(0).measure(0, 0).x(1).c_if(0, 1).measure(1, 1)
    qt.simulate(c, shots=1000, seed=1)          # {'00': ~500, '11': ~500}

``run_reference`` is the plain version (one shot at a time, batch 1), kept beside the batched
path with the same signature; the tests hold both against Aer.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, NamedTuple, Optional

import torch

from . import statevector
from .circuit import Circuit, gate_matrix
from .mps import MPS
from .state import QuantumState, as_int, check_dtype, check_shots
from .statevector import StateVector

__all__ = ["TrajectoryResult", "run", "run_reference", "counts", "format_counts", "MAX_BATCH"]

MAX_BATCH = 4096
"""Default number of shots simulated together (one batch); more shots run in several chunks. The
statevector backend takes fewer where ``MAX_BATCH`` dense states would pass
``statevector.MAX_STATE_BYTES``."""


class TrajectoryResult(NamedTuple):
    """``clbits``: ``(S, n_clbits)`` int64, every shot's classical bits at the end;
    ``counts``: their histogram as Aer's ``get_counts()`` writes it."""

    clbits: torch.Tensor
    counts: Dict[str, int]


def format_counts(clbits: torch.Tensor, cregs) -> Dict[str, int]:
    """``{"<bits>": count}`` of the rows of ``clbits (S, n_clbits)``; ``cregs``: ``(name, size)``
    in declaration order. Qiskit's key: registers last-declared first, separated by a space,
    each written from its highest bit to bit 0."""
    rows, freq = torch.unique(clbits.cpu(), dim=0, return_counts=True)
    out: Counter = Counter()
    for row, n in zip(rows.tolist(), freq.tolist()):
        words, start = [], 0
        for _, size in cregs:
            words.append("".join(str(b) for b in reversed(row[start:start + size])))
            start += size
        out[" ".join(reversed(words))] += n
    return dict(out.most_common())


def _check(circuit: Circuit, shots, seed, generator, noise):
    if not isinstance(circuit, Circuit):
        raise TypeError(f"run needs a Circuit, got {type(circuit).__name__}")
    if shots is None:
        raise ValueError("this circuit measures, resets or has classical conditions (or noise was asked for): "
                         "it runs as sampled trajectories, so pass shots=S")
    shots = check_shots(shots)
    if circuit.n_clbits == 0 or not any(op.name == "measure" for op in circuit.operations):
        raise ValueError("the circuit measures nothing into classical bits: there are no counts to return "
                         "(add measure(q, c), or run without shots= to get the state)")
    if circuit.batch is not None:
        raise ValueError(f"the circuit has per-sample parameters (batch {circuit.batch}); with shots= the batch "
                         "axis holds the shots")
    if seed is not None and generator is not None:
        raise ValueError("pass seed= or generator=, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if noise is not None and not callable(getattr(noise, "after_gate", None)):
        raise TypeError(f"noise must be a qlam_tn.noise.NoiseModel, got {type(noise).__name__}")
    if seed is not None:
        generator = torch.Generator().manual_seed(as_int(seed, "seed"))
    return shots, generator


def _new_state(n: int, batch: int, backend: str, max_bond, cutoff, cutoff_mode, dtype, device) -> QuantumState:
    if backend == "statevector":
        if max_bond is not None:
            raise ValueError("max_bond applies to the mps backend; the statevector backend is exact")
        return StateVector.zeros(n, batch=batch, dtype=dtype, device=device)
    if backend != "mps":
        raise ValueError(f"backend must be 'mps' or 'statevector', got {backend!r}")
    return MPS.zeros(n, batch=batch, max_bond=max_bond, cutoff=cutoff, cutoff_mode=cutoff_mode, dtype=dtype,
                     device=device)


def _z_projectors(n_shots: int, mask: torch.Tensor, device) -> torch.Tensor:
    """Per-shot Kraus pairs ``(S, 2, 2, 2)``: the Z projectors where ``mask``, ``(I, 0)`` elsewhere
    (outcome 0 for sure and the state untouched: the op does not run in that shot)."""
    proj = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]], dtype=torch.float64, device=device)
    idle = torch.stack([torch.eye(2, dtype=torch.float64, device=device), torch.zeros(2, 2, dtype=torch.float64,
                                                                                       device=device)])
    return torch.where(mask.view(-1, 1, 1, 1), proj, idle).expand(n_shots, 2, 2, 2)


def _noise_after(state: QuantumState, noise, qubits, mask: Optional[torch.Tensor], generator) -> None:
    rate = noise.p if len(qubits) == 1 else noise.two_qubit_p
    if rate == 0:
        return
    if mask is None:
        noise.after_gate(state, qubits, generator)
        return
    kraus = noise.kraus(len(qubits)).to(state.device)  # (K, 2, 2)
    idle = torch.zeros_like(kraus)
    idle[0] = torch.eye(2, dtype=kraus.dtype, device=kraus.device)
    per_shot = torch.where(mask.view(-1, 1, 1, 1), kraus, idle)
    for q in qubits:
        state.apply_kraus(per_shot, q, generator)


def _run_chunk(circuit: Circuit, n_shots: int, generator, noise, make_state) -> torch.Tensor:
    """``(n_shots, n_clbits)`` classical bits of ``n_shots`` trajectories run as one batch."""
    state = make_state(n_shots)
    dev = state.device
    bits = torch.zeros(n_shots, circuit.n_clbits, dtype=torch.int64, device=dev)
    flip = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64, device=dev)
    eye2 = torch.eye(2, dtype=torch.float64, device=dev)
    for op in circuit.operations:
        mask = None
        if op.condition is not None:
            clbits, value = op.condition
            # Bit by bit, not as a weighted sum: a register of 64 bits or more would overflow int64.
            want = torch.tensor([(value >> k) & 1 for k in range(len(clbits))], dtype=torch.int64, device=dev)
            mask = (bits[:, list(clbits)] == want).all(-1)
            if not bool(mask.any()):
                continue
            if bool(mask.all()):
                mask = None
        q = op.qubits
        if op.name == "measure":
            if mask is None:
                out = state.measure(q[0], generator)[:, 0]
            else:
                out = state.apply_kraus(_z_projectors(n_shots, mask, dev), q[0], generator)
            c = op.params[0]
            bits[:, c] = out if mask is None else torch.where(mask, out, bits[:, c])
        elif op.name == "reset":
            if mask is None:
                state.reset(q[0], generator)
            else:
                out = state.apply_kraus(_z_projectors(n_shots, mask, dev), q[0], generator)
                state.apply(torch.where((out == 1).view(-1, 1, 1), flip, eye2), q[0])
        else:
            g = gate_matrix(op, dev)
            if mask is not None:
                eye = torch.eye(g.shape[-1], dtype=g.dtype, device=dev)
                g = torch.where(mask.view(-1, 1, 1), g, eye)
            state.apply(g, q if len(q) == 2 else q[0])
            if noise is not None:
                _noise_after(state, noise, q, mask, generator)
    return bits


def run(circuit: Circuit, shots: int, backend: str = "mps", seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None, noise=None, max_bond: Optional[int] = None,
        cutoff: float = 1e-12, cutoff_mode: str = "rsum2", dtype: torch.dtype = torch.complex128, device="cpu",
        max_batch: int = MAX_BATCH) -> TrajectoryResult:
    """Run ``shots`` trajectories of ``circuit`` from ``|0...0>``, ``max_batch`` shots per batch.

    Args:
        backend, max_bond, cutoff, cutoff_mode, dtype, device: the state's, as ``simulate``.
        seed / generator: reproducible draws (not both); neither: torch's global generator.
        noise: a ``qlam_tn.noise.NoiseModel`` applied after every gate (of a conditioned gate,
            only in the shots where it runs), or ``None``.
    Returns:
        ``TrajectoryResult(clbits (S, n_clbits), counts)``.
    """
    shots, generator = _check(circuit, shots, seed, generator, noise)
    try:
        ok = as_int(max_batch, "max_batch") >= 1
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"max_batch must be a positive int (shots simulated together), got {max_batch!r}")
    max_batch = as_int(max_batch, "max_batch")
    if backend == "statevector":
        # A chunk is one batched dense state: keep it within the size StateVector.zeros allows,
        # so a wide circuit runs in more, smaller chunks instead of being refused.
        per_shot = statevector.state_bytes(circuit.n_qubits, 1, check_dtype(dtype))
        max_batch = max(1, min(max_batch, statevector.MAX_STATE_BYTES // per_shot))

    def make_state(b):
        return _new_state(circuit.n_qubits, b, backend, max_bond, cutoff, cutoff_mode, dtype, device)

    chunks = []
    done = 0
    with torch.no_grad():
        while done < shots:
            b = min(max_batch, shots - done)
            chunks.append(_run_chunk(circuit, b, generator, noise, make_state))
            done += b
    clbits = torch.cat(chunks)
    return TrajectoryResult(clbits, format_counts(clbits, circuit.cregs))


def run_reference(circuit: Circuit, shots: int, backend: str = "mps", seed: Optional[int] = None,
                  generator: Optional[torch.Generator] = None, noise=None, max_bond: Optional[int] = None,
                  cutoff: float = 1e-12, cutoff_mode: str = "rsum2", dtype: torch.dtype = torch.complex128,
                  device="cpu", max_batch: int = MAX_BATCH) -> TrajectoryResult:
    """``run`` one shot at a time (batch 1, ``max_batch`` ignored): the plain reference."""
    return run(circuit, shots, backend=backend, seed=seed, generator=generator, noise=noise, max_bond=max_bond,
               cutoff=cutoff, cutoff_mode=cutoff_mode, dtype=dtype, device=device, max_batch=1)


def counts(circuit: Circuit, shots: int, **options) -> Dict[str, int]:
    """The classical register counts of ``run(circuit, shots, **options)``, as Aer's ``get_counts()``."""
    return run(circuit, shots, **options).counts
