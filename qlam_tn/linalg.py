"""Truncated SVD with a stable backward, and the truncation policy.

``svd(A)`` is a thin SVD whose backward uses Lorentzian broadening (Liao et al., PRX 9,
031041, 2019): every ``1/x`` of the textbook formula becomes ``x / (x² + ε)`` with
``ε = eps_rel · s_max²`` for ``1/s`` and ``ε = eps_rel · s_max⁴`` for ``1/(s_j² - s_i²)``
(each on its own scale, so the bias does not depend on the norm). It stays finite on the exactly degenerate spectra that every product
state produces, where ``torch.linalg.svd``'s own backward returns NaN.

``truncated_svd(A, policy)`` computes the full thin SVD, then decides per sample how many
singular values to keep. A batch shares one tensor shape, so the kept width is the largest
per-sample rank; a sample that wants fewer has its extra singular values set to zero (its
truncation is exact per sample, and its discarded weight is its own).

Cutoff modes follow quimb (``quimb.tensor.decomp``):

* ``abs``: keep ``s > cutoff``;
* ``rel``: keep ``s > cutoff · s_max``;
* ``sum2``: drop the smallest values while their ``Σ s²`` stays ``<= cutoff``;
* ``rsum2``: as ``sum2`` with the target ``cutoff · Σ s²`` (the default, like quimb's MPS gates).

At least one value is always kept; ``max_bond`` caps the rest.

``truncated_split(A, policy, absorb)`` returns the two factors an MPS keeps (isometry and new
centre): ``gram_split`` (``eigh`` of the smaller-side Gram matrix, faster than LAPACK's SVD for
the 32–128-wide matrices of a two-site update; ``qlam bench engine --lapack`` times the two side
by side; quimb's ``eig`` split method does the same) or ``svd_split`` (``truncated_svd``, the
reference it is tested against), as ``TruncationPolicy.split`` says; both run under autograd.

Centre moves under autograd: ``with_qr_backward`` / ``with_svd_backward`` attach QR's or the
broadened SVD's backward to factors computed outside autograd, so a move computes one QR and,
where ``R`` is singular, the SVD of that ``R`` instead of a second factorisation of the site.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.autograd.function import once_differentiable

CUTOFF_MODES = ("abs", "rel", "sum2", "rsum2")
SPLIT_METHODS = ("auto", "svd", "gram")

# Kept singular values above this fraction of s_max use the exact gauge form of the backward.
_GAUGE_FORM_MIN = 1e-6

__all__ = ["svd", "stable_eigh", "gram_split", "svd_split", "with_qr_backward", "with_svd_backward", "batched_svd", "TruncationPolicy", "TruncationError", "LinAlgError", "check_split_weights", "rank_rule", "truncated_svd", "truncated_split", "CUTOFF_MODES"]


def _broadened_inverse(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x / (x² + ε): 1/x away from zero, bounded by 1/(2√ε) near it."""
    return x / (x * x + eps)


class _StableSVD(torch.autograd.Function):
    """Thin SVD ``A = U diag(S) Vh`` with a Lorentzian-broadened backward.

    Shapes: ``A (..., m, n) -> U (..., m, k), S (..., k), Vh (..., k, n)``, ``k = min(m, n)``.
    """

    @staticmethod
    def forward(ctx, A, eps_rel, policy, absorb):
        U, S, Vh = batched_svd(A)
        ctx.eps_rel = eps_rel
        ctx.absorb = absorb
        k = S.shape[-1]
        if policy is not None:
            ranks = policy.ranks(S)
        else:
            ranks = torch.full(S.shape[:-1], k, dtype=torch.long, device=S.device)
        keep = torch.arange(k, device=S.device) < ranks.unsqueeze(-1)
        ctx.mark_non_differentiable(ranks)
        ctx.save_for_backward(U, S, Vh, keep)
        return U, S, Vh, ranks

    @staticmethod
    @once_differentiable  # second derivatives raise: the saved factors carry no graph
    def backward(ctx, gU, gS, gVh, _g_ranks=None):
        U, S, Vh, keep = ctx.saved_tensors
        return svd_backward(U, S, Vh, keep, ctx.eps_rel, ctx.absorb, gU, gS, gVh), None, None, None


# cuSOLVER's batched Jacobi SVD (``gesvdjBatched``) takes matrices up to 32 x 32.
BATCHED_SVD_MAX = 32


def batched_svd(A: torch.Tensor):
    """Thin ``torch.linalg.svd`` of ``A (B, m, n)``, the whole batch in one call. On CUDA, matrices of
    at most ``BATCHED_SVD_MAX`` rows and columns take the batched Jacobi driver (``gesvdj``: one
    kernel for the batch, where the default driver loops over the samples); on the CPU, LAPACK's
    ``gesdd`` per sample (torch's only CPU driver). ``eigh`` needs no such choice: on CUDA torch
    itself takes the batched Jacobi ``syevjBatched`` for batches of matrices up to 32 x 32."""
    if A.is_cuda and max(A.shape[-2:]) <= BATCHED_SVD_MAX:
        return torch.linalg.svd(A, full_matrices=False, driver="gesvdj")
    return torch.linalg.svd(A, full_matrices=False)


