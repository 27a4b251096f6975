"""Fast path: a whole real-amplitude QLAM sequence on a dense state vector, hand-differentiated.

For the default cell (RY encoding, a fixed real entangler ``U``), one token is::

    φ_t = Π_q RY_q(a_{t,q}) ψ_{t-1}        (n single-qubit rotations)
    ψ_t = U φ_t                            (one (2^n x 2^n) matmul for the batch)
    b_t = (<X_q>, <Z_q>)_q                 (Bloch vectors, real states have <Y> = 0)

Autograd over this loop records ~8n small kernels per token and dominates the cost. Here the
rotations of a group of up to 6 qubits are one per-sample Kronecker matrix ``(B, 2^g, 2^g)``
(two batched matmuls per token at n = 8 instead of 8n elementwise kernels), the forward runs
without recording, and ``backward`` is written out using ``∂RY(a)/∂a = ½ J RY(a)`` with
``J = [[0, -1], [1, 0]]``. States are stored every ``checkpoint_every`` tokens (all tokens by
default) and chunks are recomputed in backward; ``∂L/∂U`` is accumulated as one matmul per
64 tokens.

The plain reference is the generic path of ``qlam_tn.models.QLAM`` (per-qubit gates through
the ``StateVector`` with autograd); the tests hold this function to it.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["dense_ry_scan", "bloch_tables", "qubit_groups"]

_TABLES = {}

# Two qubit groups of at most 6 cover 12 qubits; the dense state is then 4096 numbers a sample.
MAX_QUBITS = 12


def bloch_tables(n: int, device, dtype):
    """Return ``flip (n, 2^n)`` (index of x with bit q flipped) and ``zsign (n, 2^n)`` (±1 of bit q)."""
    key = (n, str(device), dtype)
    if key not in _TABLES:
        idx = torch.arange(2 ** n, device=device)
        shifts = torch.arange(n - 1, -1, -1, device=device).unsqueeze(-1)
        flip = idx.unsqueeze(0) ^ (1 << shifts)
        zsign = (1 - 2 * ((idx.unsqueeze(0) >> shifts) & 1)).to(dtype)
        _TABLES[key] = (flip, zsign)
    return _TABLES[key]


def qubit_groups(n: int):
    """Split qubits 0..n-1 into two contiguous halves (one group for n = 1).

    Each group's rotations become one ``(2^g, 2^g)`` matrix per sample and token: two halves
    keep that small (``2·4^{n/2}`` entries instead of ``4^n``) while needing only two batched
    matmuls per token.
    """
    if n == 1:
        return [(0, 1)]
    first = (n + 1) // 2
    return [(0, first), (first, n - first)]


def _group_matrix(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``⊗_j RY(a_j)`` for one group: cos/sin ``(..., g)`` -> ``(..., 2^g, 2^g)`` (first qubit most significant)."""
    lead, g = cos.shape[:-1], cos.shape[-1]
    r = torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)  # (..., g, 2, 2)
    k = r[..., 0, :, :]
    for j in range(1, g):
        d = k.shape[-1]
        k = (k[..., :, None, :, None] * r[..., j, None, :, None, :]).reshape(lead + (2 * d, 2 * d))
    return k


def _apply_on_axis(k: torch.Tensor, psi: torch.Tensor, left: int, dim: int, transpose: bool = False) -> torch.Tensor:
    """Apply ``k (B, d, d)`` (or its transpose) to the leading (``left == 1``) or trailing qubit
    group of ``psi (B, 2^n)``; with at most two groups (n <= 12) there is no middle one."""
    b = psi.shape[0]
    if transpose:
        k = k.transpose(-2, -1)
    if left == 1:
        return torch.bmm(k, psi.view(b, dim, -1)).view(b, -1)
    return torch.bmm(psi.view(b, left, dim), k.transpose(-2, -1)).view(b, -1)


def _grad_group(g_out: torch.Tensor, before: torch.Tensor, left: int, dim: int) -> torch.Tensor:
    """``∂L/∂K (B, d, d)`` of ``out = K ×_axis before`` given ``g_out``, both ``(B, 2^n)``."""
    b = g_out.shape[0]
    if left == 1:
        return torch.bmm(g_out.view(b, dim, -1), before.view(b, dim, -1).transpose(1, 2))
    return torch.bmm(g_out.view(b, left, dim).transpose(1, 2), before.view(b, left, dim))


