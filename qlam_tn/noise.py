"""Gate noise as quantum trajectories: single-qubit Kraus channels and a ``NoiseModel``.

A channel ``ρ -> Σ_k K_k ρ K_k†`` is unravelled on a pure state: each sample draws one ``k`` with
probability ``||K_k ψ||² / ||ψ||²`` and continues from ``K_k ψ`` (renormalised). The average of
``|ψ><ψ|`` over draws is exactly the channel's output, so averages of observables over many
trajectories (or over a batch of samples, each with its own draws) converge to the density-matrix
result, with a statistical error ``~1/sqrt(trajectories)``. The engine stays pure-state: an MPS
keeps its bond dimensions (a jump is a single-site operator, applied at the orthogonality
centre) and a run stays linear in the number of gates. Channels follow Qiskit Aer's definitions
(``qiskit_aer.noise.depolarizing_error(p, 1)``, ``amplitude_damping_error(gamma)``, and
``pauli_error([("Z", p), ("I", 1 - p)])`` for dephasing), so Aer's ``density_matrix`` method is a
reference::

    noise = qt.noise.NoiseModel("depolarizing", p=1e-3, two_qubit_p=1e-2)
    state.apply(gate, (0, 1)); noise.after_gate(state, (0, 1), generator)
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .state import QuantumState, as_int, check_generator, check_kraus, check_probability

__all__ = ["depolarizing", "amplitude_damping", "dephasing", "CHANNELS", "NoiseModel", "apply_channel", "checked_qubits"]


def depolarizing(p) -> torch.Tensor:
    """Kraus operators ``(4, 2, 2)`` of ``ρ -> (1 - p) ρ + p I/2``: ``sqrt(1 - 3p/4) I`` and
    ``sqrt(p/4) X, Y, Z`` (Aer's ``depolarizing_error(p, 1)``); ``p`` in ``[0, 1]``."""
    p = check_probability(p, "depolarizing p")
    a, b = math.sqrt(1 - 3 * p / 4), math.sqrt(p / 4)
    paulis = torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]],
                          dtype=torch.complex128)
    return paulis * torch.tensor([a, b, b, b], dtype=torch.float64).view(4, 1, 1)


def amplitude_damping(gamma) -> torch.Tensor:
    """Kraus operators ``(2, 2, 2)``: ``[[1, 0], [0, sqrt(1-γ)]]`` and ``[[0, sqrt(γ)], [0, 0]]``
    (decay ``|1> -> |0>`` with probability ``γ``; Aer's ``amplitude_damping_error(gamma)``)."""
    g = check_probability(gamma, "amplitude_damping gamma")
    return torch.tensor([[[1, 0], [0, math.sqrt(1 - g)]], [[0, math.sqrt(g)], [0, 0]]],
                        dtype=torch.complex128)


def dephasing(p) -> torch.Tensor:
    """Kraus operators ``(2, 2, 2)`` of ``ρ -> (1 - p) ρ + p ZρZ``: ``sqrt(1-p) I``, ``sqrt(p) Z``
    (a phase flip with probability ``p``; coherences shrink by ``1 - 2p``)."""
    p = check_probability(p, "dephasing p")
    return torch.tensor([[[math.sqrt(1 - p), 0], [0, math.sqrt(1 - p)]],
                         [[math.sqrt(p), 0], [0, -math.sqrt(p)]]], dtype=torch.complex128)


CHANNELS = {"depolarizing": depolarizing, "amplitude_damping": amplitude_damping, "dephasing": dephasing}


def checked_qubits(state: QuantumState, qubits) -> list:
    """``qubits`` (an int or a sequence) as a list of distinct ints in ``[0, n)``; a ValueError
    otherwise. Run before the first jump, so a refusal leaves the state as it was."""
    n = state.n_qubits
    qs = [qubits] if not isinstance(qubits, (tuple, list)) else list(qubits)
    for k, q in enumerate(qs):
        try:
            qs[k] = as_int(q, "qubit")  # numpy and torch integers too
        except TypeError:
            qs[k] = None
        if qs[k] is None or not 0 <= qs[k] < n:
            raise ValueError(f"qubit {q!r} is not an int in [0, {n - 1}]")
    if len(set(qs)) != len(qs):
        raise ValueError(f"repeated qubit in {qs}")
    return qs