def svd_backward(U, S, Vh, keep, eps_rel: float, absorb: Optional[str], gU, gS, gVh) -> torch.Tensor:
    """The broadened backward of a thin SVD ``A = U diag(S) Vh`` (``_StableSVD``'s; ``keep (..., k)``
    marks the values the caller keeps, ``absorb`` as ``svd`` takes it) -> ``gA (..., m, n)``."""
    m, n, k = U.shape[-2], Vh.shape[-1], S.shape[-1]
    tiny = torch.finfo(S.dtype).tiny
    smax2 = (S[..., :1] ** 2).clamp_min(tiny)
    # Broaden each 1/x on its own scale: x = s for S⁻¹, x = s_j² - s_i² for the gap terms. Each ε
    # at least ``tiny``: eps_rel · s_max⁴ underflows to 0 for a small state (s_max ~1e-10 in
    # float32, ~1e-75 in float64), and a zero gap over a zero ε is NaN.
    eps = (eps_rel * smax2).clamp_min(tiny)  # (..., 1)
    eps_gap = (eps_rel * smax2 * smax2).clamp_min(tiny)
    Sc = S.to(U.dtype)
    Uh = U.mH
    V = Vh.mH

    # Inner k x k matrix.
    inner = torch.zeros(U.shape[:-2] + (k, k), dtype=U.dtype, device=U.device)
    J = Uh @ gU if gU is not None else None  # U† gU
    K = Vh @ gVh.mH if gVh is not None else None  # V† gV
    if gU is not None or gVh is not None:
        S2 = S * S
        diff = S2.unsqueeze(-2) - S2.unsqueeze(-1)  # (.., i, j) = s_j² - s_i²
        Einv = _broadened_inverse(diff, eps_gap.unsqueeze(-1))
        Einv = Einv.to(U.dtype)
        if J is not None:
            skewJ = J - J.mH
            inner = inner + skewJ * Sc.unsqueeze(-2) * Einv
            if U.is_complex():
                sinv = _broadened_inverse(S, eps).to(U.dtype)
                inner = inner + torch.diag_embed(1j * J.diagonal(dim1=-2, dim2=-1).imag * sinv)
        if K is not None:
            skewK = K - K.mH
            inner = inner + Sc.unsqueeze(-1) * skewK * Einv
    if absorb is not None and (gU is not None or gVh is not None):
        # The caller keeps one factor as an isometry and absorbs S into the other, the new
        # orthogonality centre, and its loss depends on the centre only through the state.
        # The centre's gradient is then exact, M = U† G V follows from it alone, and M_ij is
        # the kept pairs' entry of the inner matrix, also where s_i = s_j (a Bell pair's
        # Schmidt values), where the textbook 1/(s_j² - s_i²) form is 0/0 and broadening
        # would drop it. (The isometry's gradient carries an extra Hermitian part from the
        # canonical-form assumptions downstream; the skew parts the textbook form uses
        # cancel it, this form avoids it.)
        # Used only where s > _GAUGE_FORM_MIN · s_max (below): a plain, unbiased inverse.
        sinv_k = (1 / S.clamp_min(torch.finfo(S.dtype).tiny)).to(U.dtype)
        if absorb == "right":  # centre S·Vh: K = M† S  ->  M_ij = conj(K_ji) / s_i
            m_kept = (K.mH if K is not None else torch.zeros_like(inner)) * sinv_k.unsqueeze(-1)
        else:  # centre U·S: J = M S  ->  M_ij = J_ij / s_j
            m_kept = (J if J is not None else torch.zeros_like(inner)) * sinv_k.unsqueeze(-2)
        # Both forms agree away from degeneracy. Dividing by s is safe only for values well
        # above zero: a kept pair with a (numerically) zero member keeps the textbook form,
        # which reaches that entry through the other, nonzero value.
        big = keep & (S > _GAUGE_FORM_MIN * S[..., :1])
        pair = big.unsqueeze(-1) & big.unsqueeze(-2)
        pair = pair & ~torch.eye(k, dtype=torch.bool, device=pair.device)
        inner = torch.where(pair, m_kept, inner)
    if gS is not None:
        inner = inner + torch.diag_embed(gS.to(U.dtype))

    gA = U @ inner @ Vh
    sinv = _broadened_inverse(S, eps).to(U.dtype)
    if gU is not None and m > k:
        # (I - U U†) gU S⁻¹ V†
        gUS = gU * sinv.unsqueeze(-2)
        gA = gA + (gUS - U @ (Uh @ gUS)) @ Vh
    if gVh is not None and n > k:
        # U S⁻¹ gV† (I - V V†)
        SgVh = sinv.unsqueeze(-1) * gVh
        gA = gA + U @ (SgVh - (SgVh @ V) @ Vh)
    return gA