def _j_rows(k: torch.Tensor, g: int, j: int) -> torch.Tensor:
    """``J_j K``: ``J = [[0, -1], [1, 0]]`` on bit j of the row index of ``k (..., 2^g, 2^g)``."""
    lead, d = k.shape[:-2], k.shape[-1]
    v = k.reshape(lead + (2 ** j, 2, 2 ** (g - j - 1) * d))
    return torch.stack((-v[..., 1, :], v[..., 0, :]), dim=-2).reshape(k.shape)


def _hadamard(n: int, device, dtype) -> torch.Tensor:
    """``H^{⊗n}`` as a dense ``(2^n, 2^n)`` symmetric orthogonal matrix (cached)."""
    key = ("H", n, str(device), dtype)
    if key not in _TABLES:
        h = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64) / 2 ** 0.5
        m = torch.ones(1, 1, dtype=torch.float64)
        for _ in range(n):
            m = torch.kron(m, h)
        _TABLES[key] = m.to(device=device, dtype=dtype)
    return _TABLES[key]


def _bloch(psi: torch.Tensor, hadamard: torch.Tensor, zsign: torch.Tensor) -> torch.Tensor:
    """``psi (M, 2^n)`` -> ``(M, n, 2)``: <X_q> is <Z_q> of ``H^{⊗n} ψ`` (two matmuls, no gathers)."""
    psi_h = psi @ hadamard
    x = (psi_h * psi_h) @ zsign.transpose(0, 1)
    z = (psi * psi) @ zsign.transpose(0, 1)
    return torch.stack((x, z), dim=-1)


def _bloch_grad(psi: torch.Tensor, g: torch.Tensor, hadamard: torch.Tensor, zsign: torch.Tensor) -> torch.Tensor:
    """``∂L/∂ψ`` of the Bloch readout: ``psi (M, 2^n)``, ``g (M, n, 2)`` -> ``(M, 2^n)``."""
    # d<Z_q>/dψ = 2 z_q ψ ; d<X_q>/dψ = 2 H (z_q ⊙ Hψ)   (H symmetric)
    out = 2 * psi * (g[..., 1] @ zsign)
    return out + (2 * (psi @ hadamard) * (g[..., 0] @ zsign)) @ hadamard


def _encode(psi, mats, groups):
    """Apply the group matrices ``mats[i] (B, d_i, d_i)``; returns the state after each group."""
    steps = [psi]
    for (start, size), k in zip(groups, mats):
        steps.append(_apply_on_axis(k, steps[-1], 2 ** start, 2 ** size))
    return steps


