"""The QLAM cell as functions over a state: encode a token, entangle, read out.

A QLAM memory is an n-qubit state updated per token::

    |ψ_t> = U_ent · ⊗_i R(a_{t,i}) · |ψ_{t-1}>,      a_t = W_e x_t + b_e

and read out through single-qubit Bloch vectors ``(<X_i>, <Y_i>, <Z_i>)`` (from which any
query-dependent measurement direction ``m·σ`` follows linearly) and optional neighbour
``<Z_i Z_{i+1}>``. These functions work on both backends; the dense ``StateVector`` gets fast
paths (one gather for all Bloch vectors, one matmul for a precomputed entangler), the ``MPS``
applies brickwork layers in sweep order so each gate needs one centre move.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from . import gates as G
from .mps import MPS
from .dense_scan import bloch_tables
from .state import complex_dtype_of
from .statevector import StateVector

__all__ = ["rotation_layer", "brickwork", "dense_unitary", "apply_dense", "bloch_vectors", "neighbour_zz"]


def rotation_layer(angles: torch.Tensor, kinds: str) -> torch.Tensor:
    """Per-sample single-qubit rotations ``(B, n, 2, 2)`` from angles ``(B, n, k)``.

    ``kinds`` names the rotations applied in order, one letter per angle: ``"y"`` (RY),
    ``"yz"`` (RY then RZ), ``"zyz"`` (RZ, RY, RZ).
    """
    b, n, k = angles.shape
    if k != len(kinds):
        raise ValueError(f"{len(kinds)} rotation kinds need {len(kinds)} angles per qubit, got {k}")
    flat = angles.reshape(b * n, k)
    out = None
    for j, kind in enumerate(kinds):
        build = {"y": G.RY, "z": G.RZ, "x": G.RX}[kind]
        m = build(flat[:, j])
        if out is not None and m.dtype != out.dtype:
            common = torch.promote_types(m.dtype, out.dtype)
            m, out = m.to(common), out.to(common)
        out = m if out is None else m @ out
    return out.reshape(b, n, 2, 2)


def brickwork(state, gates: torch.Tensor, parity: int) -> None:
    """Apply ``gates (P, 4, 4)`` (or per-sample ``(B, P, 4, 4)``) to pairs (parity + 2k, parity + 2k + 1).

    On an MPS the even layer runs left to right and the odd one right to left, so the
    centre needs one site move per gate instead of a sweep back across the chain.
    """
    n = state.n_qubits
    pairs = list(range(parity, n - 1, 2))
    if gates.shape[-3] != len(pairs):
        raise ValueError(f"parity {parity} on {n} qubits has {len(pairs)} pairs, got {gates.shape[-3]} gates")
    order = list(enumerate(pairs))
    if isinstance(state, MPS) and parity == 1:
        order.reverse()
    if gates.is_complex() and not state.dtype.is_complex:
        state._promote(complex_dtype_of(state.dtype))
    gates = gates.to(state.dtype)
    for k, q in order:
        state._apply_2q(gates[..., k, :, :], q, q + 1)


def _kron_all(blocks: List[torch.Tensor]) -> torch.Tensor:
    out = blocks[0]
    for blk in blocks[1:]:
        out = torch.kron(out.contiguous(), blk.contiguous())
    return out


def dense_unitary(n_qubits: int, layers: List[torch.Tensor], parities: List[int],
                  rotations: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
    """The ``(2^n, 2^n)`` matrix of brickwork layers, each optionally followed by rotations ``(n, 2, 2)``.

    Layer ``l`` applies ``layers[l] (P, 4, 4)`` to pairs ``(parity + 2k, parity + 2k + 1)``. Each
    layer is one Kronecker product (identities on unpaired edge qubits), so the whole entangler
    costs a few ``2^n``-sized matmuls and stays differentiable. Tested against applying the same
    gates one by one to a ``StateVector``.
    """
    tensors = list(layers) + ([r for r in rotations if r is not None] if rotations is not None else [])
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    device = tensors[0].device
    eye2 = torch.eye(2, dtype=dtype, device=device)
    u = None
    for idx, (gates, parity) in enumerate(zip(layers, parities)):
        pairs = list(range(parity, n_qubits - 1, 2))
        if gates.shape[-3] != len(pairs):
            raise ValueError(f"layer {idx}: {len(pairs)} pairs need {len(pairs)} gates, got {gates.shape[-3]}")
        blocks = [eye2] if parity == 1 else []
        blocks += [g.to(dtype) for g in gates.unbind(0)]
        covered = parity + 2 * len(pairs)
        blocks += [eye2] * (n_qubits - covered)
        m = _kron_all(blocks)
        if rotations is not None and rotations[idx] is not None:
            m = _kron_all([r.to(dtype) for r in rotations[idx].unbind(0)]) @ m
        u = m if u is None else m @ u
    return u


def apply_dense(sv: StateVector, unitary: torch.Tensor) -> None:
    """``ψ <- U ψ`` for a dense ``(2^n, 2^n)`` matrix, one matmul for the whole batch."""
    if unitary.is_complex() and not sv.dtype.is_complex:
        sv._promote(unitary.dtype)
    flat = sv.psi.reshape(sv.batch, -1)
    sv.psi = (flat @ unitary.transpose(0, 1).to(flat.dtype)).reshape(sv.psi.shape)


def bloch_vectors(state) -> torch.Tensor:
    """``(B, n, 3)`` Bloch vectors ``(<X_i>, <Y_i>, <Z_i>)`` of every qubit (normalised state assumed
    for the StateVector fast path; the MPS path divides by the norm)."""
    if isinstance(state, StateVector):
        n = state.n_qubits
        psi = state.psi.reshape(state.batch, -1)
        flip, zsign = bloch_tables(n, psi.device, psi.real.dtype if psi.is_complex() else psi.dtype)
        z = zsign
        flipped = psi[:, flip]  # (B, n, 2^n): ψ[x XOR e_q]
        cross = psi.conj().unsqueeze(1) * flipped
        x = cross.real.sum(-1) if psi.is_complex() else cross.sum(-1)
        if psi.is_complex():
            # <Y_q> = Σ_x conj(ψ[x]) (-i z_q(x)) ψ[x XOR e_q]
            y = (cross * z).imag.sum(-1)
            prob = (psi.conj() * psi).real
        else:
            y = torch.zeros_like(x)
            prob = psi * psi
        zz = prob @ z.transpose(0, 1)
        return torch.stack([x, y, zz], dim=-1)
    rho = state.rdm1()  # (B, n, 2, 2)
    x = 2 * rho[..., 0, 1].real
    y = 2 * rho[..., 1, 0].imag if rho.is_complex() else torch.zeros_like(x)
    z = (rho[..., 0, 0] - rho[..., 1, 1]).real
    return torch.stack([x, y, z], dim=-1)


def neighbour_zz(state) -> torch.Tensor:
    """``(B, n-1)`` neighbour correlators ``<Z_i Z_{i+1}>``."""
    n = state.n_qubits
    if isinstance(state, StateVector):
        psi = state.psi.reshape(state.batch, -1)
        prob = (psi.conj() * psi).real if psi.is_complex() else psi * psi
        _, zsign = bloch_tables(n, state.device, prob.dtype)
        return prob @ (zsign[:-1] * zsign[1:]).transpose(0, 1)
    return state.neighbour_zz()
