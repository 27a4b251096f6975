"""Environments of a batched MPS: transfer matrices, reduced density matrices, correlators, overlaps.

Every quantity here is read off a state given as ``(tensors, center)``: ``n`` site tensors
``(B, χl, 2, χr)`` (batch first) in mixed-canonical form with orthogonality centre ``center``,
as ``MPS`` holds them. Modelled on TeNPy's ``MPSEnvironment``: the left environment of site
``k`` contracts the ket with the bra over every site left of ``k``, the right one over every
site right of it::

     L[k]                                      R[k]
    ┌──[A_c]──...──[A_{k-1}]──y       x──[A_{k+1}]──...──[A_c]──┐
    │    │            │        (ket)      │                │    │
    │    │            │                   │                │    │
    └──[A_c*]─...──[A_{k-1}*]─z       z──[A_{k+1}*]─...──[A_c*]─┘
                               (bra)

held as ``(B, χ_ket, χ_bra)`` tensors (index ``y``/``x`` on the ket, ``z`` on the bra). Sites
left of the centre are left-isometric, so ``L[k]`` is the identity for ``k <= center`` (held as
``None``, never built); likewise ``R[k]`` for ``k >= center``. An operator on sites ``lo..hi`` is
therefore read by pushing ``L[lo]`` through those sites and closing with ``R[hi]``.

``MPSEnvironment`` caches the environments of one state as they are first needed, so several
quantities of one state share them; the free functions (``rdm1(tensors, center)``, ...) build
one for a single answer. Expectation values are divided by the norm² read off the centre tensor,
reduced density matrices and probabilities by their trace, so unnormalised states give the
values of the normalised state. Everything runs through ``qlam_tn.contraction.contract``, keeps
autograd, and follows the state's device and dtype; a complex operator on a real state gives a
complex working dtype of the same precision.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from . import mps_host, routes
from .contraction import contract
from .state import as_int, complex_dtype_of

__all__ = [
    "MAX_MARGINAL_QUBITS",
    "MPSEnvironment",
    "transfer_left",
    "transfer_right",
    "norm_squared",
    "rdm1",
    "rdm2",
    "rdm",
    "probs",
    "expect_product",
    "neighbour_correlators",
    "overlap",
]

MAX_MARGINAL_QUBITS = 10
"""Most qubits of one ``rdm`` / ``probs`` marginal: a ``(B, 2**k, 2**k)`` result, and ``4**k``
open entries (each ``χ²`` wide) carried through the sweep."""


# ----------------------------------------------------------------------------- checks

def _check_state(tensors: Sequence[torch.Tensor], center) -> Tuple[List[torch.Tensor], int]:
    ts = list(tensors)
    if not ts:
        raise ValueError("an MPS needs at least one site tensor")
    b = ts[0].shape[0] if ts[0].dim() == 4 else None
    for k, t in enumerate(ts):
        if t.dim() != 4 or t.shape[0] != b or t.shape[2] != 2:
            raise ValueError(f"site {k}: expected shape (B={b}, χl, 2, χr), got {tuple(t.shape)}")
    center = as_int(center, "center")
    if not 0 <= center < len(ts):
        raise ValueError(f"center {center} out of range for {len(ts)} sites")
    return ts, center


def _check_site(q, n: int, what: str = "qubit") -> int:
    q = as_int(q, what)
    if not 0 <= q < n:
        raise ValueError(f"{what} {q} out of range for {n} qubits")
    return q


def _check_operator(op, batch: int, device) -> torch.Tensor:
    """``op`` as a tensor ``(2, 2)`` or per-sample ``(B, 2, 2)`` on ``device``."""
    op = torch.as_tensor(op, device=device)
    if op.dim() not in (2, 3) or op.shape[-2:] != (2, 2) or (op.dim() == 3 and op.shape[0] != batch):
        raise ValueError(f"a one-site operator must have shape (2, 2) or (B={batch}, 2, 2), got {tuple(op.shape)}")
    return op


def _working_dtype(dtype: torch.dtype, ops) -> torch.dtype:
    """The state's dtype, made complex (same precision) when an operator is complex."""
    if any(op is not None and op.is_complex() for op in ops):
        return complex_dtype_of(dtype)
    return dtype