class _StableEigh(torch.autograd.Function):
    """``eigh`` of a Hermitian ``G (..., k, k)`` (ascending ``L (..., k)``, ``V (..., k, k)``) with
    the Lorentzian-broadened backward: ``1/(λ_j - λ_i)`` becomes ``x / (x² + ε)``, ``ε = eps_rel ·
    λ_max²`` (for a Gram matrix ``λ = s²``: the SVD backward's ``eps_rel · s_max⁴``). Zero and
    repeated eigenvalues (padded bonds, product states) give finite gradients; a loss invariant
    to rotations inside an eigenspace (every loss of an MPS state is, for the kept and for the
    cut space) gets its exact gradient, since its ``skew(V† V̄)`` vanishes there."""

    @staticmethod
    def forward(ctx, G, eps_rel):
        L, V = gram_eigh(G)
        ctx.eps_rel = eps_rel
        ctx.save_for_backward(L, V)
        return L, V

    @staticmethod
    @once_differentiable  # second derivatives raise: the saved factors carry no graph
    def backward(ctx, gL, gV):
        L, V = ctx.saved_tensors
        return eigh_backward(L, V, ctx.eps_rel, gL, gV), None


def gram_eigh(G: torch.Tensor):
    """``torch.linalg.eigh(G)`` of Hermitian positive semidefinite ``G (B, k, k)``, ascending; samples
    whose result is not finite are redone in double precision. (LAPACK's single-precision ``syevd``
    can return NaN for a graded Gram matrix with subnormal entries, e.g. of a nearly product state,
    where the double-precision one does not.) One host sync."""
    L, V = torch.linalg.eigh(G)
    if G.dtype in (torch.float32, torch.complex64):
        bad = ~torch.isfinite(L).all(-1)
        if bool(bad.any()):
            wide = torch.complex128 if G.is_complex() else torch.float64
            L2, V2 = torch.linalg.eigh(G[bad].to(wide))
            L, V = L.clone(), V.clone()
            L[bad], V[bad] = L2.to(L.dtype), V2.to(V.dtype)
    return L, V


def eigh_backward(L, V, eps_rel: float, gL, gV) -> torch.Tensor:
    """``_StableEigh``'s backward: ``G̅ = V (diag(L̅) + skew(V† V̅) ∘ F) V†``, ``F_ij`` the
    broadened ``1/(λ_j - λ_i)`` (0 on the diagonal: the phase of an eigenvector is not used)."""
    k = L.shape[-1]
    if gV is None:
        inner = torch.zeros(L.shape[:-1] + (k, k), dtype=V.dtype, device=V.device)
    else:
        X = V.mH @ gV
        # In units of λ_max (no underflow of eps_rel · λ_max² for a small matrix: _GramSplit).
        lmax = L.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(L.dtype).tiny).unsqueeze(-1)  # (..., 1, 1)
        gap = (L.unsqueeze(-2) - L.unsqueeze(-1)) / lmax  # (..., i, j) = (λ_j - λ_i) / λ_max
        inner = 0.5 * (X - X.mH) * (_broadened_inverse(gap, eps_rel) / lmax).to(V.dtype)
    if gL is not None:
        inner = inner + torch.diag_embed(gL.to(V.dtype))
    return V @ inner @ V.mH


def stable_eigh(G: torch.Tensor, eps_rel: float = 1e-12):
    """``torch.linalg.eigh(G)`` (ascending) with the broadened backward of ``_StableEigh``."""
    return _StableEigh.apply(G, eps_rel)


class _GivenQR(torch.autograd.Function):
    """Attach QR's backward to factors computed outside autograd: ``m (..., p, q) = Q R``, ``p >= q``,
    ``R`` square and invertible (the caller checks). Forward returns ``(Q, R)`` as given."""

    @staticmethod
    def forward(ctx, m, factors):
        q, r = factors
        ctx.save_for_backward(q, r)
        return q.view_as(q), r.view_as(r)

    @staticmethod
    @once_differentiable  # second derivatives raise: the saved factors carry no graph
    def backward(ctx, gQ, gR):
        q, r = ctx.saved_tensors
        return qr_backward(q, r, gQ, gR), None


def qr_backward(q, r, gQ, gR) -> torch.Tensor:
    """The backward of a reduced QR ``m = Q R`` with ``m (..., p, q)``, ``p >= q``, ``R`` invertible:
    ``m̅ = [Q̅ + Q copyltu(X)] R^{-†}`` with ``X = R R̅† - Q̅† Q`` (Walter & Lehmann 2018; PyTorch's
    ``linalg_qr_backward``), ``copyltu`` the Hermitian matrix of ``X``'s lower triangle (real
    diagonal)."""
    if gQ is None:
        gQ = torch.zeros_like(q)
    X = -(gQ.mH @ q)
    if gR is not None:
        X = X + r @ gR.mH
    low = X.tril(-1)
    sym = low + low.mH + torch.diag_embed(X.diagonal(dim1=-2, dim2=-1).real.to(X.dtype))
    b = gQ + q @ sym
    # b R^{-†}: solve X R† = b, R† lower triangular.
    return torch.linalg.solve_triangular(r.mH, b, upper=False, left=False)