class _DenseRYScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, angles, unitary, n, checkpoint_every):
        # angles (B, T, n), unitary (D, D) real, D = 2^n
        b, t_len, _ = angles.shape
        _, zsign = bloch_tables(n, angles.device, angles.dtype)
        hadamard = _hadamard(n, angles.device, angles.dtype)
        groups = qubit_groups(n)
        half = 0.5 * angles
        cos, sin = torch.cos(half), torch.sin(half)
        ut = unitary.transpose(0, 1)
        every = checkpoint_every or 1
        block = max(every, 64)
        need_grad = any(ctx.needs_input_grad[:2])
        psi = angles.new_zeros(b, 2 ** n)
        psi[:, 0] = 1
        saved = [psi]
        bloch = angles.new_empty(b, t_len, n, 2)
        for s0 in range(0, t_len, block):
            s1 = min(s0 + block, t_len)
            # Every token's group matrices of this block at once: (B, t, d, d).
            mats = [_group_matrix(cos[:, s0:s1, a:a + g], sin[:, s0:s1, a:a + g]) for a, g in groups]
            states = []
            for t in range(s0, s1):
                psi = _encode(psi, [m[:, t - s0] for m in mats], groups)[-1] @ ut
                states.append(psi)
                if need_grad and (every == 1 or ((t + 1) % every == 0 and t + 1 < t_len)):
                    saved.append(psi)
            stack = torch.stack(states, dim=1)  # (B, t, D)
            bloch[:, s0:s1] = _bloch(stack.reshape(-1, stack.shape[-1]), hadamard, zsign).view(b, s1 - s0, n, 2)
        ctx.n, ctx.every = n, every
        if need_grad:
            ctx.save_for_backward(cos, sin, unitary, torch.stack(saved, dim=1))
        return bloch

    @staticmethod
    def backward(ctx, g_bloch):
        cos, sin, unitary, saved = ctx.saved_tensors
        n, every = ctx.n, ctx.every
        b, t_len, _ = cos.shape
        _, zsign = bloch_tables(n, cos.device, cos.dtype)
        hadamard = _hadamard(n, cos.device, cos.dtype)
        dim = 2 ** n
        groups = qubit_groups(n)
        ut = unitary.transpose(0, 1)
        g_ang = torch.zeros_like(cos)
        g_u = torch.zeros_like(unitary)
        g_psi = cos.new_zeros(b, dim)
        # Process stored segments back to front; with every token stored, take 64 at a time.
        seg = every if every > 1 else 64
        bounds = [(s0, min(s0 + seg, t_len)) for s0 in range(0, t_len, seg)]
        for s0, s1 in reversed(bounds):
            tc = s1 - s0
            mats = [_group_matrix(cos[:, s0:s1, a:a + g], sin[:, s0:s1, a:a + g]) for a, g in groups]
            if every > 1:  # recompute the segment from its stored first state
                prev = [saved[:, s0 // every]]
                for t in range(s0, s1):
                    prev.append(_encode(prev[-1], [m[:, t - s0] for m in mats], groups)[-1] @ ut)
                prev = torch.stack(prev, dim=1)  # (B, tc + 1, D): ψ_{s0-1} .. ψ_{s1-1}
            else:
                prev = saved[:, s0:s1 + 1]
            # Everything that does not depend on the backward recursion is done for the whole
            # segment at once, with the tokens folded into the batch: the encoding
            # intermediates, the readout gradients, and (after the loop) ∂L/∂K, ∂L/∂U.
            flat_mats = [m.reshape(b * tc, m.shape[-2], m.shape[-1]) for m in mats]
            steps = [s_.view(b, tc, dim) for s_ in _encode(prev[:, :-1].reshape(b * tc, dim), flat_mats, groups)]
            flat = prev[:, 1:].reshape(-1, dim)
            g_direct = _bloch_grad(flat, g_bloch[:, s0:s1].reshape(-1, n, 2), hadamard, zsign).view(b, tc, dim)
            g_psis = torch.empty_like(g_direct)
            g_outs = [torch.empty_like(g_direct) for _ in groups]  # ∂L/∂(output of group gi)
            for t in range(s1 - 1, s0 - 1, -1):
                i = t - s0
                g_psi = g_psi + g_direct[:, i]
                g_psis[:, i] = g_psi
                g_phi = g_psi @ unitary
                for gi in range(len(groups) - 1, -1, -1):
                    a, g = groups[gi]
                    g_outs[gi][:, i] = g_phi
                    g_phi = _apply_on_axis(mats[gi][:, i], g_phi, 2 ** a, 2 ** g, transpose=True)
                g_psi = g_phi
            # ∂L/∂U = Σ_t gψ_tᵀ φ_t ; ∂L/∂K per token ; ∂L/∂a_j = ½ <∂L/∂K, J_j K>.
            g_u = g_u + g_psis.reshape(-1, dim).transpose(0, 1) @ steps[-1].reshape(-1, dim)
            for gi, ((a, g), k) in enumerate(zip(groups, mats)):
                gk = _grad_group(g_outs[gi].reshape(b * tc, dim), steps[gi].reshape(b * tc, dim), 2 ** a, 2 ** g)
                gk = gk.view(k.shape)
                for j in range(g):
                    g_ang[:, s0:s1, a + j] = 0.5 * (gk * _j_rows(k, g, j)).sum((-2, -1))
        return g_ang, g_u, None, None


def dense_ry_scan(angles: torch.Tensor, unitary: torch.Tensor, checkpoint_every: Optional[int] = None) -> torch.Tensor:
    """Bloch vectors of every token of a real QLAM sequence.

    Args:
        angles: ``(B, T, n)`` RY encoding angles per token and qubit.
        unitary: ``(2^n, 2^n)`` real orthogonal entangler applied after each encoding.
        checkpoint_every: store the state every this many tokens and recompute in
            backward (``None``: store every token, ``B·T·2^n`` numbers).

    Returns:
        ``(B, T, n, 2)``: ``(<X_q>, <Z_q>)`` after each token, starting from ``|0...0>``.
    """
    if angles.dim() != 3:
        raise ValueError(f"angles must be (B, T, n), got {tuple(angles.shape)}")
    n = angles.shape[-1]
    if not 1 <= n <= MAX_QUBITS:
        raise ValueError(f"dense_ry_scan handles 1..{MAX_QUBITS} qubits, got {n}")
    if unitary.shape != (2 ** n, 2 ** n):
        raise ValueError(f"unitary must be ({2 ** n}, {2 ** n}) for n={n}, got {tuple(unitary.shape)}")
    if angles.is_complex() or unitary.is_complex():
        raise TypeError("dense_ry_scan is the real-amplitude fast path: angles and unitary must be real")
    return _DenseRYScan.apply(angles, unitary.to(angles.dtype), n, checkpoint_every)
