"""The MPS update in torch: the reference route, which every fast route is tested against.

Each function takes a site list ``ts`` (tensors ``(B, χl, 2, χr)``, mixed-canonical with the
orthogonality centre at ``c``) and returns a new list; ``ts`` itself is never modified, so a
step that raises leaves the caller's state as it was::

    moved(ts, c, target, policy)                     -> ts             QR steps of the centre
    two_site(ts, c, gate, i, direction, policy)      -> ts, c, err     gate on (i, i+1), split
    neighbour_gates(ts, c, gates, firsts, policy)    -> ts, c, err     gates[k] on (firsts[k], +1)
    physical(ts, gates)                              -> ts             gates[q] on site q
    circuit(ts, c, ops, policy)                      -> ts, c, err     layers in turn (a token)

``err`` is a ``TruncationError`` (``(B,)`` discarded weight and ``log(1 - ε)``). The fast routes
have the same signatures: ``mps_host`` (numpy, one sample) and ``mps_packed`` (numba-compiled,
sample by sample); ``qlam_tn.routes`` is the one place that decides which runs.

This route alone runs under autograd, in float32/complex64 and on CUDA. Canonical moves use QR;
under autograd QR's backward divides by ``R``'s diagonal and returns inf on the rank-deficient
bonds that per-sample truncation produces, so a move whose ``R`` is singular takes the SVD of
that ``R`` with the broadened backward instead (``qr_move``: one QR per move either way).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from .linalg import TruncationError, TruncationPolicy, svd, truncated_split, with_qr_backward, with_svd_backward

__all__ = ["moved", "two_site", "neighbour_gates", "physical", "circuit", "swap_pair", "qr_move", "pair_gate"]

# QR's backward solves with R: under autograd a move uses it only where every |R_ii| is above
# this many machine epsilons of the largest (R numerically full rank: 2e-13 in float64, 1e-4 in
# float32), and the SVD with the broadened backward otherwise.
QR_GRAD_MIN_DIAG_EPS = 1000

Sites = List[torch.Tensor]


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on any of ``tensors``."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def swap_pair(gate: torch.Tensor) -> torch.Tensor:
    """Re-express a ``(…, 4, 4)`` gate on ``(q0, q1)`` as the same gate on ``(q1, q0)``."""
    g = gate.reshape(gate.shape[:-2] + (2, 2, 2, 2))
    return g.transpose(-4, -3).transpose(-2, -1).reshape(gate.shape)


def qr_move(m: torch.Tensor, grad_eps: float, grad: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``m (B, p, q) = Q R`` for a centre move: ``Q`` an isometry ``(B, p, k)``, ``R (B, k, q)``.

    Outside autograd this is LAPACK's QR. Under autograd (``grad``) the QR is computed once outside
    autograd; where the batch's shared bond is wider than a sample's rank, ``R`` is singular and
    QR's backward would return inf: there the factors become a thin SVD ``Q R = (Q U_R) S Vh``
    from the SVD of that ``R`` (``(k, q)``, smaller than ``m``), ``Q ← Q U_R``, ``R ← S·Vh``, with
    the broadened SVD backward; elsewhere QR's backward is attached to the QR already computed
    (``linalg.with_qr_backward``). The check costs one host sync per move.
    """
    if not grad:
        return torch.linalg.qr(m)
    with torch.no_grad():
        q, r = torch.linalg.qr(m)
    p_, q_ = m.shape[-2], m.shape[-1]
    if p_ >= q_:
        diag = r.diagonal(dim1=-2, dim2=-1).abs()
        fin = torch.finfo(diag.dtype)
        if bool((diag > QR_GRAD_MIN_DIAG_EPS * fin.eps * diag.amax(-1, keepdim=True).clamp_min(fin.tiny)).all()):
            return with_qr_backward(m, q, r)
    # A singular R (or a wide m, whose R is not square): the SVD of R, which q turns into m's.
    with torch.no_grad():
        u_r, S, Vh = svd(r, grad_eps)  # linalg.batched_svd: the batched driver on CUDA
    U, S, Vh = with_svd_backward(m, q @ u_r, S, Vh, grad_eps, "right")
    return U, S.to(Vh.dtype).unsqueeze(-1) * Vh


def moved(ts: Sites, c: int, target: int, policy: TruncationPolicy) -> Sites:
    """The sites with the centre moved from ``c`` to ``target`` by QR steps (no truncation)."""
    if c == target:
        return ts
    ts = list(ts)
    b = ts[0].shape[0]
    while c < target:
        a = ts[c]
        l, r = a.shape[1], a.shape[3]
        q, rr = qr_move(a.reshape(b, l * 2, r), policy.grad_eps, needs_grad(a, ts[c + 1]))
        ts[c] = q.reshape(b, l, 2, q.shape[-1])
        nxt = ts[c + 1]
        ts[c + 1] = torch.matmul(rr, nxt.reshape(b, r, -1)).reshape(b, rr.shape[-2], 2, nxt.shape[3])
        c += 1
    while c > target:
        a = ts[c]
        l, r = a.shape[1], a.shape[3]
        q, rr = qr_move(a.reshape(b, l, 2 * r).mH, policy.grad_eps, needs_grad(a, ts[c - 1]))
        q_h, lower = q.mH, rr.mH
        ts[c] = q_h.reshape(b, q_h.shape[-2], 2, r)
        prv = ts[c - 1]
        ts[c - 1] = torch.matmul(prv.reshape(b, -1, l), lower).reshape(b, prv.shape[1], 2, lower.shape[-1])
        c -= 1
    return ts