class _GivenSVD(torch.autograd.Function):
    """Attach the broadened SVD backward (``svd_backward``) to a thin SVD ``m = U diag(S) Vh``
    computed outside autograd (e.g. as ``(Q U_R) S Vh`` from a QR already at hand). Forward
    returns ``(U, S, Vh)`` as given."""

    @staticmethod
    def forward(ctx, m, factors, eps_rel, absorb):
        U, S, Vh = factors
        keep = torch.ones(S.shape, dtype=torch.bool, device=S.device)
        ctx.eps_rel, ctx.absorb = eps_rel, absorb
        ctx.save_for_backward(U, S, Vh, keep)
        return U.view_as(U), S.view_as(S), Vh.view_as(Vh)

    @staticmethod
    @once_differentiable  # second derivatives raise: the saved factors carry no graph
    def backward(ctx, gU, gS, gVh):
        U, S, Vh, keep = ctx.saved_tensors
        return svd_backward(U, S, Vh, keep, ctx.eps_rel, ctx.absorb, gU, gS, gVh), None, None, None


def with_qr_backward(m: torch.Tensor, q: torch.Tensor, r: torch.Tensor):
    """``(q, r)``, a reduced QR of ``m (B, p, q)`` (``p >= q``, ``r`` invertible) computed without
    autograd, returned with QR's backward to ``m`` attached (one QR, not two, per centre move)."""
    return _GivenQR.apply(m, (q, r))


def with_svd_backward(m: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor,
                      eps_rel: float = 1e-12, absorb: Optional[str] = None):
    """``(U, S, Vh)``, a thin SVD of ``m`` computed without autograd (descending ``S``), returned with
    the broadened backward of ``svd`` attached (``absorb`` as ``svd`` takes it)."""
    return _GivenSVD.apply(m, (U, S, Vh), eps_rel, absorb)

def svd(A: torch.Tensor, eps_rel: float = 1e-12, absorb: Optional[str] = None):
    """Thin SVD with the stable backward. ``A (..., m, n)`` -> ``U, S, Vh``.

    ``eps_rel`` sets the Lorentzian broadening of the backward: ``eps_rel · s_max²`` for ``1/s``,
    ``eps_rel · s_max⁴`` for ``1/(s_j² - s_i²)``. ``absorb="right"`` (``U`` kept as an isometry,
    ``S·Vh`` the new centre) or ``"left"`` (``U·S`` the centre, ``Vh`` the isometry) tells the
    backward how an MPS uses the factors, which makes it exact on degenerate spectra.
    """
    if absorb not in (None, "left", "right"):
        raise ValueError(f"absorb must be None, 'left' or 'right', got {absorb!r}")
    U, S, Vh, _ = _StableSVD.apply(A, eps_rel, None, absorb)
    return U, S, Vh


class LinAlgError(np.linalg.LinAlgError, torch.linalg.LinAlgError):
    """A factorisation of the MPS update failed (a NaN or infinity reached it), whichever route ran
    it: ``except`` numpy's or torch's ``LinAlgError`` (or ``ValueError``) catches it on every route."""


@dataclass(frozen=True)
class TruncationPolicy:
    """How a bond is cut after a two-site update.

    Attributes:
        max_bond: largest bond dimension kept (``None``: no cap).
        cutoff: threshold whose meaning depends on ``cutoff_mode`` (``0`` disables it).
        cutoff_mode: one of ``abs | rel | sum2 | rsum2`` (quimb's names); default ``rsum2``.
        renormalize: rescale the kept singular values to ``Σ s² = 1`` after every split, so
            the state stays normalised (and rounding drift is removed); the discarded
            weight is still recorded.
        grad_eps: relative Lorentzian broadening of the SVD and ``eigh`` backwards.
        split: how every route factors a two-site update (the one decision:
            ``uses_gram_split``): ``"auto"`` (``eigh`` of the smaller Gram matrix outside
            autograd where it resolves the cutoff: float64/complex128, like quimb's ``eig``
            method; LAPACK's SVD otherwise), ``"gram"`` (``eigh`` in every dtype, the fast choice for
            float32 training with saturated bonds: see ``gram_split`` for its accuracy) or
            ``"svd"`` (always LAPACK's SVD: exact small singular values, the reference).
    """

    max_bond: Optional[int] = None
    cutoff: float = 1e-12
    cutoff_mode: str = "rsum2"
    renormalize: bool = False
    grad_eps: float = 1e-12
    split: str = "auto"

    def __post_init__(self):
        if self.max_bond is not None:
            if isinstance(self.max_bond, bool) or not isinstance(self.max_bond, int):
                raise TypeError(f"max_bond must be an int or None, got {self.max_bond!r}")
            if self.max_bond < 1:
                raise ValueError(f"max_bond must be >= 1 (or None for exact), got {self.max_bond}")
        if self.cutoff_mode not in CUTOFF_MODES:
            raise ValueError(f"unknown cutoff_mode {self.cutoff_mode!r}; choose one of {CUTOFF_MODES}")
        if not (math.isfinite(self.cutoff) and self.cutoff >= 0.0):
            raise ValueError(f"cutoff must be a finite number >= 0, got {self.cutoff}")
        if not (math.isfinite(self.grad_eps) and self.grad_eps > 0.0):
            raise ValueError(f"grad_eps must be a finite number > 0, got {self.grad_eps}")
        if self.split not in SPLIT_METHODS:
            raise ValueError(f"unknown split {self.split!r}; choose one of {SPLIT_METHODS}")

    def ranks(self, S: torch.Tensor) -> torch.Tensor:
        """Per-sample number of singular values to keep. ``S (B, k)`` sorted descending -> ``(B,)`` long.

        The rank rule itself is ``rank_rule`` (one definition for every route)."""
        s2 = S.detach().flip(-1).square()
        return rank_rule(s2, s2.cumsum(-1), self)


