"""Fast path: a whole real-amplitude QLAM sequence on a dense state vector, hand-differentiated.

For the default cell (RY encoding, a fixed real entangler ``U``), one token is::

    χ_t = Π_q RY_q(a_{t,q}) ψ_{t-1}        (n single-qubit rotations)
    ψ_t = U χ_t                            (one (2^n x 2^n) matmul for the batch)
    b_t = (<X_q>, <Z_q>)_q                 (Bloch vectors, real states have <Y> = 0)

Autograd over this loop records ~8n small kernels per token and dominates the cost. Here the
qubits are split into two contiguous groups A (leading, ``d_a = 2^{n_a}``) and B, a sample's
state is the ``(d_a, d_b)`` matrix Ψ, and the rotations of each group are one per-sample
Kronecker matrix, so the encoding is ``K_A Ψ K_Bᵀ``: two batched matmuls per token. The forward
runs without recording and ``backward`` is written out.

Factored entanglers. A brickwork of depth <= 2 factors as ``U = (I ⊗ W)(F_A ⊗ F_B)``: the
gates inside each group (``F_A``, ``F_B``) and a tail ``W`` on the last ``w`` qubits holding the
gate that straddles the groups (``qlam_tn.memory.brickwork_factors``; ``F_B`` is then folded into
``W``). ``F_A`` folds into the per-token rotations (``F_A K_A``, once per block of tokens), so a
token costs two small batched matmuls and one ``(B·2^{n-w}, 2^w) @ (2^w, 2^w)`` matmul instead
of the ``(B, 2^n) @ (2^n, 2^n)`` one (``w = 5`` at n = 8: 16x fewer FLOPs). The dense case is the
same code with no ``F`` and ``W = U``. One step, for both (Φ the matrix form of φ)::

    Φ_t = (F_A K_A) Ψ_{t-1} (F_B K_B)ᵀ,    ψ_t = (I ⊗ W) φ_t

Gradients: ``∂RY(a)/∂a = ½ J RY(a)`` (``J = [[0, -1], [1, 0]]``) and the rotations commute, so
``∂L/∂a_q`` is ``½ <G, J_q X>`` for a suitable pair of matrices: a Gram matrix of the two and a
constant table (``gram_tables``). The readout is also read from Gram matrices (the reduced
density matrices of the groups). States are stored every ``checkpoint_every`` tokens (all tokens
by default) and segments are recomputed in backward; everything that does not depend on the
backward recursion is done per block of 32 tokens with the tokens folded into the batch.

The plain reference is the generic path of ``qlam_tn.models.QLAM`` (per-qubit gates through
the ``StateVector`` with autograd); the tests hold this function to it.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

__all__ = ["dense_ry_scan", "factored_ry_scan", "bloch_tables", "gram_bloch", "gram_bloch_grad", "gram_tables",
           "qubit_groups"]

_TABLES = {}

# Two qubit groups of at most 6 cover 12 qubits; the dense state is then 4096 numbers a sample.
MAX_QUBITS = 12

# Tokens handled together outside the sequential loops (group matrices, readout, gradients):
# 32 keeps those arrays (32·B·2^n numbers) near the caches; 64 was slower at n = 8
# (docs/benchmarks.md, "Measured once"; ``qlam bench models`` times the whole scan).
_BLOCK = 32


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


class _Scratch:
    """Named buffers reused by every block of one scan call.

    Block-sized temporaries (``32·B·2^n`` numbers, 2 MB at n = 8, B = 64) are allocated once per
    call instead of once per block: glibc hands multi-MB blocks back to the OS, and the page faults
    of a fresh one can cost as much as the kernel that fills it (a QLAM training step at n = 8,
    T = 256, B = 64 ran measurably faster with the scratch: docs/benchmarks.md, "Measured once").
    Without a scratch (``None``) every request is a fresh tensor. Two live arrays must not share a
    name.
    """

    def __init__(self, like: torch.Tensor):
        self._like, self._bufs = like, {}

    def __call__(self, name: str, shape) -> torch.Tensor:
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n:
            buf = self._bufs[name] = self._like.new_empty(n)
        return buf[:n].view(shape)


def _take(scratch: Optional[_Scratch], like: torch.Tensor, name: str, shape) -> torch.Tensor:
    return like.new_empty(shape) if scratch is None else scratch(name, shape)


# ---------------------------------------------------------------------------- per-token matrices
def _rotations(angles: torch.Tensor) -> torch.Tensor:
    """``RY(a)`` entries of every token and qubit: ``angles (B, T, n)`` -> ``(2, 2, n, T, B)``.

    Batch innermost and tokens next, so a block of tokens of a qubit group is a plain view
    ``(2, 2, g, t·B)`` (built once per call, not stacked per block)."""
    half = 0.5 * angles.permute(2, 1, 0)  # (n, T, B)
    c, s = torch.cos(half), torch.sin(half)
    return torch.stack((torch.stack((c, -s)), torch.stack((s, c))))


def _group_matrix(r: torch.Tensor, lead, left: Optional[torch.Tensor] = None, raw: bool = False,
                  scratch: Optional[_Scratch] = None, tag: str = ""):
    """``left @ ⊗_j RY(a_j)`` for one group from its rotations ``r (2, 2, g, N)`` (see
    :func:`_rotations`), ``left (2^g, 2^g)`` or None -> ``lead + (2^g, 2^g)`` with
    ``prod(lead) = N`` (first qubit most significant); with ``raw``, the pair
    ``(⊗_j RY(a_j), left @ ⊗_j RY(a_j))`` (the same tensor twice when ``left`` is None)."""
    # Built with the batch as the innermost (contiguous) axis, so each Kronecker step is a
    # broadcast multiply over long rows (with the 2x2 factors innermost it is many short ones),
    # ``left`` is one plain matmul in that layout, and one 2-D transpose (a cheaper copy than a
    # 3-D permute) brings the result to (N, d, d).
    g, n_b = r.shape[2], r.shape[3]
    lead = tuple(lead)
    k = r[:, :, 0]
    for j in range(1, g):
        d = k.shape[0]
        out = _take(scratch, r, f"{tag}kron{j}", (d, 2, d, 2, n_b))
        k = torch.mul(k[:, None, :, None], r[None, :, None, :, j], out=out).view(2 * d, 2 * d, n_b)
    d = k.shape[0]
    k = k.reshape(d, d * n_b)

    def batch_major(m, name):
        out = _take(scratch, r, name, lead + (d, d))
        out.view(n_b, d * d).copy_(m.view(d * d, n_b).transpose(0, 1))
        return out

    if left is None:
        folded = batch_major(k, f"{tag}k")
        return (folded, folded) if raw else folded
    if not raw:
        return batch_major(torch.mm(left, k, out=_take(scratch, r, f"{tag}fold", (d, d * n_b))), f"{tag}kf")
    # Both wanted: fold the batch-major one with a batched matmul (one transpose fewer).
    ka = batch_major(k, f"{tag}k")
    kaf = _take(scratch, r, f"{tag}kf", lead + (d, d))
    torch.bmm(left.expand(n_b, d, d), ka.view(n_b, d, d), out=kaf.view(n_b, d, d))
    return ka, kaf


class _Block(NamedTuple):
    """Per-token matrices of a block of tokens, time-major ``(t, B, d, d)``: the rotations
    ``ka``/``kb`` (None unless asked for; ``kb`` None for a single group) and the folded
    ``F_A K_A``/``F_B K_B`` (the same tensors when there is no ``F``)."""
    ka: Optional[torch.Tensor]
    kb: Optional[torch.Tensor]
    kaf: torch.Tensor
    kbf: Optional[torch.Tensor]


def _block(rot: torch.Tensor, s0: int, s1: int, na: int, f_a, f_b, raw: bool,
           scratch: Optional[_Scratch] = None) -> _Block:
    """The :class:`_Block` of tokens ``s0 .. s1-1`` from ``rot (2, 2, n, T, B)``; ``raw=False``
    skips the unfolded matrices."""
    n, b = rot.shape[2], rot.shape[4]
    lead = (s1 - s0, b)

    def group(q0, q1, f, tag):
        r = rot[:, :, q0:q1, s0:s1].reshape(2, 2, q1 - q0, -1)  # a view: (t, B) are contiguous
        if raw:
            return _group_matrix(r, lead, f, True, scratch, tag)
        return None, _group_matrix(r, lead, f, False, scratch, tag)

    ka, kaf = group(0, na, f_a, "a.")
    kb, kbf = group(na, n, f_b, "b.") if n > na else (None, None)
    return _Block(ka, kb, kaf, kbf)


def _advance(psi: torch.Tensor, kaf: torch.Tensor, kbf: Optional[torch.Tensor], tail: Optional[torch.Tensor],
             states: torch.Tensor) -> None:
    """Run ``t`` tokens from ``psi (B, D)``, writing ψ after each into ``states (t, B, D)``.

    ``kaf (t, B, d_a, d_a)``, ``kbf (t, B, d_b, d_b)`` or None, ``tail (2^w, 2^w)`` or None.
    Every kernel writes into a preallocated buffer, the last one straight into ``states``, and
    the per-token views are made before the loop: a token is three small kernels.
    """
    t, b, da = kaf.shape[0], kaf.shape[1], kaf.shape[-1]
    dim = states.shape[-1]
    db = dim // da
    bmm, mm = torch.bmm, torch.mm
    ka_l = kaf.unbind(0)
    kbt_l = kbf.transpose(-2, -1).unbind(0) if kbf is not None else None
    out3 = states.view(t, b, da, db).unbind(0)
    x = psi.view(b, da, db)
    if tail is None:
        w1 = psi.new_empty(b, da, db)
        for i in range(t):
            if kbt_l is None:
                bmm(ka_l[i], x, out=out3[i])
            else:
                bmm(bmm(ka_l[i], x, out=w1), kbt_l[i], out=out3[i])
            x = out3[i]
        return
    tail_t = tail.transpose(0, 1)
    rows = b * dim // tail.shape[0]
    out_rows = states.view(t, rows, -1).unbind(0)
    w1, w2 = psi.new_empty(b, da, db), psi.new_empty(b, da, db)
    phi_rows = (w1 if kbt_l is None else w2).view(rows, -1)  # Φ = (F_A K_A) Ψ (F_B K_B)ᵀ
    for i in range(t):
        bmm(ka_l[i], x, out=w1)
        if kbt_l is not None:
            bmm(w1, kbt_l[i], out=w2)
        mm(phi_rows, tail_t, out=out_rows[i])
        x = out3[i]


# ---------------------------------------------------------------------------- Gram-matrix readout
class GramTables(NamedTuple):
    """Constant tables of one qubit group (``size`` qubits, ``d = 2^size``, first qubit most
    significant) that map its ``(d, d)`` Gram matrices, flattened row-major, to Bloch terms.

    * ``read (2·size, d²)``: ``read @ vec(ρ)`` = ``(<X_j>, <Z_j>)_j`` interleaved, ``ρ`` the group's
      reduced density matrix: ``<X_j> = Σ_x ρ[x, x ^ bit_j]``, ``<Z_j> = Σ_x ±ρ[x, x]``.
    * ``turn (size, d, d)``: ``Σ turn_j ⊙ (G Φᵀ)`` = ``½ <G, J_j Φ>`` with ``J = [[0, -1], [1, 0]]`` on
      qubit j, i.e. ``∂L/∂a_j`` of ``Φ = RY_j(a_j) ...`` given ``G = ∂L/∂Φ``.
    * ``slot (d²,)`` and ``zsign (size, d)``: ``∂L/∂ρ`` of the readout, built by a gather from
      ``[g_X (size), g_Z @ zsign (d), 0]``: entry ``(x, x ^ bit_j)`` is ``g_X_j``, the diagonal
      ``Σ_j ±g_Z_j``, everything else 0 (cheaper than a matmul with ``read``, whose inner size is 2·size).
    """
    read: torch.Tensor
    turn: torch.Tensor
    slot: torch.Tensor
    zsign: torch.Tensor


def gram_tables(size: int, device, dtype) -> GramTables:
    """The :class:`GramTables` of a group of ``size`` qubits (cached)."""
    key = ("gram", size, str(device), dtype)
    if key not in _TABLES:
        d = 2 ** size
        x = torch.arange(d)
        read = torch.zeros(size, 2, d, d, dtype=torch.float64)
        turn = torch.zeros(size, d, d, dtype=torch.float64)
        zsign = torch.zeros(size, d, dtype=torch.float64)
        slot = torch.full((d, d), size + d, dtype=torch.long)  # column of the trailing 0
        slot[x, x] = size + x
        for j in range(size):
            bit = 1 << (size - 1 - j)
            one = ((x & bit) != 0).to(torch.float64)
            zsign[j] = 1.0 - 2.0 * one
            read[j, 0, x, x ^ bit] = 1.0
            read[j, 1, x, x] = zsign[j]
            turn[j, x, x ^ bit] = one - 0.5  # (J Φ)[x] = +Φ[x^bit] if the bit is set, else -Φ[x^bit]
            slot[x, x ^ bit] = j
        _TABLES[key] = GramTables(read.view(2 * size, d * d).to(device=device, dtype=dtype),
                                  turn.to(device=device, dtype=dtype), slot.view(-1).to(device),
                                  zsign.to(device=device, dtype=dtype))
    return _TABLES[key]


def _split(n: int, split: Optional[int]):
    """``(n_a, d_a, d_b)``: qubits in group A (default :func:`qubit_groups`) and the sides of Ψ."""
    na = qubit_groups(n)[0][1] if split is None else split
    return na, 2 ** na, 2 ** (n - na)


def _gram_parts(n: int, na: int, device, dtype):
    """``[(rows, size, tables)]``: group A (``rows=True``: rows of Ψ), then group B if n > n_a."""
    parts = [(True, na, gram_tables(na, device, dtype))]
    if n > na:
        parts.append((False, n - na, gram_tables(n - na, device, dtype)))
    return parts


def _gram(p: torch.Tensor, q: torch.Tensor, rows: bool, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Batched Gram matrix of ``p, q (M, d_a, d_b)`` over the other group: ``p qᵀ`` for the
    row group (``(M, d_a, d_a)``), ``pᵀ q`` for the column group (``(M, d_b, d_b)``)."""
    return torch.bmm(p, q.transpose(1, 2), out=out) if rows else torch.bmm(p.transpose(1, 2), q, out=out)


