"""Observables shared by every backend: Pauli strings, entropies from Schmidt spectra.

The backend-specific contractions (reduced density matrices, sampling) live with the
state classes; this module holds what only depends on the numbers they produce.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Dict

import torch

__all__ = ["parse_pauli", "pauli_matrix", "entropy_from_schmidt", "renyi_from_schmidt"]

_FACTOR = re.compile(r"([IXYZ])([0-9]+)")


def parse_pauli(spec, n_qubits: int) -> Dict[int, str]:
    """Parse a Pauli string into ``{qubit: 'X'|'Y'|'Z'}`` (identities dropped).

    The one grammar of the project (every backend and the cotengra oracle read it):

    * factors with qubit indices, separated by spaces or commas or not at all:
      ``"X0 Z3"``, ``"X0, Z3"``, ``"X0Z3"``;
    * a dense label of length ``n_qubits`` over ``IXYZ``: ``"XIIZ"`` (qubit 0 first);
    * a dict ``{0: "X", 3: "Z"}`` (integer qubits, numpy's included).

    Raises ``ValueError`` for an empty string, a term it cannot parse, an unknown letter, a qubit
    out of range or a repeated qubit, and ``TypeError`` for anything but a str or a dict.
    """
    if isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ValueError("empty Pauli string; use 'I0' for the identity")
        if not any(ch in "0123456789" for ch in text):
            if len(text) != n_qubits or any(ch not in "IXYZ" for ch in text):
                raise ValueError(f"cannot parse Pauli term {text!r}: expected factors like 'X0 Z3' or a "
                                 f"label of {n_qubits} letters from IXYZ")
            items = list(enumerate(text))
        else:
            items = []
            for term in re.split(r"\s*,\s*|\s+", text):
                matches = list(_FACTOR.finditer(term))
                if not term or "".join(m.group(0) for m in matches) != term:
                    raise ValueError(f"cannot parse Pauli term {term!r} in {spec!r}: expected a letter I, X, Y "
                                     f"or Z followed by a qubit index, e.g. 'Z0' or 'X3 Z4'")
                items += [(int(m.group(2)), m.group(1)) for m in matches]
    else:
        raise TypeError(f"Pauli string must be a str or dict, got {type(spec).__name__}")

    out: Dict[int, str] = {}
    seen = set()
    for q, p in items:
        if isinstance(q, bool) or not isinstance(q, numbers.Integral):
            raise ValueError(f"malformed Pauli string {spec!r}: qubit {q!r} is not an int")
        q = int(q)
        if p not in ("I", "X", "Y", "Z"):
            raise ValueError(f"malformed Pauli string {spec!r}: unknown Pauli {p!r}")
        if not 0 <= q < n_qubits:
            raise ValueError(f"Pauli operator {spec!r} acts on qubit {q}, but there are {n_qubits} qubits "
                             f"(0..{n_qubits - 1})")
        if q in seen:
            raise ValueError(f"Pauli operator {spec!r} names qubit {q} twice")
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
    _check_base(base)
    p = _probabilities(s)
    logp = torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))
    return -(p * logp).sum(-1) / math.log(base)


def _check_base(base: float) -> None:
    if not (isinstance(base, (int, float)) and math.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"the logarithm's base must be a finite number > 0 other than 1, got {base!r}")


def renyi_from_schmidt(s: torch.Tensor, alpha: float, base: float = 2.0) -> torch.Tensor:
    """Renyi entropy ``log(Σ p^α) / (1 - α)`` of ``s (B, k)`` -> ``(B,)``; α = 1 is von Neumann."""
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"Renyi alpha must be a finite number >= 0, got {alpha!r}")
    _check_base(base)
    if alpha == 1:
        return entropy_from_schmidt(s, base)
    p = _probabilities(s)
    if alpha == 0:
        return torch.log((p > 0).sum(-1).to(p.dtype)) / math.log(base)
    return torch.log((p ** alpha).sum(-1)) / ((1 - alpha) * math.log(base))