@dataclass(frozen=True, eq=False)
class TruncationError:
    """What truncation cut, per sample, as a value that adds up (TeNPy's ``TruncationError``).

    Attributes:
        discarded: ``(B,)`` ``Σ s²`` cut, in the state's absolute units (a float for one sample).
        log_fidelity: ``(B,)`` ``Σ log(1 - ε)`` over the cuts, ε the fraction of that split's
            weight it cut; ``exp`` of it is the fidelity estimate.

    ``a + b`` is the error of ``a``'s cuts followed by ``b``'s (``sum`` works too). Fields may be
    torch tensors, numpy arrays or Python floats (a one-sample kernel's); a sum with a tensor on
    either side is a tensor. ``MPS`` adds them to its totals.
    """

    discarded: object = 0.0
    log_fidelity: object = 0.0

    @classmethod
    def of_split(cls, discarded, kept2) -> "TruncationError":
        """The error of one split that cut ``discarded`` and kept ``kept2`` (``Σ s²``, per sample
        tensors or floats); ``0 / 0`` counts as no loss."""
        if isinstance(discarded, torch.Tensor):
            tiny = torch.finfo(kept2.dtype).tiny
            return cls(discarded, torch.log1p(-(discarded / (discarded + kept2).clamp_min(tiny))))
        total = discarded + kept2
        if total <= 0:
            return cls(discarded, 0.0)
        return cls(discarded, math.log1p(-discarded / total) if kept2 > 0 else -math.inf)

    def __add__(self, other: "TruncationError") -> "TruncationError":
        if not isinstance(other, TruncationError):
            return NotImplemented
        return TruncationError(_plus(self.discarded, other.discarded), _plus(self.log_fidelity, other.log_fidelity))

    def __radd__(self, other) -> "TruncationError":
        if isinstance(other, (int, float)) and other == 0:  # sum([...]) starts from 0
            return self
        return NotImplemented

    @property
    def fidelity(self):
        """``Π (1 - ε)`` over the cuts."""
        if isinstance(self.log_fidelity, torch.Tensor):
            return torch.exp(self.log_fidelity)
        return np.exp(self.log_fidelity)


def check_split_weights(total) -> None:
    """Refuse a split whose weight ``Σ s²`` (per sample: ``(B,)`` tensor, or a float) is not finite
    (``LinAlgError``: LAPACK's eigensolvers may return NaN for a NaN or infinite input instead of
    failing) or zero (``ValueError``: the gate annihilated the state, e.g. a projector onto an
    outcome of probability 0). The centre sits on the pair, so this is the sample's whole norm²:
    nothing is committed, and every expectation stays defined."""
    if isinstance(total, torch.Tensor):
        # One host sync for both checks (each a device round trip on CUDA).
        finite, positive = (bool(v) for v in torch.stack(
            [torch.isfinite(total).all(), (total >= torch.finfo(total.dtype).tiny).all()]).tolist())
    else:
        finite, positive = math.isfinite(total), total >= sys.float_info.min
    if not finite:
        raise LinAlgError("a NaN or infinite value reached a two-site split (a gate or site was not finite)")
    if not positive:
        raise ValueError("the gate leaves a sample with zero norm (or a norm that underflows): a projector onto "
                         "an outcome of probability 0?")


def _plus(a, b):
    """``a + b`` with a tensor on either side giving a tensor (numpy's ``+`` refuses a tensor on its right)."""
    if isinstance(b, torch.Tensor) and not isinstance(a, torch.Tensor):
        a = torch.as_tensor(a, dtype=b.dtype, device=b.device)
    elif isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
        b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
    return a + b


def truncated_svd(A: torch.Tensor, policy: TruncationPolicy, absorb: str = "right"):
    """Truncated SVD of a batch of matrices at the orthogonality centre.

    ``absorb`` says which factor the caller turns into the new centre (see ``svd``); the
    backward is then exact on degenerate kept pairs.

    Args:
        A: ``(B, m, n)``.
        policy: the truncation policy.

    Returns:
        ``U (B, m, r), S (B, r), Vh (B, r, n), discarded (B,), kept_norm2 (B,)`` where ``r`` is
        the largest per-sample rank, ``discarded`` is ``Σ s²`` cut per sample (in the state's
        absolute units) and ``kept_norm2`` is ``Σ s²`` kept (before any renormalisation).
        With ``policy.renormalize`` the kept ``S`` is rescaled to ``Σ s² = 1``.
    """
    if absorb not in ("left", "right"):
        raise ValueError(f"absorb must be 'left' or 'right', got {absorb!r}")
    U, S, Vh, ranks = _StableSVD.apply(A, policy.grad_eps, policy, absorb)
    S2 = S * S
    total = S2.sum(-1)
    check_split_weights(total)
    r = int(ranks.max())
    k = S.shape[-1]
    if r < k or bool((ranks < r).any()):
        keep = torch.arange(k, device=S.device) < ranks.unsqueeze(-1)  # (B, k)
        S_kept = torch.where(keep, S, torch.zeros((), dtype=S.dtype, device=S.device))
        kept2 = (S_kept * S_kept).sum(-1)
        # Sum what is dropped directly: total - kept2 cancels to zero in float32 for cuts < 1e-7.
        discarded = torch.where(keep, torch.zeros((), dtype=S.dtype, device=S.device), S2).sum(-1)
        U, S_kept, Vh = U[..., :r], S_kept[..., :r], Vh[..., :r, :]
    else:
        S_kept = S
        kept2 = total
        discarded = torch.zeros_like(total)
    if policy.renormalize:
        S_kept = S_kept * torch.rsqrt(kept2.clamp_min(torch.finfo(S.dtype).tiny)).unsqueeze(-1)
    return U, S_kept, Vh, discarded, kept2


