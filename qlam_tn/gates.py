"""Named quantum gates and batched parameterised gate builders.

Every builder returns a torch tensor:

* fixed gates: ``(2, 2)`` or ``(4, 4)``;
* parameterised gates: ``(2, 2)`` / ``(4, 4)`` for a Python float or 0-d tensor angle,
  ``(B, 2, 2)`` / ``(B, 4, 4)`` for a ``(B,)`` tensor of angles (one gate per batch element).

Two-qubit matrices act on the pair ``(q0, q1)`` as passed to ``state.apply(gate, (q0, q1))``,
with ``q0`` the more significant bit (big-endian): row index ``2*b0 + b1``.

Gates whose matrix is real (H, X, Z, CNOT, CZ, SWAP, RY, CRY, ...) are returned with a real
dtype, so that states built only from real gates stay real (about 4x cheaper arithmetic).
A state promotes itself to complex when a complex gate is applied. Pass ``dtype=`` to force one.

Angles keep their autograd graph: gradients flow from any observable back to ``theta``.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

_DEFAULT_REAL = torch.float64
_DEFAULT_COMPLEX = torch.complex128

__all__ = [
    "H", "X", "Y", "Z", "S", "T", "SX", "I",
    "RX", "RY", "RZ", "PHASE", "U3",
    "CNOT", "CX", "CZ", "SWAP", "ISWAP",
    "RXX", "RYY", "RZZ", "CRX", "CRY", "CRZ",
    "controlled", "is_unitary",
]


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    if dtype.is_complex:
        return dtype
    return torch.complex64 if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.complex128


def _fixed(rows, dtype, device, is_real):
    if dtype is None:
        dtype = _DEFAULT_REAL if is_real else _DEFAULT_COMPLEX
    elif is_real is False and not dtype.is_complex:
        raise TypeError(f"this gate is complex; dtype {dtype} cannot hold it")
    return torch.tensor(rows, dtype=dtype, device=device)


def I(dtype=None, device=None):  # noqa: E743 - the conventional name
    """Identity, ``(2, 2)``."""
    return _fixed([[1, 0], [0, 1]], dtype, device, True)


def H(dtype=None, device=None):
    """Hadamard, ``(2, 2)``, real."""
    r = 1 / math.sqrt(2)
    return _fixed([[r, r], [r, -r]], dtype, device, True)


def X(dtype=None, device=None):
    """Pauli X, ``(2, 2)``, real."""
    return _fixed([[0, 1], [1, 0]], dtype, device, True)


def Y(dtype=None, device=None):
    """Pauli Y, ``(2, 2)``, complex."""
    return _fixed([[0, -1j], [1j, 0]], dtype, device, False)


def Z(dtype=None, device=None):
    """Pauli Z, ``(2, 2)``, real."""
    return _fixed([[1, 0], [0, -1]], dtype, device, True)


def S(dtype=None, device=None):
    """Phase gate diag(1, i), ``(2, 2)``."""
    return _fixed([[1, 0], [0, 1j]], dtype, device, False)


def T(dtype=None, device=None):
    """T gate diag(1, e^{i pi/4}), ``(2, 2)``."""
    return _fixed([[1, 0], [0, complex(math.cos(math.pi / 4), math.sin(math.pi / 4))]], dtype, device, False)


def SX(dtype=None, device=None):
    """Square root of X, ``(2, 2)``."""
    return _fixed([[0.5 + 0.5j, 0.5 - 0.5j], [0.5 - 0.5j, 0.5 + 0.5j]], dtype, device, False)


def CNOT(dtype=None, device=None):
    """Controlled-X with control on the first qubit of the pair, ``(4, 4)``, real."""
    return _fixed([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype, device, True)


CX = CNOT


def CZ(dtype=None, device=None):
    """Controlled-Z, ``(4, 4)``, real."""
    return _fixed([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1]], dtype, device, True)


def SWAP(dtype=None, device=None):
    """SWAP, ``(4, 4)``, real."""
    return _fixed([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype, device, True)


def ISWAP(dtype=None, device=None):
    """iSWAP, ``(4, 4)``."""
    return _fixed([[1, 0, 0, 0], [0, 0, 1j, 0], [0, 1j, 0, 0], [0, 0, 0, 1]], dtype, device, False)


# --------------------------------------------------------------------------- parameterised

def _angle(theta, name: str, dtype, device) -> torch.Tensor:
    """Validate an angle and return it as a real tensor of shape () or (B,)."""
    if isinstance(theta, torch.Tensor):
        if theta.is_complex():
            raise TypeError(f"{name}: angle must be real, got a complex tensor")
        if theta.dim() > 1:
            raise ValueError(f"{name}: angle must be a scalar or a (B,) tensor, got shape {tuple(theta.shape)}")
        t = theta
        if not t.is_floating_point():
            t = t.to(_DEFAULT_REAL)
        if device is not None:
            t = t.to(device)
    elif isinstance(theta, Real):
        t = torch.tensor(float(theta), dtype=_DEFAULT_REAL, device=device)
    else:
        raise TypeError(f"{name}: angle must be a float or a real torch tensor, got {type(theta).__name__}")
    if dtype is not None:
        t = t.to(dtype.to_real() if dtype.is_complex else dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: angle is NaN or infinite")
    return t


def _stack(rows, dtype) -> torch.Tensor:
    """Stack a nested list of same-shape tensors into a (..., r, c) matrix."""
    m = torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)
    return m if dtype is None else m.to(dtype)


def _out_dtype(theta: torch.Tensor, dtype, is_real: bool):
    if dtype is not None:
        if is_real or dtype.is_complex:
            return dtype
        raise TypeError(f"this gate is complex; dtype {dtype} cannot hold it")
    return theta.dtype if is_real else _complex_of(theta.dtype)


def RX(theta, dtype=None, device=None):
    """exp(-i theta X / 2), ``(2, 2)`` or ``(B, 2, 2)``, complex."""
    t = _angle(theta, "RX", dtype, device)
    c, s = torch.cos(t / 2), torch.sin(t / 2)
    ct = _out_dtype(t, dtype, False)
    c, js = c.to(ct), -1j * s.to(ct)
    return _stack([[c, js], [js, c]], None)


def RY(theta, dtype=None, device=None):
    """exp(-i theta Y / 2) = [[c, -s], [s, c]], ``(2, 2)`` or ``(B, 2, 2)``, real."""
    t = _angle(theta, "RY", dtype, device)
    c, s = torch.cos(t / 2), torch.sin(t / 2)
    return _stack([[c, -s], [s, c]], _out_dtype(t, dtype, True))


def RZ(theta, dtype=None, device=None):
    """exp(-i theta Z / 2) = diag(e^{-i theta/2}, e^{i theta/2}), complex."""
    t = _angle(theta, "RZ", dtype, device)
    ct = _out_dtype(t, dtype, False)
    e = torch.polar(torch.ones_like(t), -t / 2).to(ct)
    z = torch.zeros_like(e)
    return _stack([[e, z], [z, e.conj()]], None)


def PHASE(theta, dtype=None, device=None):
    """diag(1, e^{i theta}), complex."""
    t = _angle(theta, "PHASE", dtype, device)
    ct = _out_dtype(t, dtype, False)
    e = torch.polar(torch.ones_like(t), t).to(ct)
    one, z = torch.ones_like(e), torch.zeros_like(e)
    return _stack([[one, z], [z, e]], None)


def U3(theta, phi, lam, dtype=None, device=None):
    """OpenQASM U3(theta, phi, lambda), complex; angles broadcast to a common batch."""
    t = _angle(theta, "U3", dtype, device)
    p = _angle(phi, "U3", dtype, device)
    lm = _angle(lam, "U3", dtype, device)
    t, p, lm = torch.broadcast_tensors(t, p, lm)
    ct = _out_dtype(t, dtype, False)
    c, s = torch.cos(t / 2).to(ct), torch.sin(t / 2).to(ct)
    ep, el = torch.polar(torch.ones_like(p), p).to(ct), torch.polar(torch.ones_like(lm), lm).to(ct)
    return _stack([[c, -el * s], [ep * s, ep * el * c]], None)


def _kron_pauli(theta, name, dtype, device, pauli):
    """exp(-i theta/2 P⊗P) = cos(theta/2) I - i sin(theta/2) P⊗P, complex."""
    t = _angle(theta, name, dtype, device)
    ct = _out_dtype(t, dtype, False)
    pp = torch.kron(pauli, pauli).to(device=t.device, dtype=ct)
    c, s = torch.cos(t / 2), torch.sin(t / 2)
    eye = torch.eye(4, dtype=ct, device=t.device)
    return c.to(ct)[..., None, None] * eye + (-1j * s.to(ct))[..., None, None] * pp


def RXX(theta, dtype=None, device=None):
    """exp(-i theta/2 X⊗X), complex."""
    return _kron_pauli(theta, "RXX", dtype, device, torch.tensor([[0, 1], [1, 0]], dtype=torch.complex128))


def RYY(theta, dtype=None, device=None):
    """exp(-i theta/2 Y⊗Y), complex."""
    return _kron_pauli(theta, "RYY", dtype, device, torch.tensor([[0, -1j], [1j, 0]], dtype=torch.complex128))


def RZZ(theta, dtype=None, device=None):
    """exp(-i theta/2 Z⊗Z) = diag(e^{-it/2}, e^{it/2}, e^{it/2}, e^{-it/2}), complex."""
    return _kron_pauli(theta, "RZZ", dtype, device, torch.tensor([[1, 0], [0, -1]], dtype=torch.complex128))


def controlled(u: torch.Tensor) -> torch.Tensor:
    """``|0><0| ⊗ I + |1><1| ⊗ u`` -> ``(..., 4, 4)`` for ``u (..., 2, 2)`` (control = first qubit of
    the pair); differentiable in ``u``."""
    out = torch.zeros(u.shape[:-2] + (4, 4), dtype=u.dtype, device=u.device)
    out[..., 0, 0] = 1
    out[..., 1, 1] = 1
    out[..., 2:, 2:] = u
    return out


def CRX(theta, dtype=None, device=None):
    """Controlled RX (control = first qubit of the pair), complex."""
    return controlled(RX(theta, dtype, device))


def CRY(theta, dtype=None, device=None):
    """Controlled RY, real."""
    return controlled(RY(theta, dtype, device))


def CRZ(theta, dtype=None, device=None):
    """Controlled RZ, complex."""
    return controlled(RZ(theta, dtype, device))


def is_unitary(gate: torch.Tensor, atol: float = 1e-8) -> bool:
    """True when every matrix in ``gate`` (shape (..., d, d)) satisfies U†U = I within atol."""
    d = gate.shape[-1]
    if gate.device.type == "cpu" and gate.dtype in _NUMPY_CHECKED:
        # In numpy: on the tiny (n, 2, 2) layers a QLAM token checks twice, torch's batched matmul
        # and allclose cost far more in dispatch than in arithmetic (docs/benchmarks.md, "Measured
        # once"). The same test: |U†U - I| <= atol everywhere.
        g = gate.detach().resolve_conj().resolve_neg().numpy()
        err = np.abs(np.matmul(g.conj().swapaxes(-1, -2), g) - np.eye(d, dtype=g.dtype))
        return bool(err.max(initial=0) <= err.dtype.type(atol))  # in the gate's precision, as torch
    eye = torch.eye(d, dtype=gate.dtype, device=gate.device)
    prod = gate.conj().transpose(-2, -1) @ gate
    return bool(torch.allclose(prod, eye.expand_as(prod), atol=atol, rtol=0))


_NUMPY_CHECKED = (torch.float32, torch.float64, torch.complex64, torch.complex128)
