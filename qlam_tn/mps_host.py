"""The numpy route of the MPS update: one sample, CPU, float64/complex128, outside autograd.

At B=1 and small bonds a two-site update is some fifty small tensor operations around one
``eigh``, and torch's per-call dispatch costs more than the linear algebra. These functions do the
same arithmetic as the torch reference (``mps_update``, same signatures) on numpy views of the
same site tensors (no copies in, one wrap out), where a small operation costs a fraction of a
torch call. A whole layer (``neighbour_gates``, ``physical``) or program (``circuit``) is one pass:
the site arrays stay numpy from its first gate to its last. A two-site update splits by ``eigh``
of the Gram matrix or by the SVD exactly where the torch route does
(``linalg.gram_split_applies``); the factorisations call LAPACK through scipy's wrappers.

Why it stays beside the compiled route (``mps_packed``/``mps_jit``), now that numba is a hard
dependency: it is the compiled kernels' one-sample reference (tests/test_mps_host.py and
tests/test_mps_jit.py hold them to it), it runs single gates and centre moves (a circuit applied
gate by gate, ``qt.simulate``, the PennyLane device) without a pack/unpack per gate, and it runs
where numba cannot compile. ``qlam_tn.routes`` decides when it runs; ``disabled()`` switches both
fast routes off (the torch reference alone), e.g. for a side-by-side benchmark.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import sys
from typing import List, Optional, Tuple

import numpy as np
import torch
from scipy.linalg import lapack

from . import mps_jit, mps_update
from .linalg import TruncationError, TruncationPolicy, check_split_weights, gram_split_applies, rank_rule

__all__ = ["ENABLED", "disabled", "applies", "host_tensors", "moved", "two_site", "split", "neighbour_gates", "physical", "circuit",
           "qr", "eigh", "svd", "one_blas_thread", "np_view", "site_tensor", "reads", "rdm1"]

ENABLED = True

_DTYPES = (torch.float64, torch.complex128)


def disabled():
    """Within the block every MPS takes its torch path (the reference)."""
    return mps_jit.switched_off(sys.modules[__name__])


def applies(batch: int, tensors) -> bool:
    """Whether the kernels may stand in for the torch path on these ``(1, χl, 2, χr)`` tensors."""
    return ENABLED and batch == 1 and host_tensors(tensors)


def reads(batch: int, tensors) -> bool:
    """Whether ``rdm1`` may stand in for the torch sweep on these ``(B, χl, 2, χr)`` tensors:
    any batch (numpy's matmul runs over it), CPU float64/complex128, outside autograd."""
    return ENABLED and batch >= 1 and host_tensors(tensors)


def host_tensors(tensors) -> bool:
    """Whether every tensor is a CPU float64/complex128 one outside autograd: what the host
    kernels (numpy and compiled) compute on."""
    grad = torch.is_grad_enabled()
    for t in tensors:  # (is_cpu reads a flag; device.type builds a device object)
        if t.dtype not in _DTYPES or not t.is_cpu or (grad and t.requires_grad):
            return False
    return True


# LAPACK's drivers called directly: numpy.linalg's wrappers spend as long in checks and conversions
# as a 32x32 factorisation takes (no bench isolates it: docs/benchmarks.md, "Measured once"). Per
# dtype: QR (geqrf, then orgqr/ungqr to form the thin Q), the Hermitian eigensolver (syevd/heevd,
# lower triangle as torch and numpy use) and the divide-and-conquer SVD (gesdd, as torch and numpy
# use).
_LAPACK = {np.dtype(np.float64): (lapack.dgeqrf, lapack.dorgqr, lapack.dsyevd, lapack.dgesdd),
           np.dtype(np.complex128): (lapack.zgeqrf, lapack.zungqr, lapack.zheevd, lapack.zgesdd)}
_TINY = np.finfo(np.float64).tiny


def _check(info: int, what: str) -> None:
    if info != 0:
        raise np.linalg.LinAlgError(f"LAPACK {what} failed (info={info})")


def qr(a: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Thin QR of ``a (m, n)``: ``q (m, k)`` with orthonormal columns, ``r (k, n)``, ``k = min(m, n)``."""
    geqrf, orgqr = _LAPACK[a.dtype][:2]
    k = min(a.shape)
    f, tau, _, info = geqrf(a)
    _check(info, "geqrf")
    q, _, info = orgqr(f[:, :k], tau)
    _check(info, "orgqr")
    return q, f[:k] * _upper(k, a.shape[1])


@functools.lru_cache(maxsize=256)
def _upper(k: int, n: int) -> np.ndarray:
    """The ``(k, n)`` upper-triangular 0/1 mask (``np.triu`` rebuilds it on every call)."""
    return np.triu(np.ones((k, n)))


def eigh(h: np.ndarray) -> np.ndarray:
    """Eigenvectors of the Hermitian ``h (k, k)``, columns in ascending order of eigenvalue."""
    w, v, info = _LAPACK[h.dtype][2](h, lower=1)
    _check(info, "heevd")
    return v


def svd(a: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of ``a (m, n)``: ``u (m, k)``, ``s (k,)`` descending, ``vh (k, n)``."""
    u, s, vh, info = _LAPACK[a.dtype][3](a, compute_uv=1, full_matrices=0)
    _check(info, "gesdd")
    return u, s, vh


@functools.lru_cache(maxsize=1)
def _blas_libraries() -> tuple:
    """The BLAS/LAPACK libraries numpy and scipy loaded (OpenBLAS, MKL, ...), found once."""
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


_BLAS_LOCK = threading.Lock()
_BLAS_HOLDERS = [0, None]  # how many blocks are inside, and the thread counts to restore


@contextlib.contextmanager
def one_blas_thread():
    """Run numpy's and scipy's BLAS/LAPACK on one thread inside the block.

    OpenBLAS's own threads on these 32-128-wide matrices, between torch's operations (whose
    threads they compete with), make a B=1 token several times slower; ``qlam bench anchors``
    shows the same effect on quimb (its ``quimb`` row against ``quimb-1t``). The setting is
    process-wide: the first block to enter sets it, the last to leave restores it, so blocks
    that overlap in several threads (a batch's samples) leave it as it was."""
    libs = _blas_libraries()
    with _BLAS_LOCK:
        if _BLAS_HOLDERS[0] == 0:
            _BLAS_HOLDERS[1] = [lib.get_num_threads() for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _BLAS_HOLDERS[0] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_HOLDERS[0] -= 1
            if _BLAS_HOLDERS[0] == 0:
                for lib, n in zip(libs, _BLAS_HOLDERS[1]):
                    lib.set_num_threads(n)


def np_view(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (conjugate and negative views resolved first)."""
    try:
        return t.numpy()  # the common case, skipping the detach and view resolution below
    except RuntimeError:  # requires grad, or a conjugate / negative view
        return t.detach().resolve_conj().resolve_neg().numpy()


def site_tensor(a: np.ndarray) -> torch.Tensor:
    """``(χl, 2, χr)`` array -> ``(1, χl, 2, χr)`` tensor sharing its memory."""
    return torch.from_numpy(np.ascontiguousarray(a)[None])


def physical(ts: List[torch.Tensor], gates: torch.Tensor) -> List[torch.Tensor]:
    """``mps_update.physical`` for one sample: ``gates[q] (2, 2)`` on site ``q``'s physical index,
    every site (one numpy matmul a site, without a torch call's dispatch). ``gates (n, 2, 2)``."""
    g = np_view(gates)
    return [site_tensor(g[q] @ np_view(t)[0]) for q, t in enumerate(ts)]  # (2, 2) @ (χl, 2, χr), broadcast over χl


def moved(ts: List[torch.Tensor], c: int, target: int, policy: TruncationPolicy) -> List[torch.Tensor]:
    """``mps_update.moved`` for one sample: QR steps from centre ``c`` to ``target``; ``ts`` is not modified."""
    if c == target:
        return ts
    lo, hi = min(c, target), max(c, target)
    with one_blas_thread():
        sites = {k: np_view(ts[k])[0] for k in range(lo, hi + 1)}  # only the sites the move replaces
        _move(sites, c, target)
    out = list(ts)
    for k, a in sites.items():
        out[k] = site_tensor(a)
    return out


def _wrapped(ts: List[torch.Tensor], before: List[np.ndarray], sites: List[np.ndarray]) -> List[torch.Tensor]:
    """``ts`` with every site the kernels replaced (``sites[k] is not before[k]``) wrapped anew."""
    return [t if s is b else site_tensor(s) for t, b, s in zip(ts, before, sites)]


def _move(sites, c: int, target: int) -> None:
    """QR steps of the centre from ``c`` to ``target`` on ``(χl, 2, χr)`` arrays, in place
    (``sites``: a list, or a dict holding at least sites ``c .. target``)."""
    while c < target:
        a, nxt = sites[c], sites[c + 1]
        l, r = a.shape[0], a.shape[2]
        q, rr = qr(a.reshape(l * 2, r))
        sites[c] = q.reshape(l, 2, q.shape[1])
        sites[c + 1] = (rr @ nxt.reshape(r, -1)).reshape(rr.shape[0], 2, nxt.shape[2])
        c += 1
    while c > target:
        a, prv = sites[c], sites[c - 1]
        l, r = a.shape[0], a.shape[2]
        q, rr = qr(a.reshape(l, 2 * r).conj().T)
        k = q.shape[1]
        sites[c] = q.conj().T.reshape(k, 2, r)
        sites[c - 1] = (prv.reshape(-1, l) @ rr.conj().T).reshape(prv.shape[0], 2, k)
        c -= 1


def two_site(ts: List[torch.Tensor], c: int, gate: Optional[torch.Tensor], i: int, direction: str,
             policy: TruncationPolicy) -> Tuple[List[torch.Tensor], int, TruncationError]:
    """``mps_update.two_site`` for one sample: the centre moved onto sites ``(i, i+1)``, ``gate``
    (``(4, 4)``, ``(1, 4, 4)`` or ``None`` for SWAP) applied and the pair split towards
    ``direction``, by ``eigh`` of the Gram matrix or by the SVD exactly where the torch route
    would (``linalg.gram_split_applies``). ``ts`` is not modified."""
    ts = list(moved(ts, c, i if c <= i else i + 1, policy))  # a list of its own: the caller's stays as it was
    a0, a1 = ts[i], ts[i + 1]
    gram = gram_split_applies(2 * a0.shape[1], 2 * a1.shape[3], a0.dtype, policy, direction)
    with one_blas_thread():
        left, right, disc, kept2 = split(np_view(a0)[0], np_view(a1)[0], None if gate is None else np_view(gate),
                                         policy, direction, gram)
    ts[i], ts[i + 1] = site_tensor(left), site_tensor(right)
    return ts, (i + 1 if direction == "right" else i), TruncationError.of_split(disc, kept2)


def split(x: np.ndarray, y: np.ndarray, gate: Optional[np.ndarray], policy: TruncationPolicy, absorb: str,
          gram: bool) -> Tuple[np.ndarray, np.ndarray, float, float]:
    """The two-site update on arrays: ``x (l, 2, m)``, ``y (m, 2, r)``, ``gate`` ``(4, 4)`` (or
    ``(1, 4, 4)``) or ``None`` (SWAP) -> ``left (l, 2, k)``, ``right (k, 2, r)``, discarded, kept
    weight (``two_site``'s arithmetic; BLAS threads are the caller's business)."""
    l, m, r = x.shape[0], x.shape[2], y.shape[2]
    theta = (x.reshape(l * 2, m) @ y.reshape(m, 2 * r)).reshape(l, 4, r)
    if gate is None:
        theta = theta.reshape(l, 2, 2, r).transpose(0, 2, 1, 3)
    else:
        theta = gate.reshape(4, 4) @ theta  # broadcast over l: g @ theta[x]
    A = theta.reshape(l * 2, 2 * r)
    if gram:
        M = A if absorb == "right" else A.conj().T  # (k, N): the isometry's side
        V = eigh(M @ M.conj().T)  # ascending
        C = V.conj().T @ M  # rows s_i v_i†, ascending; the centre projected exactly
        S2 = _row_norms2(C)
    else:
        U, S, Vh = svd(A)  # descending
        S2 = (S * S)[::-1]
    tails = np.cumsum(S2)  # ascending: every tail sum, smallest first
    k = S2.shape[0]
    rank = int(rank_rule(S2, tails, policy))
    total = float(tails[-1])
    check_split_weights(total)
    discarded = float(tails[k - rank - 1]) if rank < k else 0.0
    kept2 = total - discarded
    scale = 1.0 / np.sqrt(max(kept2, _TINY)) if policy.renormalize else 1.0
    if gram:
        Q, C = V[:, k - rank:][:, ::-1], C[k - rank:][::-1] * scale
        left, right = (Q, C) if absorb == "right" else (C.conj().T, Q.conj().T)
    else:
        S = S[:rank] * scale
        U, Vh = U[:, :rank], Vh[:rank]
        left, right = (U, S[:, None] * Vh) if absorb == "right" else (U * S, Vh)
    return left.reshape(l, 2, rank), right.reshape(rank, 2, r), discarded, kept2


def _row_norms2(c: np.ndarray) -> np.ndarray:
    """``Σ_j |c_ij|²`` per row of ``c (k, N)``: a complex array is read as its float pairs, one
    einsum with no temporaries (``einsum(c, c.conj())`` would multiply complex numbers and copy the
    conjugate)."""
    if c.dtype.kind == "c" and c.flags.c_contiguous:
        c = c.view(np.float64)
    elif c.dtype.kind == "c":
        return np.einsum("ij,ij->i", c, c.conj()).real
    return np.einsum("ij,ij->i", c, c)


def neighbour_gates(ts: List[torch.Tensor], c: int, gates: torch.Tensor, firsts: List[int],
                    policy: TruncationPolicy) -> Tuple[List[torch.Tensor], int, TruncationError]:
    """``mps_update.neighbour_gates`` for one sample: ``gates[k] (4, 4)`` on sites
    ``(firsts[k], firsts[k] + 1)``, in order, all in one pass over numpy arrays (no tensor
    wrapping, dispatch or total-keeping between gates). ``gates (P, 4, 4)``. ``ts`` is not
    modified (nothing changes if a step raises). The compiled route (``mps_packed``) is tested
    against this pass.
    """
    with one_blas_thread():
        g = np_view(gates)
        before = [np_view(t)[0] for t in ts]
        sites = list(before)
        dtype = ts[0].dtype
        err = TruncationError()
        grams = {}  # the split rule per (rows, cols, absorb): a layer repeats a few shapes
        for k, i in enumerate(firsts):
            right = c <= i
            target = i if right else i + 1
            _move(sites, c, target)
            absorb = "right" if right else "left"
            shape = (2 * sites[i].shape[0], 2 * sites[i + 1].shape[2], absorb)
            gram = grams.get(shape)
            if gram is None:
                gram = grams[shape] = gram_split_applies(*shape[:2], dtype, policy, absorb)
            sites[i], sites[i + 1], dk, kept2 = split(sites[i], sites[i + 1], g[k], policy, absorb, gram)
            c = i + 1 if right else i
            err = err + TruncationError.of_split(dk, kept2)
    return _wrapped(ts, before, sites), c, err


def circuit(ts: List[torch.Tensor], c: int, ops, policy: TruncationPolicy
            ) -> Tuple[List[torch.Tensor], int, TruncationError]:
    """``mps_update.circuit`` for one sample: ``physical`` and ``neighbour_gates`` in turn."""
    return mps_update.layer_by_layer(ts, c, ops, policy, physical, neighbour_gates)


def rdm1(ts: List[torch.Tensor], c: int) -> torch.Tensor:
    """``environments.rdm1`` on numpy arrays: every one-site reduced density matrix of the MPS
    ``ts`` (``(B, χl, 2, χr)`` sites, mixed-canonical around ``c``) -> ``(B, n, 2, 2)``, trace 1,
    in the sites' dtype.

    The same sweep as the torch reference: the left environment ``L (B, χ_ket, χ_bra)`` pushed
    from the centre to the right and the right one pulled to the left (the identity next to the
    centre, whose sites are isometries), each site read as ``Σ L[x,w] A[x,i,y] A*[w,j,y]``
    (right of the centre) or ``Σ A[x,i,y] R[y,z] A*[x,j,z]`` (left of it): two batched matmuls a
    site and one for its 2x2 block, without a torch call's dispatch per contraction."""
    n = len(ts)
    sites = [np_view(t) for t in ts]
    b = sites[0].shape[0]
    out = np.empty((b, n, 2, 2), dtype=sites[0].dtype)
    with one_blas_thread():
        env = None  # L[k] for k > c: sites c..k-1 contracted; the identity at k = c
        for k in range(c, n):
            a = sites[k]
            l, r = a.shape[1], a.shape[3]
            t = a if env is None else (env.transpose(0, 2, 1) @ a.reshape(b, l, 2 * r)).reshape(b, l, 2, r)
            out[:, k] = _block(t, a)
            if k + 1 < n:  # L[k+1][y, z] = Σ_{w,i} t[w,i,y] a*[w,i,z]
                env = t.reshape(b, 2 * l, r).transpose(0, 2, 1) @ a.reshape(b, 2 * l, r).conj()
        if c > 0:  # R[c-1][x, z] = Σ_{i,y} A_c[x,i,y] A_c*[z,i,y]
            a = sites[c]
            l, r = a.shape[1], a.shape[3]
            env = a.reshape(b, l, 2 * r) @ a.reshape(b, l, 2 * r).conj().transpose(0, 2, 1)
        for k in range(c - 1, -1, -1):  # env = R[k]: sites k+1..c contracted
            a = sites[k]
            l, r = a.shape[1], a.shape[3]
            t = a.reshape(b, 2 * l, r) @ env  # Σ_y A[x,i,y] R[y,z] as (x, i, z)
            out[:, k] = _block(t, a)
            if k > 0:  # R[k-1][x, z] = Σ_{i,w} t[x,i,w] A*[z,i,w]
                env = t.reshape(b, l, 2 * r) @ a.reshape(b, l, 2 * r).conj().transpose(0, 2, 1)
    tr = out[:, :, 0, 0] + out[:, :, 1, 1]
    return torch.from_numpy(out / tr[..., None, None])


def _block(t: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``Σ_{w,y} t[b,w,i,y] a*[b,w,j,y]`` -> ``(B, 2, 2)``: the physical indices of ``t`` and
    ``a`` (both ``(B, χl, 2, χr)``, ``t`` possibly as ``(B, 2χl, χr)``) paired over the rest."""
    bb, l = a.shape[0], a.shape[1]
    t = t.reshape(bb, l, 2, -1).transpose(0, 2, 1, 3).reshape(bb, 2, -1)
    s = a.transpose(0, 2, 1, 3).reshape(bb, 2, -1)
    return t @ s.conj().transpose(0, 2, 1)