# The Gram matrix squares singular values: values below ~sqrt(eps) · s_max drown in its rounding (~1e-8 in
# float64, ~3e-4 in float32). ``sum2`` / ``rsum2`` cutoffs act on s² and resolve down to ~eps of Σ s²
# (weights are taken from the projected rows, below); ``abs`` / ``rel`` act on s.
_GRAM_RESOLVES = {"sum2": 1e-15, "rsum2": 1e-15, "abs": 1e-7, "rel": 1e-7}


def gram_split_allowed(dtype: torch.dtype, policy: TruncationPolicy) -> bool:
    """Whether ``policy`` lets a split of a ``dtype`` matrix take the Gram (``eigh``) path: always
    with ``split="gram"``, never with ``"svd"``; with ``"auto"`` where the Gram matrix resolves
    the cutoff (float64/complex128, a cutoff of 0 or of at least ``_GRAM_RESOLVES``)."""
    if policy.split != "auto":
        return policy.split == "gram"
    # In single precision the Gram matrix's floor is ~1e-7 of s_max² (~3e-4 of s_max): "auto"
    # keeps float32/complex64 on the SVD; "gram" is the caller's choice to accept that floor.
    if dtype not in (torch.float64, torch.complex128):
        return False
    return policy.cutoff == 0.0 or policy.cutoff >= _GRAM_RESOLVES[policy.cutoff_mode]


def gram_split_applies(m: int, n: int, dtype: torch.dtype, policy: TruncationPolicy, absorb: str) -> bool:
    """Whether a split of an ``(m, n)`` ``dtype`` matrix takes the Gram path: allowed by
    ``gram_split_allowed`` and the isometry (``absorb``'s other side) the smaller one (the other
    isometry would need a division by ``S``)."""
    return (m <= n if absorb == "right" else n <= m) and gram_split_allowed(dtype, policy)


def uses_gram_split(A: torch.Tensor, policy: TruncationPolicy, absorb: str) -> bool:
    """Whether ``truncated_split(A, policy, absorb)`` takes the Gram (``eigh``) path: the one
    decision. ``gram_split_applies``, and under autograd only with ``policy.split="gram"``
    (``"auto"`` keeps the SVD's gradients, the reference, where ``A`` requires grad)."""
    if policy.split == "auto" and torch.is_grad_enabled() and A.requires_grad:
        return False
    return gram_split_applies(A.shape[-2], A.shape[-1], A.dtype, policy, absorb)


def truncated_split(A: torch.Tensor, policy: TruncationPolicy, absorb: str = "right"):
    """Split ``A (B, m, n)`` into the factors of a truncated two-site update.

    ``absorb="right"``: ``(U (B, m, r), C (B, r, n))`` with ``U`` an isometry and ``C = S·Vh`` the
    new centre; ``"left"``: ``(C (B, m, r), Vh (B, r, n))`` with ``C = U·S`` and ``Vh`` co-isometric.
    Also returns ``discarded (B,)`` and ``kept_norm2 (B,)`` as ``truncated_svd`` does (and honours
    ``policy.renormalize`` the same way). Per sample, the centre's rows (columns) beyond that
    sample's rank are zero.

    ``gram_split`` (``eigh`` of the smaller Gram matrix) where ``uses_gram_split`` says so
    (``policy.split``: ``"gram"`` wherever the isometry is the smaller side, ``"auto"`` only where
    the Gram matrix resolves the cutoff, ``"svd"`` never), else ``svd_split``, the reference with
    the same signature. Both differentiate (broadened backwards).
    """
    if absorb not in ("left", "right"):
        raise ValueError(f"absorb must be 'left' or 'right', got {absorb!r}")
    if uses_gram_split(A, policy, absorb):
        return gram_split(A, policy, absorb)
    return svd_split(A, policy, absorb)


def svd_split(A: torch.Tensor, policy: TruncationPolicy, absorb: str = "right"):
    """``truncated_split`` by ``truncated_svd`` with the factors multiplied out: the reference."""
    U, S, Vh, disc, kept2 = truncated_svd(A, policy, absorb=absorb)
    S = S.to(U.dtype)
    if absorb == "right":
        return U, S.unsqueeze(-1) * Vh, disc, kept2
    return U * S.unsqueeze(-2), Vh, disc, kept2


