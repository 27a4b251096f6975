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
from .dense_scan import bloch_tables
from .state import complex_dtype_of
from .statevector import StateVector

__all__ = ["rotation_layer", "brickwork", "token_layers", "dense_unitary", "brickwork_factors", "apply_dense", "bloch_vectors",
           "neighbour_zz"]


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

    A real state is promoted for complex gates. The even layer runs left to right and the odd
    one right to left (the gates of a layer commute), so on an MPS the centre needs one site move
    per gate instead of a sweep back across the chain.
    """
    pairs = _pairs(state.n_qubits, gates, parity)
    if gates.is_complex() and not state.dtype.is_complex:
        state.promote(complex_dtype_of(state.dtype))
    state.apply_neighbour_gates(*_sweep_order(gates.to(state.dtype), pairs, parity))


def _pairs(n: int, gates: torch.Tensor, parity: int) -> List[int]:
    """The first qubits of a brickwork layer's pairs, one per gate of ``gates (..., P, 4, 4)``."""
    if isinstance(parity, bool) or parity not in (0, 1):
        raise ValueError(f"a brickwork layer's parity is 0 (pairs from qubit 0) or 1 (from qubit 1), got {parity!r}")
    pairs = list(range(parity, n - 1, 2))
    if gates.dim() not in (3, 4) or gates.shape[-2:] != (4, 4):
        raise ValueError(f"a brickwork layer's gates must be (P, 4, 4) or (B, P, 4, 4), got {tuple(gates.shape)}")
    if gates.shape[-3] != len(pairs):
        raise ValueError(f"parity {parity} on {n} qubits has {len(pairs)} pairs, got {gates.shape[-3]} gates")
    return pairs


def _sweep_order(gates: torch.Tensor, pairs: List[int], parity: int):
    """``(gates, pairs)`` in sweep order: the odd layer right to left."""
    return (gates.flip(-3), pairs[::-1]) if parity == 1 else (gates, pairs)


def token_layers(state, layers: List[tuple]) -> None:
    """A token's layers in turn, in place: ``("1q", gates)``, a unitary one-qubit layer
    ``(n, 2, 2)`` or ``(B, n, 2, 2)``, or ``("2q", gates, parity)``, a brickwork layer (as
    ``brickwork``). For a model's own gates: not checked for unitarity or finiteness; real gates
    on a complex state are cast, complex gates on a real state refused (promote it first, as
    ``brickwork`` and ``apply_layer`` do).

    The layers go to the state as one program (``apply_program``): on an MPS whose compiled
    route takes them all, one call per sample, so a token's Python and conversions are paid once.
    """
    ops = []
    for op in layers:
        gates = op[1]
        if gates.dtype != state.dtype:
            if gates.is_complex() and not state.dtype.is_complex:
                raise TypeError(f"complex gates on a real state ({state.dtype}): promote the state first")
            gates = gates.to(state.dtype)
        if op[0] == "1q":
            ops.append(("1q", gates))
        else:
            ops.append(("2q", *_sweep_order(gates, _pairs(state.n_qubits, gates, op[2]), op[2])))
    state.apply_program(ops)


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


def brickwork_factors(n_qubits: int, layers: List[torch.Tensor], parities: List[int],
                      rotations: Optional[List[torch.Tensor]] = None):
    """Factor the brickwork of :func:`dense_unitary` as ``U = (I ⊗ tail)(f_a ⊗ f_b)`` when it has
    at most two layers (parities 0 then 1); ``None`` otherwise (and for one qubit).

    The qubits split into a leading group A of even size ``n_a`` (the scan's group, see
    ``qlam_tn.dense_scan.qubit_groups``, rounded up to even so that no layer-0 gate straddles
    it) and group B. ``f_a (2^{n_a}, 2^{n_a})`` holds layer 0 on A and the layer-1 gates on qubits
    ``0 .. n_a-2``; ``f_b`` layer 0 on B (None when B is empty); ``tail (2^w, 2^w)``, on the
    last ``w = n - n_a + 1`` qubits, the rest of layer 1 (None for one layer or an empty B).
    The layer-1 parts commute (disjoint qubits), which is what lets them split. Rotations after
    a layer go with the gates of the same qubits. ``qlam_tn.dense_scan.factored_ry_scan`` takes
    these instead of the dense ``U``: per token a ``2^w`` instead of a ``2^n`` matmul.
    """
    n = n_qubits
    if n < 2 or len(layers) not in (1, 2) or list(parities) != [0, 1][:len(layers)]:
        return None
    na = (n + 1) // 2
    na += na % 2
    if na > 6 or n - na > 6:
        return None
    rots = list(rotations) if rotations is not None else [None] * len(layers)
    dtype = layers[0].dtype
    for t in list(layers[1:]) + [r for r in rots if r is not None]:
        dtype = torch.promote_types(dtype, t.dtype)
    eye2 = torch.eye(2, dtype=dtype, device=layers[0].device)

    def block(gates, lo, hi, pad_front=False):
        """Kronecker product of ``gates`` over qubits lo..hi-1 (identity on what they leave)."""
        blocks = ([eye2] if pad_front else []) + [g.to(dtype) for g in gates]
        blocks += [eye2] * (hi - lo - 2 * len(gates) - int(pad_front))
        return _kron_all(blocks)

    def with_rot(m, r, lo, hi):
        return m if r is None else _kron_all([q.to(dtype) for q in r[lo:hi].unbind(0)]) @ m

    g0 = list(layers[0].unbind(0))
    f_a = with_rot(block(g0[:na // 2], 0, na), rots[0], 0, na)
    f_b = with_rot(block(g0[na // 2:], na, n), rots[0], na, n) if n > na else None
    tail = None
    if len(layers) == 2:
        g1 = list(layers[1].unbind(0))
        inner = (na - 2) // 2  # layer-1 pairs (1,2), (3,4), ... inside qubits 0 .. n_a-2
        a1 = block(g1[:inner], 0, na, pad_front=True)
        if n > na:
            a1 = with_rot(a1, None if rots[1] is None else torch.cat([rots[1][:na - 1], eye2[None]]), 0, na)
            tail = with_rot(block(g1[inner:], na - 1, n), rots[1], na - 1, n)
        else:
            a1 = with_rot(a1, rots[1], 0, na)
        f_a = a1 @ f_a
    return f_a, f_b, tail


def apply_dense(sv: StateVector, unitary: torch.Tensor) -> None:
    """``ψ <- U ψ`` for a dense ``(2^n, 2^n)`` matrix, one matmul for the whole batch."""
    if unitary.is_complex() and not sv.dtype.is_complex:
        sv.promote(unitary.dtype)
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