def apply_channel(state: QuantumState, kraus: torch.Tensor, qubits: Sequence[int], generator=None) -> QuantumState:
    """One trajectory jump of the single-qubit channel ``kraus`` ``(K, 2, 2)`` (or per-sample
    ``(B, K, 2, 2)``) on each of ``qubits`` (distinct), per sample
    (``QuantumState.apply_kraus``); in place, returns ``state``. Every input is checked before
    the first jump."""
    qs = checked_qubits(state, qubits)
    kraus = check_kraus(kraus, state.batch)
    check_generator(generator)
    for q in qs:
        state.apply_kraus(kraus, q, generator)
    return state


class NoiseModel:
    """A single-qubit channel after every gate, on each qubit the gate acted on.

    Args:
        kind: ``"depolarizing"``, ``"amplitude_damping"`` or ``"dephasing"`` (``CHANNELS``).
        p: the channel's rate after a one-qubit gate, in ``[0, 1]``.
        two_qubit_p: the rate after a two-qubit gate, applied to each of its two qubits
            independently; ``None`` uses ``p``. (Hardware two-qubit errors are typically ~10x the
            one-qubit ones.)

    ``after_gate(state, qubits, generator)`` draws one jump per sample and per acted qubit. A
    rate of 0 applies nothing (and draws nothing).
    """

    def __init__(self, kind: str = "depolarizing", p: float = 0.0, two_qubit_p: Optional[float] = None):
        if kind not in CHANNELS:
            raise ValueError(f"noise kind must be one of {tuple(CHANNELS)}, got {kind!r}")
        self.kind = kind
        self.p = check_probability(p, f"{kind} p")
        self.two_qubit_p = self.p if two_qubit_p is None else check_probability(two_qubit_p, "two_qubit_p")
        self._one = CHANNELS[kind](self.p)
        self._two = CHANNELS[kind](self.two_qubit_p)
        # Depolarising and dephasing are mixtures of unitaries: a layer of them is one per-sample
        # unitary layer, drawn without reading the state.
        self.unitary_mixture = kind in ("depolarizing", "dephasing")

    def __repr__(self) -> str:
        return f"NoiseModel({self.kind!r}, p={self.p:g}, two_qubit_p={self.two_qubit_p:g})"

    def kraus(self, n_gate_qubits: int) -> torch.Tensor:
        """The ``(K, 2, 2)`` Kraus operators applied to each qubit after an ``n_gate_qubits`` gate."""
        return self._one if n_gate_qubits == 1 else self._two

    def after_layer(self, state: QuantumState, generator=None, qubits=None, two_qubit: bool = False) -> QuantumState:
        """The channel on each of ``qubits`` (default: every qubit) after a layer of gates, one
        jump per sample and qubit; the rate is ``two_qubit_p`` with ``two_qubit=True``, else ``p``.
        In place, returns ``state``. A mixture of unitaries (depolarising, dephasing) is drawn for
        all qubits at once and applied as one per-sample layer (``apply_layer``); amplitude
        damping jumps qubit by qubit (``apply_kraus``). Same law as ``after_gate`` on each qubit in
        turn (not the same draws from one seed)."""
        n = state.n_qubits
        qs = list(range(n)) if qubits is None else checked_qubits(state, qubits)
        check_generator(generator)
        rate = self.two_qubit_p if two_qubit else self.p
        if rate == 0 or not qs:
            return state
        kraus = self.kraus(2 if two_qubit else 1)
        if not self.unitary_mixture:
            return apply_channel(state, kraus, qs, generator)
        weights = (kraus.abs() ** 2).sum((-2, -1)) / 2  # K_k = sqrt(w_k) U_k
        draws = torch.multinomial(weights.expand(state.batch * len(qs), -1).to(
            generator.device if generator is not None else "cpu"), 1, generator=generator)
        idx = draws.view(state.batch, len(qs)).cpu()
        unit = kraus / weights.clamp_min(1e-300).sqrt().view(-1, 1, 1)  # a weight-0 K_k is never drawn
        gates = torch.eye(2, dtype=kraus.dtype).repeat(state.batch, n, 1, 1)
        gates[:, qs] = unit[idx]
        return state.apply_layer(gates.to(state.device))

    def after_gate(self, state: QuantumState, qubits, generator=None) -> QuantumState:
        """Apply the channel to each of ``qubits`` (an int or a pair: the gate's qubits) as a
        quantum-trajectory jump per sample; in place, returns ``state``."""
        qs = checked_qubits(state, qubits)  # all checked before the first jump changes the state
        if len(qs) not in (1, 2):
            raise ValueError(f"a gate acts on 1 or 2 qubits, got {qs}")
        check_generator(generator)
        rate = self.p if len(qs) == 1 else self.two_qubit_p
        if rate == 0:
            return state
        return apply_channel(state, self.kraus(len(qs)), qs, generator)