def _gram_factors(M: torch.Tensor, policy: TruncationPolicy):
    """The forward of ``gram_split`` on the isometry's side ``M (B, k, N)``: ``V`` (eigenvectors of
    ``M M†``, ascending), ``Cf = V† M``, the weights ``S2 (B, k)`` (ascending), ranks and the shared
    kept width ``r``."""
    _, V = gram_eigh(M @ M.mH)
    Cf = V.mH @ M  # (B, k, N): rows are s_i · v_i†, ascending, the centre projected exactly
    # Weights from the rows, not the eigenvalues: a row of a (near-)null direction has norm²
    # ~eps²·s_max² where its eigenvalue carries ~eps·s_max² of rounding. Rounding can swap
    # nearly equal neighbours; the eigenvalue order is kept (the cut is the same to ~eps).
    S2 = (Cf.real.square() + Cf.imag.square()).sum(-1) if Cf.is_complex() else Cf.square().sum(-1)
    check_split_weights(S2.sum(-1))
    # Ascending order: one cumsum gives every tail sum, smallest first; the rank rule is ``rank_rule``.
    ranks = rank_rule(S2, S2.cumsum(-1), policy)
    return V, Cf, S2, ranks, int(ranks.max())


class _GramSplit(torch.autograd.Function):
    """``M (B, k, N)`` -> the kept eigenvectors ``Q (B, k, r)`` of ``M M†`` (largest first), the
    projected rows ``C = Q† M (B, r, N)``, every weight ``S2 (B, k)`` (ascending) and the per-sample
    ranks, with one backward for the whole chain (Gram product, ``eigh``, projection, weights):

        X = V† V̅ + Cf C̅f†,   M̅ = V (C̅f + ((X - X†) ∘ F) Cf),   Cf = V† M,

    ``F_ij`` the broadened ``1/(λ_j - λ_i)`` of ``eigh_backward`` (``ε = eps_rel · λ_max²``), ``C̅f``
    ``C̅`` placed on the kept rows plus ``2 S̅2 Cf``. Equal to autograd through ``stable_eigh`` and
    the matmuls (tested), with four batched matmuls instead of seven and no zero-filled slices."""

    @staticmethod
    def forward(ctx, M, eps_rel, policy):
        V, Cf, S2, ranks, r = _gram_factors(M, policy)
        k = V.shape[-1]
        ctx.eps_rel, ctx.r = eps_rel, r
        ctx.save_for_backward(V, Cf, S2)
        ctx.mark_non_differentiable(ranks)
        return V[..., k - r:].flip(-1), Cf[..., k - r:, :].flip(-2), S2, ranks

    @staticmethod
    @once_differentiable  # second derivatives raise: the saved factors carry no graph
    def backward(ctx, gQ, gC, gS2, _g_ranks=None):
        V, Cf, S2 = ctx.saved_tensors
        k, r = V.shape[-1], ctx.r
        gCf = torch.zeros_like(Cf)
        if gC is not None:
            gCf[..., k - r:, :] = gC.flip(-2)
        if gS2 is not None:
            gCf = gCf + (2 * gS2).to(Cf.dtype).unsqueeze(-1) * Cf
        X = Cf @ gCf.mH  # V† (M C̅f†): the projection's part of V̅
        if gQ is not None:
            X[..., :, k - r:] += V.mH @ gQ.flip(-1)
        # λ_i = S2_i up to rounding (the rows' norms², the eigenvalues' better-resolved twins).
        # Broadened in units of λ_max (ε = eps_rel · λ_max²): the same F at every norm of the state,
        # where eps_rel · λ_max² itself would underflow for a small one (0/0 on a zero gap).
        lmax = S2.amax(-1, keepdim=True).clamp_min(torch.finfo(S2.dtype).tiny).unsqueeze(-1)  # (..., 1, 1)
        gap = (S2.unsqueeze(-2) - S2.unsqueeze(-1)) / lmax  # (..., i, j) = (λ_j - λ_i) / λ_max
        inner = (X - X.mH) * (_broadened_inverse(gap, ctx.eps_rel) / lmax).to(X.dtype)
        return V @ torch.baddbmm(gCf, inner, Cf) if V.dim() == 3 else V @ (gCf + inner @ Cf), None, None


