"""Observables shared by every backend: Pauli strings, entropies from Schmidt spectra.

The backend-specific contractions (reduced density matrices, sampling) live with the
state classes; this module holds what only depends on the numbers they produce.
"""
from __future__ import annotations

import math
import re
from typing import Dict

import torch

__all__ = ["parse_pauli", "pauli_matrix", "entropy_from_schmidt", "renyi_from_schmidt"]

_TOKEN = re.compile(r"([IXYZ])(\d+)")


def parse_pauli(spec, n_qubits: int) -> Dict[int, str]:
    """Parse a Pauli string into ``{qubit: 'X'|'Y'|'Z'}`` (identities dropped).

    Accepted forms:

    * space-separated factors with qubit indices: ``"X0 Z3"``, ``"Y2"`` (``"X0Z3"`` too);
    * a dense label of length ``n_qubits`` over ``IXYZ``: ``"XIIZ"`` (qubit 0 first);
    * a dict ``{0: "X", 3: "Z"}``.

    Raises ``ValueError`` for unknown letters, qubits out of range or repeated qubits.
    """
    if isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ValueError("empty Pauli string; use 'I0' for the identity")
        if not any(ch.isdigit() for ch in text):
            if len(text) != n_qubits or any(ch not in "IXYZ" for ch in text):
                raise ValueError(
                    f"malformed Pauli string {spec!r}: a label without indices must have "
                    f"{n_qubits} letters from IXYZ")
            items = list(enumerate(text))
        else:
            compact = text.replace(" ", "")
            matches = list(_TOKEN.finditer(compact))
            if "".join(m.group(0) for m in matches) != compact:
                raise ValueError(f"malformed Pauli string {spec!r}: expected factors like 'X0 Z3'")
            items = [(int(m.group(2)), m.group(1)) for m in matches]
    else:
        raise TypeError(f"Pauli string must be a str or dict, got {type(spec).__name__}")

    out: Dict[int, str] = {}
    seen = set()
    for q, p in items:
        if isinstance(q, bool) or not isinstance(q, int):
            raise ValueError(f"malformed Pauli string {spec!r}: qubit {q!r} is not an int")
        if p not in ("I", "X", "Y", "Z"):
            raise ValueError(f"malformed Pauli string {spec!r}: unknown Pauli {p!r}")
        if not 0 <= q < n_qubits:
            raise ValueError(f"Pauli string {spec!r}: qubit {q} out of range for {n_qubits} qubits")
        if q in seen:
            raise ValueError(f"Pauli string {spec!r}: qubit {q} appears twice")
        seen.add(q)
        if p != "I":
            out[q] = p
    return out


_PAULI_CACHE: Dict[tuple, torch.Tensor] = {}


def pauli_matrix(p: str, dtype: torch.dtype, device) -> torch.Tensor:
    """``(2, 2)`` Pauli matrix (cached per dtype and device); Y forces a complex dtype."""
    key = (p, dtype, str(device))
    if key not in _PAULI_CACHE:
        _PAULI_CACHE[key] = _pauli_matrix(p, dtype, device)
    return _PAULI_CACHE[key]


def _pauli_matrix(p: str, dtype: torch.dtype, device) -> torch.Tensor:
    if p == "X":
        rows = [[0, 1], [1, 0]]
    elif p == "Z":
        rows = [[1, 0], [0, -1]]
    elif p == "Y":
        if not dtype.is_complex:
            dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        rows = [[0, -1j], [1j, 0]]
    else:
        rows = [[1, 0], [0, 1]]
    return torch.tensor(rows, dtype=dtype, device=device)


def _probabilities(s: torch.Tensor) -> torch.Tensor:
    """Normalised Schmidt weights ``p = s² / Σ s²`` of ``s (B, k)``."""
    p = s * s
    return p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)


def entropy_from_schmidt(s: torch.Tensor, base: float = 2.0) -> torch.Tensor:
    """Von Neumann entropy ``-Σ p log p`` of Schmidt values ``s (B, k)`` -> ``(B,)``.

    Zero weights contribute zero, with finite gradients (log is clamped at the smallest
    normal number).
    """
    p = _probabilities(s)
    logp = torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))
    return -(p * logp).sum(-1) / math.log(base)


def renyi_from_schmidt(s: torch.Tensor, alpha: float, base: float = 2.0) -> torch.Tensor:
    """Renyi entropy ``log(Σ p^α) / (1 - α)`` of ``s (B, k)`` -> ``(B,)``; α = 1 is von Neumann."""
    if alpha < 0:
        raise ValueError(f"Renyi alpha must be >= 0, got {alpha}")
    if alpha == 1:
        return entropy_from_schmidt(s, base)
    p = _probabilities(s)
    if alpha == 0:
        return torch.log((p > 0).sum(-1).to(p.dtype)) / math.log(base)
    return torch.log((p ** alpha).sum(-1)) / ((1 - alpha) * math.log(base))