def two_site(ts: Sites, c: int, gate: Optional[torch.Tensor], i: int, direction: str,
             policy: TruncationPolicy) -> Tuple[Sites, int, TruncationError]:
    """``gate`` (``(4, 4)``, per-sample ``(B, 4, 4)``, or ``None`` for SWAP) on sites ``(i, i+1)``.

    The centre moves onto the pair, the pair is contracted to ``θ (B, 2χl, 2χr)``, the gate
    applied, and ``θ`` split with truncation (``linalg.truncated_split``); the new centre is
    ``i + 1`` for ``direction="right"`` and ``i`` for ``"left"``.
    """
    ts = list(moved(ts, c, i if c <= i else i + 1, policy))  # a list of its own: the caller's stays as it was
    b = ts[0].shape[0]
    a0, a1 = ts[i], ts[i + 1]
    l, m, r = a0.shape[1], a0.shape[3], a1.shape[3]
    # θ[b, x, (i j), z] by one batched matmul over the shared bond, then the gate on the
    # 4-dim pair index (matmul, not einsum: a fraction of the per-call overhead at small χ).
    theta = torch.matmul(a0.reshape(b, l * 2, m), a1.reshape(b, m, 2 * r)).reshape(b, l, 4, r)
    if gate is None:
        theta = theta.reshape(b, l, 2, 2, r).transpose(2, 3)
    else:
        theta = pair_gate(gate, theta)
    left, right, disc, kept2 = truncated_split(theta.reshape(b, l * 2, 2 * r), policy, absorb=direction)
    k = left.shape[-1]
    ts[i] = left.reshape(b, l, 2, k)
    ts[i + 1] = right.reshape(b, k, 2, r)
    return ts, (i + 1 if direction == "right" else i), TruncationError.of_split(disc, kept2)


def neighbour_gates(ts: Sites, c: int, gates: torch.Tensor, firsts: Sequence[int],
                    policy: TruncationPolicy) -> Tuple[Sites, int, TruncationError]:
    """``gates[..., k, :, :]`` (``(P, 4, 4)`` or per-sample ``(B, P, 4, 4)``) on sites
    ``(firsts[k], firsts[k] + 1)``, in order. Each gate moves the centre onto its pair's nearer
    site and splits towards where the centre already was, so a layer in sweep order needs one
    site move per gate."""
    err = TruncationError()
    for k, i in enumerate(firsts):
        ts, c, e = two_site(ts, c, gates[..., k, :, :], i, "right" if c <= i else "left", policy)
        err = err + e
    return ts, c, err


def pair_gate(gate: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``gate`` (``(d, d)`` or per-sample ``(B, d, d)``) on index 2 of ``theta (B, l, d, r)``.

    One batched matmul ``(B, d, d) @ (B, d, l·r)`` around two transposing copies: broadcasting the
    gate over ``l`` instead makes ``B·l`` matmuls of ``d × d`` by ``d × r``, whose per-matrix cost
    dominates at these sizes (forward and backward)."""
    b, l, d, r = theta.shape
    t = theta.transpose(1, 2).reshape(b, d, l * r)
    g = gate if gate.dim() == 3 else gate.expand(b, d, d)
    return torch.bmm(g, t).reshape(b, d, l, r).transpose(1, 2)


def physical(ts: Sites, gates: torch.Tensor) -> Sites:
    """``gates[..., q, :, :]`` (``(n, 2, 2)`` or per-sample ``(B, n, 2, 2)``) on site ``q``'s
    physical index, every site (``pair_gate``'s layout). The canonical form holds for unitary
    gates only."""
    return [pair_gate(gates[:, q] if gates.dim() == 4 else gates[q], t) for q, t in enumerate(ts)]


def circuit(ts: Sites, c: int, ops: Sequence[tuple], policy: TruncationPolicy) -> Tuple[Sites, int, TruncationError]:
    """Layers in turn: ``("1q", gates)`` as ``physical`` (unitary gates), ``("2q", gates, firsts)``
    as ``neighbour_gates``."""
    return layer_by_layer(ts, c, ops, policy, physical, neighbour_gates)


def layer_by_layer(ts: Sites, c: int, ops: Sequence[tuple], policy: TruncationPolicy, physical_fn,
                   neighbour_gates_fn) -> Tuple[Sites, int, TruncationError]:
    """``circuit`` with a route's own ``physical`` and ``neighbour_gates`` (the numpy route runs
    its programs this way too)."""
    err = TruncationError()
    for op in ops:
        if op[0] == "1q":
            ts = physical_fn(ts, op[1])
        else:
            ts, c, e = neighbour_gates_fn(ts, c, op[1], op[2], policy)
            err = err + e
    return ts, c, err