def _as(t: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    return t if t is None or t.dtype == dtype else t.to(dtype)


# ----------------------------------------------------------------------------- transfer matrices

def transfer_left(env: Optional[torch.Tensor], ket: torch.Tensor, op: Optional[torch.Tensor] = None,
                  bra: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Push a left environment one site to the right.

    ::

        ┌──x──[ket]──y          env (B, χl_ket, χl_bra), None for the identity
        env     │op              ket (B, χl_ket, 2, χr_ket); bra (B, χl_bra, 2, χr_bra), default ket
        └──w──[bra*]─z          op  (2, 2) or (B, 2, 2) between them, default identity

    Returns ``(B, χr_ket, χr_bra)``. Operands of different dtypes meet in their promoted dtype.
    """
    bra = ket if bra is None else bra
    env, ket, op, bra = _promoted(env, ket, op, bra)
    bc = bra.conj()
    if op is None:
        if env is None:
            return contract("bxiy,bxiz->byz", ket, bc)
        return contract("bxw,bxiy,bwiz->byz", env, ket, bc)
    o = "bji" if op.dim() == 3 else "ji"
    if env is None:
        return contract(f"bxiy,{o},bxjz->byz", ket, op, bc)
    return contract(f"bxw,bxiy,{o},bwjz->byz", env, ket, op, bc)


def transfer_right(env: Optional[torch.Tensor], ket: torch.Tensor, op: Optional[torch.Tensor] = None,
                   bra: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pull a right environment one site to the left.

    ::

        x──[ket]──y──┐          env (B, χr_ket, χr_bra), None for the identity
             │op    env         ket (B, χl_ket, 2, χr_ket); bra (B, χl_bra, 2, χr_bra), default ket
        z──[bra*]─w──┘          op  (2, 2) or (B, 2, 2) between them, default identity

    Returns ``(B, χl_ket, χl_bra)``.
    """
    bra = ket if bra is None else bra
    env, ket, op, bra = _promoted(env, ket, op, bra)
    bc = bra.conj()
    if op is None:
        if env is None:
            return contract("bxiy,bziy->bxz", ket, bc)
        return contract("bxiy,byw,bziw->bxz", ket, env, bc)
    o = "bji" if op.dim() == 3 else "ji"
    if env is None:
        return contract(f"bxiy,{o},bzjy->bxz", ket, op, bc)
    return contract(f"bxiy,{o},byw,bzjw->bxz", ket, op, env, bc)


def _promoted(*tensors: Optional[torch.Tensor]) -> Tuple[Optional[torch.Tensor], ...]:
    """``tensors`` (``None`` kept) in their promoted dtype."""
    dtypes = {t.dtype for t in tensors if t is not None}
    if len(dtypes) == 1:
        return tensors
    dtype = functools.reduce(torch.promote_types, dtypes)
    return tuple(_as(t, dtype) for t in tensors)


def _close(env: torch.Tensor, right: Optional[torch.Tensor]) -> torch.Tensor:
    """Contract ``env (B, ..., χ, χ')`` with the right environment ``(B, χ, χ')`` (None: trace)."""
    if right is None:
        return env.diagonal(dim1=-2, dim2=-1).sum(-1)
    right = _as(right, env.dtype)
    return (env * right.reshape(right.shape[:1] + (1,) * (env.dim() - 3) + right.shape[1:])).sum((-2, -1))


# ----------------------------------------------------------------------------- one state

class MPSEnvironment:
    """Left and right environments of one MPS, built once each when first needed.

    Args:
        tensors: ``n`` site tensors ``(B, χl, 2, χr)``, mixed-canonical around ``center``.
        center: the orthogonality centre.

    The tensors are held, not copied: build a new environment after the state changes.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], center: int):
        self.tensors, self.center = _check_state(tensors, center)
        self.n_qubits = len(self.tensors)
        self.batch = self.tensors[0].shape[0]
        self._lefts: List[torch.Tensor] = []   # L[center + 1], L[center + 2], ...
        self._rights: List[torch.Tensor] = []  # R[center - 1], R[center - 2], ...

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors[0].dtype

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    def left(self, k: int) -> Optional[torch.Tensor]:
        """``L[k]`` ``(B, χl_k, χl_k)``: sites ``center..k-1`` contracted; ``None`` (identity) for ``k <= center``."""
        c = self.center
        while len(self._lefts) < k - c:
            site = c + len(self._lefts)
            self._lefts.append(transfer_left(self._lefts[-1] if self._lefts else None, self.tensors[site]))
        return None if k <= c else self._lefts[k - c - 1]

    def right(self, k: int) -> Optional[torch.Tensor]:
        """``R[k]`` ``(B, χr_k, χr_k)``: sites ``k+1..center`` contracted; ``None`` (identity) for ``k >= center``."""
        c = self.center
        while len(self._rights) < c - k:
            site = c - len(self._rights)
            self._rights.append(transfer_right(self._rights[-1] if self._rights else None, self.tensors[site]))
        return None if k >= c else self._rights[c - k - 1]

    def norm_squared(self) -> torch.Tensor:
        """``(B,)`` real ``<ψ|ψ>``, read off the centre tensor."""
        centre = self.tensors[self.center].reshape(self.batch, -1)
        return (centre.conj() * centre).real.sum(-1)

    # ------------------------------------------------------------------ density matrices
    def rdm1(self) -> torch.Tensor:
        """All single-qubit reduced density matrices in one sweep -> ``(B, n, 2, 2)``, each of trace 1.

        Outside autograd on CPU float64/complex128 sites the sweep runs in numpy
        (``mps_host.rdm1``, the same contractions without a torch call each; ``routes`` decides);
        ``rdm1_reference`` is the torch sweep, with autograd, that it is tested against."""
        if routes.choose("rdm1", self.tensors) == "host":
            return mps_host.rdm1(self.tensors, self.center)
        return self.rdm1_reference()

    def rdm1_reference(self) -> torch.Tensor:
        """``rdm1`` by torch contractions on the cached environments (any device, dtype, autograd)."""
        out = []
        for k, a in enumerate(self.tensors):
            left, right, ac = self.left(k), self.right(k), a.conj()
            if left is not None:
                rho = contract("bxw,bxiy,bwjy->bij", left, a, ac)
            elif right is not None:
                rho = contract("bxiy,byz,bxjz->bij", a, right, ac)
            else:
                rho = contract("bxiy,bxjy->bij", a, ac)
            out.append(rho)
        rho = torch.stack(out, dim=1)
        tr = rho.diagonal(dim1=-2, dim2=-1).sum(-1)
        return rho / tr[..., None, None]

    def rdm2(self, i: int, j: int) -> torch.Tensor:
        """Two-qubit reduced density matrix of ``(i, j)`` (any distance, any order) -> ``(B, 4, 4)``,
        row index ``2*b_i + b_j``."""
        return self.rdm((i, j))

    def rdm(self, qubits: Sequence[int]) -> torch.Tensor:
        """Reduced density matrix of ``qubits`` (distinct, any order, at most
        ``MAX_MARGINAL_QUBITS``) -> ``(B, 2**k, 2**k)``, big-endian in the order given, trace 1."""
        qs, perm = self._marginal_qubits(qubits, "rdm")
        k = len(qs)
        rho = self._marginal(qs, diagonal=False)  # (B, 2, 2, ..., 2, 2): i_1 j_1 i_2 j_2 ...
        order = [1 + 2 * p for p in perm] + [2 + 2 * p for p in perm]
        rho = rho.permute(0, *order).reshape(self.batch, 2 ** k, 2 ** k)
        return rho / rho.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]

    def probs(self, qubits: Sequence[int]) -> torch.Tensor:
        """Computational-basis probabilities of ``qubits`` (the diagonal of ``rdm(qubits)``,
        contracted without the off-diagonal entries) -> real ``(B, 2**k)``, summing to 1."""
        qs, perm = self._marginal_qubits(qubits, "probs")
        p = self._marginal(qs, diagonal=True)  # (B, 2, ..., 2)
        p = p.permute(0, *[1 + q for q in perm]).reshape(self.batch, -1)
        p = p.real if p.is_complex() else p
        return p / p.sum(-1, keepdim=True)

    def _marginal_qubits(self, qubits: Sequence[int], what: str) -> Tuple[List[int], List[int]]:
        """``(ascending qubits, perm)``: the ``t``-th qubit given is ``ascending[perm[t]]``."""
        if isinstance(qubits, torch.Tensor):
            qubits = qubits.reshape(-1).tolist()
        elif not hasattr(qubits, "__len__"):
            qubits = [qubits]
        given = [_check_site(q, self.n_qubits) for q in qubits]
        if not given:
            raise ValueError(f"{what} needs at least one qubit")
        if len(set(given)) != len(given):
            raise ValueError(f"{what}: repeated qubit in {tuple(given)}")
        if len(given) > MAX_MARGINAL_QUBITS:
            raise ValueError(f"{what} on {len(given)} qubits: at most {MAX_MARGINAL_QUBITS} "
                             f"(the result has 4**k entries, each carried χ² wide); ask for fewer qubits")
        asc = sorted(given)
        return asc, [asc.index(q) for q in given]

    def _marginal(self, qs: List[int], diagonal: bool) -> torch.Tensor:
        """Unnormalised marginal on ascending ``qs``: ``(B, 2, ..., 2)`` with one axis per qubit
        (``diagonal``) or two, ``i_1 j_1 i_2 j_2 ...`` (ket, bra). Pushes ``L[qs[0]]`` to
        ``qs[-1]`` carrying the open indices of the chosen sites flattened in one axis ``p``."""
        b, chosen = self.batch, set(qs)
        env = self.left(qs[0])
        if env is not None:
            env = env.unsqueeze(1)  # (B, p=1, χ, χ')
        for k in range(qs[0], qs[-1] + 1):
            a = self.tensors[k]
            ac, r = a.conj(), a.shape[3]
            if k not in chosen:
                env = contract("bpxw,bxiy,bwiz->bpyz", env, a, ac)
            elif diagonal:
                env = (contract("bxiy,bxiz->biyz", a, ac) if env is None
                       else contract("bpxw,bxiy,bwiz->bpiyz", env, a, ac).reshape(b, -1, r, r))
            else:
                env = (contract("bxiy,bxjz->bijyz", a, ac).reshape(b, 4, r, r) if env is None
                       else contract("bpxw,bxiy,bwjz->bpijyz", env, a, ac).reshape(b, -1, r, r))
        out = _close(env, self.right(qs[-1]))  # (B, p)
        return out.reshape((b,) + (2,) * (len(qs) * (1 if diagonal else 2)))

    # ------------------------------------------------------------------ expectation values
    def expect_product(self, ops: Dict[int, torch.Tensor]) -> torch.Tensor:
        """``<ψ|Π_q O_q|ψ> / <ψ|ψ>`` for one-site operators ``{q: O_q}``, each ``(2, 2)`` or
        per-sample ``(B, 2, 2)`` -> real part ``(B,)`` (the whole value for Hermitian ``O_q``).
        An empty product gives 1."""
        mats = {_check_site(q, self.n_qubits, "site"): _check_operator(m, self.batch, self.device)
                for q, m in ops.items()}
        if len(mats) != len(ops):
            raise ValueError(f"repeated site in {sorted(ops)}")
        dtype = _working_dtype(self.dtype, mats.values())
        span = sorted(mats) or [self.center]
        lo, hi = span[0], span[-1]
        env = self.left(lo)
        for k in range(lo, hi + 1):
            env = transfer_left(env, _as(self.tensors[k], dtype), _as(mats.get(k), dtype))
        return _close(env, self.right(hi)).real / self.norm_squared()

    def neighbour_correlators(self, op_a, op_b) -> torch.Tensor:
        """``(B, n-1)`` correlators ``<A_i B_{i+1}>`` (real parts, normalised) for every
        neighbour pair; ``op_a``, ``op_b`` are ``(2, 2)`` or per-sample ``(B, 2, 2)``."""
        op_a = _check_operator(op_a, self.batch, self.device)
        op_b = _check_operator(op_b, self.batch, self.device)
        dtype = _working_dtype(self.dtype, (op_a, op_b))
        op_a, op_b = _as(op_a, dtype), _as(op_b, dtype)
        real = dtype.to_real() if dtype.is_complex else dtype
        out = []
        for i in range(self.n_qubits - 1):
            env = transfer_left(self.left(i), _as(self.tensors[i], dtype), op_a)
            env = transfer_left(env, _as(self.tensors[i + 1], dtype), op_b)
            out.append(_close(env, self.right(i + 1)).real)
        if not out:
            return torch.zeros(self.batch, 0, dtype=real, device=self.device)
        return torch.stack(out, dim=-1) / self.norm_squared().unsqueeze(-1)


# ----------------------------------------------------------------------------- free functions

def norm_squared(tensors: Sequence[torch.Tensor], center: int) -> torch.Tensor:
    """``(B,)`` real ``<ψ|ψ>`` read off the centre tensor."""
    return MPSEnvironment(tensors, center).norm_squared()


def rdm1(tensors: Sequence[torch.Tensor], center: int) -> torch.Tensor:
    """All single-qubit reduced density matrices -> ``(B, n, 2, 2)``; see ``MPSEnvironment.rdm1``."""
    return MPSEnvironment(tensors, center).rdm1()


def rdm2(tensors: Sequence[torch.Tensor], center: int, i: int, j: int) -> torch.Tensor:
    """Reduced density matrix of qubits ``(i, j)`` -> ``(B, 4, 4)``, row index ``2*b_i + b_j``."""
    return MPSEnvironment(tensors, center).rdm2(i, j)


def rdm(tensors: Sequence[torch.Tensor], center: int, qubits: Sequence[int]) -> torch.Tensor:
    """Reduced density matrix of ``k <= MAX_MARGINAL_QUBITS`` qubits -> ``(B, 2**k, 2**k)``."""
    return MPSEnvironment(tensors, center).rdm(qubits)


def probs(tensors: Sequence[torch.Tensor], center: int, qubits: Sequence[int]) -> torch.Tensor:
    """Computational-basis probabilities of ``k <= MAX_MARGINAL_QUBITS`` qubits -> ``(B, 2**k)``."""
    return MPSEnvironment(tensors, center).probs(qubits)


def expect_product(tensors: Sequence[torch.Tensor], center: int, ops: Dict[int, torch.Tensor]) -> torch.Tensor:
    """``(B,)`` normalised expectation of a product of one-site operators ``{site: (2, 2)}``."""
    return MPSEnvironment(tensors, center).expect_product(ops)


def neighbour_correlators(tensors: Sequence[torch.Tensor], center: int, op_a, op_b) -> torch.Tensor:
    """``(B, n-1)`` normalised ``<A_i B_{i+1}>`` for every neighbour pair."""
    return MPSEnvironment(tensors, center).neighbour_correlators(op_a, op_b)


def overlap(bra: Sequence[torch.Tensor], ket: Sequence[torch.Tensor]) -> torch.Tensor:
    """``<φ|ψ>`` of two MPS given as site lists ``(B, χl, 2, χr)`` (``bra`` = φ, ``ket`` = ψ;
    any gauge, any bond dimensions, same ``n`` and ``B``) -> ``(B,)``, not normalised; complex
    if either is complex, in their promoted dtype."""
    bra, _ = _check_state(bra, 0)
    ket, _ = _check_state(ket, 0)
    if len(bra) != len(ket):
        raise ValueError(f"overlap of MPS on {len(bra)} and {len(ket)} qubits")
    if bra[0].shape[0] != ket[0].shape[0]:
        raise ValueError(f"overlap of batches {bra[0].shape[0]} and {ket[0].shape[0]}: they must be equal")
    env = None
    for b, k in zip(bra, ket):
        env = transfer_left(env, k, bra=b)
    return env.reshape(-1)