def gram_split(A: torch.Tensor, policy: TruncationPolicy, absorb: str = "right"):
    """``truncated_split`` by ``eigh`` of the Gram matrix of the isometry's side: for
    ``absorb="right"`` ``A A† = U S² U†`` (``A† A`` for ``"left"``), the centre projected exactly as
    ``C = U† A`` (so the kept state is ``U U† A``: exact up to what is cut, with no division by S),
    the weights ``s_i²`` the projected rows' norms². Same signature and outputs as ``svd_split``.

    Under autograd the chain (Gram product, ``eigh``, projection, weights) is ``_GramSplit``, one
    node with the broadened ``eigh`` backward (``1/(λ_j - λ_i)`` -> ``x / (x² + ε)``: finite on
    zero and repeated values).

    Accuracy: the Gram matrix squares the condition number. Singular values below ~sqrt(eps) ·
    s_max (~1e-8 in float64, ~3e-4 in float32) are noise in it: their directions mix, and their
    weights (~eps · s_max²: ~1e-16 or ~1e-7 of Σ s²) sit above a smaller cutoff, which then keeps
    them (harmless to the state, which changes by that weight, but the bond is wider than the
    SVD's). So it is exact to the cut wherever the cutoff is >= ~1e-15 (float64) or ~1e-7
    (float32) of Σ s², or a ``max_bond`` cap dominates (a saturated bond); ``svd_split`` remains
    the reference for smaller cutoffs, and what ``split="auto"`` takes for float32.

    Gradients: in float64/complex128 exact to rounding wherever the kept and cut values are
    separated by more than the broadening (``|λ_j - λ_i| >> sqrt(grad_eps) · λ_max``), also for
    tiny or zero kept values (no ``1/s``; the SVD route's broadened ``1/s`` is biased for kept
    ``s <~ 1e-6 · s_max``). Closer gaps are broadened on both routes alike (biased, finite). In
    float32 the eigenvectors carry ~eps · λ_max / gap of error, so a split's gradient is off by
    ~1e-7 / (s_r / s_max)² relative (``s_r`` the smallest kept value): ~1e-2 at ``s_r = 3e-3 · s_max``,
    where the float32 SVD stays near 1e-4 (measured: tests/test_gram_split.py's float32 tests).
    """
    if absorb not in ("left", "right"):
        raise ValueError(f"absorb must be 'left' or 'right', got {absorb!r}")
    # Work on the side the isometry lives on: rows for "right", columns (via A†) for "left".
    M = A if absorb == "right" else A.mH  # (B, k, N)
    if torch.is_grad_enabled() and A.requires_grad:
        Q, C, S2, ranks = _GramSplit.apply(M, policy.grad_eps, policy)
        r = Q.shape[-1]
    else:
        V, Cf, S2, ranks, r = _gram_factors(M, policy)
        k = V.shape[-1]
        Q, C = V[..., k - r:].flip(-1), Cf[..., k - r:, :].flip(-2)  # kept, largest first
    tails = S2.cumsum(-1)  # tails[i] = Σ_{j <= i} s_j², smallest first (what is dropped summed accurately)
    total = tails[..., -1]
    k = S2.shape[-1]
    uniform = A.shape[0] == 1 or bool((ranks == r).all())
    if uniform:  # one width for the batch (always at B=1): no masking
        discarded = tails[..., k - r - 1] if r < k else torch.zeros_like(total)
    else:
        drop = k - ranks  # (B,)
        idx = (drop - 1).clamp_min(0).unsqueeze(-1)
        discarded = torch.where(drop > 0, tails.gather(-1, idx).squeeze(-1), torch.zeros_like(total))
    kept2 = total - discarded
    # The documented order, largest first: a sample's rows beyond its rank are zero.
    if not uniform:  # zero the rows beyond each sample's own rank
        keep = torch.arange(r, device=A.device) < ranks.unsqueeze(-1)  # (B, r)
        C = C * keep.to(C.dtype).unsqueeze(-1)
    if policy.renormalize:
        C = C * torch.rsqrt(kept2.clamp_min(torch.finfo(S2.dtype).tiny)).to(C.dtype)[:, None, None]
    if absorb == "right":
        return Q, C, discarded, kept2
    return C.mH, Q.mH, discarded, kept2


def rank_rule(S2: torch.Tensor, tails: torch.Tensor, policy: TruncationPolicy) -> torch.Tensor:
    """The rank rule: per-sample number of values to keep, from ascending weights. Every route
    uses it (``TruncationPolicy.ranks``, the Gram split, ``mps_host``); ``mps_jit`` holds its
    compiled twin, tested against it.

    ``S2 (B, k)`` squared singular values in ascending order and ``tails = S2.cumsum(-1)``
    -> ``(B,)`` integers (torch tensors or numpy arrays, either in, the same out; ``(k,)`` in ->
    a scalar). Drops the smallest values whose weight (``abs``/``rel``) or running tail sum
    (``sum2``/``rsum2``) is at or below the cutoff, keeps at least one, caps at ``max_bond``.
    """
    k = S2.shape[-1]
    c = policy.cutoff
    if c > 0.0:
        if policy.cutoff_mode == "abs":
            drop = (S2 <= c * c).sum(-1)
        elif policy.cutoff_mode == "rel":
            drop = (S2 <= (c * c) * S2[..., -1:]).sum(-1)
        elif policy.cutoff_mode == "sum2":
            drop = (tails <= c).sum(-1)
        else:
            drop = (tails <= c * tails[..., -1:]).sum(-1)
    else:
        drop = (S2 < 0).sum(-1)  # no cutoff: nothing dropped (weights are >= 0)
    if isinstance(drop, torch.Tensor):
        return (k - drop).clamp(min=1, max=policy.max_bond)
    if np.ndim(drop) == 0:  # one numpy spectrum: plain ints (numpy's clip: a whole ufunc call for one value)
        return max(1, min(k - int(drop), policy.max_bond or k))
    return np.clip(k - drop, 1, policy.max_bond)