def _gram_out(scratch: Optional[_Scratch], name: str, m: int, d: int) -> Optional[torch.Tensor]:
    """An ``(m, d, d)`` output buffer for :func:`_gram` (None: let bmm allocate)."""
    return None if scratch is None else scratch(name, (m, d, d))


def _table_mm(table: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """``flat (M, K) @ table.T`` for a short ``table (k, K)``, returned as an ``(M, k)`` view.

    Computed as ``(table @ flatᵀ)ᵀ``: BLAS is faster with the short side as the output's rows than
    as its columns (docs/benchmarks.md, "Measured once")."""
    return (table @ flat.transpose(0, 1)).transpose(0, 1)


def gram_bloch(psi: torch.Tensor, n: int, split: Optional[int] = None, scratch: Optional[_Scratch] = None) -> torch.Tensor:
    """Bloch readout of real states ``psi (M, 2^n)`` -> ``(M, n, 2)`` = ``(<X_q>, <Z_q>)``
    (``scratch``: the scan's reusable buffers, internal).

    With Ψ the ``(d_a, d_b)`` matrix of a sample (``split`` qubits in group A), the reduced density
    matrices of the two groups are ``ρ_A = Ψ Ψᵀ`` and ``ρ_B = Ψᵀ Ψ`` (``(16, 16)`` at n = 8), and
    every one-qubit expectation is linear in the ρ of its group: two small batched matmuls and two
    table matmuls, ~8x fewer FLOPs than rotating the whole state by ``H^{⊗n}`` to read <X> as <Z>.
    """
    m = psi.shape[0]
    na, da, db = _split(n, split)
    p = psi.reshape(m, da, db)
    outs = [_table_mm(tab.read, _gram(p, p, rows, _gram_out(scratch, "rho", m, 2 ** size)).view(m, -1))
            for rows, size, tab in _gram_parts(n, na, psi.device, psi.dtype)]
    return torch.cat(outs, dim=-1).view(m, n, 2)


def gram_bloch_grad(psi: torch.Tensor, g: torch.Tensor, n: int, split: Optional[int] = None,
                    scratch: Optional[_Scratch] = None) -> torch.Tensor:
    """``∂L/∂ψ`` of :func:`gram_bloch`: ``psi (M, 2^n)``, ``g (M, n, 2)`` -> ``(M, 2^n)``.

    ``∂L/∂ρ_A`` is symmetric (so is ``read``), hence ``∂L/∂Ψ = 2 (∂L/∂ρ_A) Ψ + 2 Ψ (∂L/∂ρ_B)``.
    """
    m = psi.shape[0]
    na, da, db = _split(n, split)
    p = psi.reshape(m, da, db)
    g2 = 2 * g.reshape(m, n, 2)
    out = _take(scratch, p, "g_psi", (m, da, db))
    q0 = 0
    for rows, size, tab in _gram_parts(n, na, psi.device, psi.dtype):
        gx, gz = g2[:, q0:q0 + size, 0], g2[:, q0:q0 + size, 1]
        d = tab.zsign.shape[1]
        g_rho = torch.index_select(torch.cat((gx, gz @ tab.zsign, gx.new_zeros(m, 1)), 1), 1, tab.slot,
                                   out=_take(scratch, p, "g_rho", (m, d * d))).view(m, d, d)
        if q0 == 0:
            torch.bmm(g_rho, p, out=out) if rows else torch.bmm(p, g_rho, out=out)
        else:  # group B after A: accumulate in place
            out.baddbmm_(p, g_rho)
        q0 += size
    return out.view(m, -1)


# ---------------------------------------------------------------------------- the scan
class _RYScan(torch.autograd.Function):
    # Everything runs time-major (T, B, ...) so that one token's slice of a buffer is contiguous:
    # the per-token matmuls write straight into the stored states / gradients (``out=``, in-place
    # ``baddbmm_``) instead of stacking or copying afterwards.
    @staticmethod
    def forward(ctx, angles, tail, f_a, f_b, na, checkpoint_every):
        # angles (B, T, n); tail (2^w, 2^w) or None; f_a (d_a, d_a), f_b (d_b, d_b) or None
        b, t_len, n = angles.shape
        dim = 2 ** n
        rot = _rotations(angles)  # (2, 2, n, T, B)
        every = checkpoint_every or 1
        need_grad = any(ctx.needs_input_grad[:4])
        keep_all = need_grad and every == 1
        # Stored states: ψ_0 .. ψ_T (every token) or ψ_0, ψ_every, ... (checkpoints only).
        n_saved = t_len + 1 if keep_all else (-(-t_len // every) if need_grad else 1)
        saved = angles.new_empty(n_saved, b, dim)
        saved[0].zero_()
        saved[0, :, 0] = 1
        scratch = _Scratch(angles)
        bloch = angles.new_empty(t_len, b, n, 2)
        psi = saved[0]
        for s0 in range(0, t_len, _BLOCK):
            s1 = min(s0 + _BLOCK, t_len)
            blk = _block(rot, s0, s1, na, f_a, f_b, raw=False, scratch=scratch)
            states = saved[s0 + 1:s1 + 1] if keep_all else scratch("states", (s1 - s0, b, dim))
            _advance(psi, blk.kaf, blk.kbf, tail, states)
            psi = states[-1]
            if need_grad and not keep_all:
                for t in range(s0 + 1, s1 + 1):
                    if t % every == 0 and t < t_len:
                        saved[t // every] = states[t - s0 - 1]
            bloch[s0:s1] = gram_bloch(states.view(-1, dim), n, na, scratch).view(s1 - s0, b, n, 2)
            if not keep_all:  # psi is a view of the reused buffer
                psi = psi.clone()
        ctx.na, ctx.every = na, every
        if need_grad:
            ctx.save_for_backward(rot, tail, f_a, f_b, saved)
        return bloch.transpose(0, 1)

    @staticmethod
    def backward(ctx, g_bloch):
        rot, tail, f_a, f_b, saved = ctx.saved_tensors
        na, every = ctx.na, ctx.every
        n, t_len, b = rot.shape[2:]
        da, db = 2 ** na, 2 ** (n - na)
        dim = da * db
        two_groups = n > na
        g_bloch = g_bloch.transpose(0, 1)  # (T, B, n, 2)
        g_ang = rot.new_empty(t_len, b, n)
        g_tail = torch.zeros_like(tail) if tail is not None else None
        g_fa = torch.zeros_like(f_a) if f_a is not None else None
        g_fb = torch.zeros_like(f_b) if f_b is not None else None
        parts = _gram_parts(n, na, rot.device, rot.dtype)
        # Angle tables: with Φ = F_A P (P = K_A Ψ K'_Bᵀ) the group-A angle gradient is
        # ½ <F_Aᵀ G_φ, J_j P>, linear in C_A = G_φ Pᵀ through the table F_A·turn_j; likewise
        # for group B with F_B. Folding F into the (tiny) table saves a batched matmul, and the
        # sums over samples of C_A and C_B are exactly ∂L/∂F_A and ∂L/∂F_B.
        turns = []
        for (rows, size, tab), f in zip(parts, (f_a, f_b)):
            t_ = tab.turn if f is None else torch.matmul(f, tab.turn)
            turns.append(t_.reshape(size, -1))
        scratch = _Scratch(rot)
        carry = None  # ∂L/∂ψ of the last token before the segment, from the tokens after it
        seg = every if every > 1 else _BLOCK
        bounds = [(s0, min(s0 + seg, t_len)) for s0 in range(0, t_len, seg)]
        w1 = rot.new_empty(b, da, db)
        for s0, s1 in reversed(bounds):
            tc = s1 - s0
            m = tc * b
            blk = _block(rot, s0, s1, na, f_a, f_b, raw=True, scratch=scratch)
            if every > 1:  # recompute the segment from its stored first state
                prev = scratch("prev", (tc + 1, b, dim))
                prev[0] = saved[s0 // every]
                _advance(prev[0], blk.kaf, blk.kbf, tail, prev[1:])
            else:
                prev = saved[s0:s1 + 1]  # (tc + 1, B, D): ψ before token s0 .. after token s1 - 1
            # What does not depend on the backward recursion is done for the whole segment at
            # once, tokens folded into the batch. Φ (before the tail), P and Q (F_A resp. F_B
            # left out) are recomputed from the stored states rather than stored.
            psi_in = prev[:-1].reshape(m, da, db)
            ka, kb, kaf, kbf = [None if k is None else k.view(m, k.shape[-1], k.shape[-1]) for k in blk]
            shape3 = (m, da, db)
            t1 = torch.bmm(psi_in, kbf.transpose(1, 2), out=scratch("t1", shape3)) if two_groups else psi_in
            phi = torch.bmm(kaf, t1, out=scratch("phi", shape3))
            p = phi if f_a is None else torch.bmm(ka, t1, out=scratch("p", shape3))
            if f_b is None or not two_groups:
                q = phi
            else:
                q = torch.bmm(torch.bmm(kaf, psi_in, out=scratch("t2", shape3)), kb.transpose(1, 2),
                              out=scratch("q", shape3))
            # The readout gradient seeds ∂L/∂ψ_t; the recursion adds into it in place.
            g_psi = gram_bloch_grad(prev[1:].reshape(m, dim), g_bloch[s0:s1].reshape(m, n, 2), n, na,
                                    scratch).view(tc, b, dim)
            if carry is not None:
                g_psi[-1] += carry
            g_phi = g_psi if tail is None else scratch("g_phi", (tc, b, dim))
            gpsi_rows = g_psi.view(tc, -1, tail.shape[0]).unbind(0) if tail is not None else None
            gphi_rows = g_phi.view(tc, -1, tail.shape[0]).unbind(0) if tail is not None else None
            gphi3 = g_phi.view(tc, b, da, db).unbind(0)
            gpsi3 = g_psi.view(tc, b, da, db).unbind(0)
            kat_l = blk.kaf.transpose(-2, -1).unbind(0)
            kbf_l = blk.kbf.unbind(0) if two_groups else None
            for i in range(tc - 1, -1, -1):
                # g_φ = (I ⊗ Wᵀ) g_ψ ; g_ψ(token before) += (F_A K_A)ᵀ G_φ (F_B K_B)
                if tail is not None:
                    torch.mm(gpsi_rows[i], tail, out=gphi_rows[i])
                y = torch.bmm(gphi3[i], kbf_l[i], out=w1) if two_groups else gphi3[i]
                if i > 0:
                    gpsi3[i - 1].baddbmm_(kat_l[i], y)
                else:
                    carry = torch.bmm(kat_l[0], y).view(b, dim)
            g_phi_m = g_phi.view(m, da, db)
            if g_tail is not None:
                w = tail.shape[0]
                g_tail.addmm_(g_psi.view(-1, w).transpose(0, 1), phi.view(-1, w))
            angs = []
            for (rows, size, tab), turn, g_f, x in zip(parts, turns, (g_fa, g_fb), (p, q)):
                c = _gram(g_phi_m, x, rows, _gram_out(scratch, "c", m, 2 ** size)).view(m, -1)
                angs.append(_table_mm(turn, c))
                if g_f is not None:
                    g_f += c.sum(0).view(g_f.shape)
            g_ang[s0:s1] = torch.cat(angs, dim=-1).view(tc, b, n)
        return g_ang.transpose(0, 1), g_tail, g_fa, g_fb, None, None


def _check_angles(angles: torch.Tensor) -> int:
    if angles.dim() != 3:
        raise ValueError(f"angles must be (B, T, n), got {tuple(angles.shape)}")
    n = angles.shape[-1]
    if not 1 <= n <= MAX_QUBITS:
        raise ValueError(f"the dense scan handles 1..{MAX_QUBITS} qubits, got {n}")
    if angles.is_complex():
        raise TypeError("the dense scan is the real-amplitude fast path: angles must be real")
    return n


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
    n = _check_angles(angles)
    if unitary.shape != (2 ** n, 2 ** n):
        raise ValueError(f"unitary must be ({2 ** n}, {2 ** n}) for n={n}, got {tuple(unitary.shape)}")
    if unitary.is_complex():
        raise TypeError("dense_ry_scan is the real-amplitude fast path: angles and unitary must be real")
    return _RYScan.apply(angles, unitary.to(angles.dtype), None, None, _split(n, None)[0], checkpoint_every)


def factored_ry_scan(angles: torch.Tensor, f_a: torch.Tensor, f_b: Optional[torch.Tensor],
                     tail: Optional[torch.Tensor], checkpoint_every: Optional[int] = None) -> torch.Tensor:
    """:func:`dense_ry_scan` for an entangler given as ``U = (I ⊗ tail)(f_a ⊗ f_b)``.

    Args:
        angles: ``(B, T, n)`` RY encoding angles per token and qubit.
        f_a: ``(2^{n_a}, 2^{n_a})`` real matrix on the first ``n_a`` qubits (1 <= n_a <= 6).
        f_b: ``(2^{n-n_a}, 2^{n-n_a})`` on the others, or None (identity; must be None if n_a = n).
        tail: ``(2^w, 2^w)`` on the last ``w`` qubits, applied after ``f_a ⊗ f_b``, or None.
        checkpoint_every: as in :func:`dense_ry_scan`.

    Returns:
        ``(B, T, n, 2)`` Bloch vectors, equal to ``dense_ry_scan`` with the assembled ``U``.
    """
    n = _check_angles(angles)
    if f_a is None or f_a.dim() != 2 or f_a.shape[0] != f_a.shape[1] or f_a.shape[0] < 2:
        raise ValueError("f_a must be a square (2^n_a, 2^n_a) matrix")
    na = f_a.shape[0].bit_length() - 1
    if 2 ** na != f_a.shape[0] or not 1 <= na <= min(n, 6) or n - na > 6:
        raise ValueError(f"f_a of shape {tuple(f_a.shape)} does not split {n} qubits into groups of at most 6")
    if f_b is not None and (na == n or f_b.shape != (2 ** (n - na),) * 2):
        raise ValueError(f"f_b must be ({2 ** (n - na)}, {2 ** (n - na)}) for n={n}, n_a={na}")
    if tail is not None and (tail.dim() != 2 or tail.shape[0] != tail.shape[1]
                             or tail.shape[0] not in [2 ** w for w in range(1, n + 1)]):
        raise ValueError(f"tail must be (2^w, 2^w) with 1 <= w <= {n}, got {tuple(tail.shape)}")
    mats = [f_a, f_b, tail]
    if any(t is not None and t.is_complex() for t in mats):
        raise TypeError("factored_ry_scan is the real-amplitude fast path: all matrices must be real")
    f_a, f_b, tail = [None if t is None else t.to(angles.dtype) for t in mats]
    nb = n - na
    if f_b is not None and tail is not None and tail.shape[0] >= 2 ** nb:
        # Group B lies inside the tail's qubits: fold f_b into the tail (a tiny matmul, differentiated
        # by autograd), which spares the scan's backward one group matrix and two batched matmuls.
        eye = torch.eye(tail.shape[0] >> nb, dtype=tail.dtype, device=tail.device)
        tail, f_b = tail @ torch.kron(eye, f_b.contiguous()), None
    return _RYScan.apply(angles, tail, f_a, f_b, na, checkpoint_every)
