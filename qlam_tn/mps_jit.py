"""One sample's layers as compiled (numba) calls: a brickwork layer (``layer``), a one-qubit layer
(``physical``), or several of them in one call (``circuit``: a QLAM token).

``mps_host.neighbour_gates`` runs a layer's gates in one pass over numpy arrays, but each gate still
costs some twenty numpy calls (θ, gate, Gram and projection products, rank rule, slicing, the QR of
the centre move) around its one ``eigh``: at χ=16 that glue is about half of a token
(``qlam bench profile``). Here the same arithmetic is compiled: the site arrays
go in as one flat buffer, every gate's move, update and split run in machine code calling the same
LAPACK drivers (numba's ``np.linalg``: ``geqrf``/``orgqr``, ``syevd``/``heevd``, ``gesdd``, and
BLAS ``gemm`` for the products), and the new sites come back as one flat buffer. A one-qubit
layer is one pass over that buffer.

It computes what ``mps_host``'s numpy pass computes, which computes what the torch path does
(tests/test_mps_host.py runs both against the torch path); ``circuit`` computes bit for bit what
its layers one call at a time do (tests/test_mps_packed.py). ``MPS`` calls these kernels through
``mps_packed`` (the compiled route: each call packs the sites, a batch sample by sample) where
``available()``; ``disabled()`` or ``QLAM_TN_JIT=0`` switch them off (the numpy pass then runs at
B=1, the torch path for batches). A kernel's first call per dtype compiles it, which for
``_layer`` takes long enough to notice (docs/engine.md, "Compiled route"); numba caches the machine
code on disk for later processes.

``RECORD``: set to a list to have every layer append the shapes of the decompositions it ran, as
``(kind, rows, cols, absorb_right, gram)`` rows (kind 0: two-site split, 1: QR of a centre move).
``TIMED``: set to a list to have every compiled call append the seconds spent inside the kernel
(what ``qlam bench profile`` sets apart from the Python around it);
``qlam bench anchors`` times them standalone.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from typing import List, Optional, Tuple

import numpy as np
import torch

from .linalg import CUTOFF_MODES, TruncationPolicy, gram_split_allowed

__all__ = ["available", "disabled", "switched_off", "layer", "physical", "flatten", "unflatten", "ENABLED", "RECORD", "TIMED",
           "CUTOFF_CODES"]

# QLAM_TN_JIT=0 switches the compiled layer off for the process (no compile time; the numpy pass).
ENABLED = os.environ.get("QLAM_TN_JIT", "1") != "0"

# cutoff_mode -> the integer the compiled rank rule takes (0 abs, 1 rel, 2 sum2, 3 rsum2)
CUTOFF_CODES = {mode: code for code, mode in enumerate(CUTOFF_MODES)}
RECORD: Optional[list] = None
TIMED: Optional[list] = None

try:  # numba comes with quimb; without it (or if it cannot compile here) mps_host keeps its numpy pass
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency of quimb
    numba = None

_TINY = np.finfo(np.float64).tiny
_BROKEN: Optional[str] = None


def available() -> bool:
    """Whether the compiled layer runs: switched on, numba importable and compiling (not running
    as plain Python under ``NUMBA_DISABLE_JIT``), and not failed to compile here."""
    return ENABLED and numba is not None and not numba.config.DISABLE_JIT and _BROKEN is None


def disabled():
    """Within the block ``mps_host`` takes its numpy pass for every layer (the compiled one's reference)."""
    return switched_off(sys.modules[__name__])


@contextlib.contextmanager
def switched_off(module):
    """Within the block ``module.ENABLED`` is False; restored after (also on an exception)."""
    before, module.ENABLED = module.ENABLED, False
    try:
        yield
    finally:
        module.ENABLED = before


if numba is not None:

    @njit(cache=True)
    def _rank(s2, tails, max_bond, cutoff, mode):
        """``linalg.rank_rule`` compiled, for one ascending spectrum ``s2 (k,)`` with ``tails = cumsum(s2)``."""
        k = s2.shape[0]
        drop = 0
        if cutoff > 0.0:
            for i in range(k):
                if mode == 0:
                    hit = s2[i] <= cutoff * cutoff
                elif mode == 1:
                    hit = s2[i] <= (cutoff * cutoff) * s2[k - 1]
                elif mode == 2:
                    hit = tails[i] <= cutoff
                else:
                    hit = tails[i] <= cutoff * tails[k - 1]
                if hit:
                    drop += 1
        r = k - drop
        if max_bond > 0 and r > max_bond:
            r = max_bond
        return max(r, 1)

    @njit(cache=True)
    def _split(x, y, g, max_bond, cutoff, mode, renorm, gram_allowed, right, log, nlog):
        """``mps_host.split`` with a gate: ``x (l, 2, m)``, ``y (m, 2, r)``, ``g (4, 4)`` ->
        ``left (l, 2, k)``, ``right (k, 2, r)``, discarded, kept weight."""
        l, m, r = x.shape[0], x.shape[2], y.shape[2]
        t = np.dot(x.reshape(l * 2, m), y.reshape(m, 2 * r)).reshape(l, 4, r)
        A3 = np.zeros((l, 4, r), dtype=t.dtype)
        for a in range(l):  # the gate on the pair index: A3[a] = g @ t[a]
            for i in range(4):
                for j in range(4):
                    gij = g[i, j]
                    if gij != 0:
                        for z in range(r):
                            A3[a, i, z] += gij * t[a, j, z]
        A = A3.reshape(l * 2, 2 * r)
        rows, cols = l * 2, 2 * r
        gram = gram_allowed and ((rows <= cols) if right else (cols <= rows))
        log[nlog, 0], log[nlog, 1], log[nlog, 2] = 0, rows, cols
        log[nlog, 3], log[nlog, 4] = 1 if right else 0, 1 if gram else 0
        if gram:
            M = A if right else np.ascontiguousarray(A.conj().T)  # (k, N): the isometry's side
            _, V = np.linalg.eigh(np.dot(M, M.conj().T))  # ascending
            C = np.dot(V.conj().T, M)
            k = C.shape[0]
            s2 = np.empty(k)
            for i in range(k):
                acc = 0.0
                for j in range(C.shape[1]):
                    acc += C[i, j].real ** 2 + C[i, j].imag ** 2
                s2[i] = acc
        else:
            U, S, Vh = np.linalg.svd(A, full_matrices=False)  # descending
            k = S.shape[0]
            s2 = np.empty(k)
            for i in range(k):
                s2[i] = S[k - 1 - i] * S[k - 1 - i]
        tails = np.cumsum(s2)
        rank = _rank(s2, tails, max_bond, cutoff, mode)
        total = tails[k - 1]
        discarded = tails[k - rank - 1] if rank < k else 0.0
        kept2 = total - discarded
        scale = 1.0 / math.sqrt(max(kept2, _TINY)) if renorm else 1.0
        if gram:
            N = C.shape[1]
            Q = np.empty((k, rank), dtype=A.dtype)  # kept columns of V, largest first
            Cr = np.empty((rank, N), dtype=A.dtype)
            for j in range(rank):
                src = k - 1 - j
                for i in range(k):
                    Q[i, j] = V[i, src]
                for i in range(N):
                    Cr[j, i] = C[src, i] * scale
            if right:
                lf, rt = Q, Cr
            else:
                lf, rt = np.ascontiguousarray(Cr.conj().T), np.ascontiguousarray(Q.conj().T)
        else:
            Uk = np.ascontiguousarray(U[:, :rank])
            Vk = np.ascontiguousarray(Vh[:rank])
            if right:
                for j in range(rank):
                    Vk[j] *= S[j] * scale
            else:
                for j in range(rank):
                    Uk[:, j] *= S[j] * scale
            lf, rt = Uk, Vk
        return lf.reshape(l, 2, rank), rt.reshape(rank, 2, r), discarded, kept2

    @njit(cache=True)
    def _move(sites, c, target, log, nlog):
        """``mps_host._move``: QR steps of the centre from ``c`` to ``target``, in the list ``sites``."""
        while c < target:
            a, nxt = sites[c], sites[c + 1]
            l, r = a.shape[0], a.shape[2]
            log[nlog, 0], log[nlog, 1], log[nlog, 2], log[nlog, 3], log[nlog, 4] = 1, l * 2, r, 0, 0
            nlog += 1
            q, rr = np.linalg.qr(a.reshape(l * 2, r))  # numba returns Fortran-ordered factors
            k = q.shape[1]
            sites[c] = np.ascontiguousarray(q).reshape(l, 2, k)
            sites[c + 1] = np.dot(rr, nxt.reshape(r, 2 * nxt.shape[2])).reshape(k, 2, nxt.shape[2])
            c += 1
        while c > target:
            a, prv = sites[c], sites[c - 1]
            l, r = a.shape[0], a.shape[2]
            log[nlog, 0], log[nlog, 1], log[nlog, 2], log[nlog, 3], log[nlog, 4] = 1, 2 * r, l, 0, 0
            nlog += 1
            q, rr = np.linalg.qr(np.ascontiguousarray(a.reshape(l, 2 * r).conj().T))
            k = q.shape[1]
            sites[c] = np.ascontiguousarray(q.conj().T).reshape(k, 2, r)
            p0 = prv.shape[0]
            sites[c - 1] = np.dot(prv.reshape(p0 * 2, l), np.ascontiguousarray(rr.conj().T)).reshape(p0, 2, k)
            c -= 1
        return nlog

    @njit(cache=True)
    def _unpack(flat, shapes):
        """The sites of the flat buffer as a list of ``(χl, 2, χr)`` views."""
        sites = []
        o = 0
        for k in range(shapes.shape[0]):
            size = shapes[k, 0] * shapes[k, 1] * shapes[k, 2]
            sites.append(flat[o:o + size].reshape(shapes[k, 0], shapes[k, 1], shapes[k, 2]))
            o += size
        return sites

    @njit(cache=True)
    def _pack(sites, dtype_of):
        """The sites one after another in a new buffer (of ``dtype_of``'s dtype), and their shapes."""
        n = len(sites)
        out_shapes = np.empty((n, 3), dtype=np.int64)
        total = 0
        for k in range(n):
            out_shapes[k, 0], out_shapes[k, 1], out_shapes[k, 2] = sites[k].shape
            total += sites[k].size
        out = np.empty(total, dtype=dtype_of.dtype)
        o = 0
        for k in range(n):
            size = sites[k].size
            out[o:o + size] = sites[k].ravel()
            o += size
        return out, out_shapes

    @njit(cache=True)
    def _gates_on(sites, c, gates, firsts, max_bond, cutoff, mode, renorm, gram_allowed, log, nlog):
        """``gates[k]`` on sites ``(firsts[k], firsts[k] + 1)`` of the list, in place: returns the
        centre, discarded weight, ``Σ log(1-ε)`` and the number of ``log`` rows written."""
        disc, log_keep = 0.0, 0.0
        for k in range(firsts.shape[0]):
            i = firsts[k]
            right = c <= i
            nlog = _move(sites, c, i if right else i + 1, log, nlog)
            sites[i], sites[i + 1], dk, kept2 = _split(sites[i], sites[i + 1], gates[k], max_bond, cutoff,
                                                       mode, renorm, gram_allowed, right, log, nlog)
            nlog += 1
            c = i + 1 if right else i
            disc += dk
            if dk + kept2 > 0:
                log_keep += math.log1p(-dk / (dk + kept2))
        return c, disc, log_keep, nlog

    @njit(cache=True)
    def _physical_on(sites, gates):
        """``gates[k] (2, 2)`` on site ``k``'s physical index, every site of the list (new arrays)."""
        for k in range(len(sites)):
            a = sites[k]
            out = np.empty_like(a)
            g00, g01, g10, g11 = gates[k, 0, 0], gates[k, 0, 1], gates[k, 1, 0], gates[k, 1, 1]
            for x in range(a.shape[0]):
                for z in range(a.shape[2]):
                    x0, x1 = a[x, 0, z], a[x, 1, z]
                    out[x, 0, z] = g00 * x0 + g01 * x1
                    out[x, 1, z] = g10 * x0 + g11 * x1
            sites[k] = out

    @njit(cache=True, nogil=True)  # mps_packed runs a batch's samples on threads
    def _layer(flat, shapes, c, gates, firsts, max_bond, cutoff, mode, renorm, gram_allowed, log):
        """The compiled pass: sites ``flat`` (one buffer, ``shapes (n, 3)``) -> new buffer, shapes,
        centre, discarded weight, ``Σ log(1-ε)``, and the number of ``log`` rows written."""
        sites = _unpack(flat, shapes)
        c, disc, log_keep, nlog = _gates_on(sites, c, gates, firsts, max_bond, cutoff, mode, renorm,
                                            gram_allowed, log, 0)
        out, out_shapes = _pack(sites, flat)
        return out, out_shapes, c, disc, log_keep, nlog

    @njit(cache=True, nogil=True)
    def _circuit(flat, shapes, c, ones, twos, firsts, program, max_bond, cutoff, mode, renorm, gram_allowed, log):
        """``_layer`` and ``_physical`` in turn, one call: ``program`` rows ``(kind, start, stop)``
        are kind 0, the one-qubit layer ``ones[start] (n, 2, 2)``, or kind 1, the gates
        ``twos[start:stop] (4, 4)`` on pairs ``firsts[start:stop]``. Returns as ``_layer``."""
        sites = _unpack(flat, shapes)
        disc, log_keep, nlog = 0.0, 0.0, 0
        for p in range(program.shape[0]):
            kind, start, stop = program[p, 0], program[p, 1], program[p, 2]
            if kind == 0:
                _physical_on(sites, ones[start])
            else:
                c, dk, lk, nlog = _gates_on(sites, c, twos[start:stop], firsts[start:stop], max_bond, cutoff,
                                            mode, renorm, gram_allowed, log, nlog)
                disc += dk
                log_keep += lk
        out, out_shapes = _pack(sites, flat)
        return out, out_shapes, c, disc, log_keep, nlog

    @njit(cache=True, nogil=True)
    def _physical(flat, shapes, gates):
        """``gates[k] (2, 2)`` on site ``k``'s physical index, every site of the flat buffer."""
        sites = _unpack(flat, shapes)
        _physical_on(sites, gates)
        return _pack(sites, flat)[0]


def physical(flat: np.ndarray, shapes: np.ndarray, gates: np.ndarray) -> Optional[np.ndarray]:
    """``gates[q] (2, 2)`` on the physical index of every site, as ``mps_host.physical``'s numpy
    loop. The sites lie one after another in ``flat`` (float64 or complex128), site ``q`` of shape
    ``shapes[q] = (χl, 2, χr)``; ``gates (n, 2, 2)``. Returns the new buffer (same shapes), or
    ``None`` where the kernel cannot run here (as ``layer``). ``flat`` is not modified."""
    if not available():
        return None
    _check_gates(flat, gates, shapes.shape[0], 2)
    gates = np.ascontiguousarray(gates)
    try:
        t0 = time.perf_counter()
        out = _physical(flat, shapes, gates)
        if TIMED is not None:
            TIMED.append(time.perf_counter() - t0)
        return out
    except numba.core.errors.NumbaError as e:
        _compile_failed(e)
        return None


def _compile_failed(e: Exception) -> None:
    """Switch the kernels off for the process after numba failed to compile one, and say so once."""
    global _BROKEN
    _BROKEN = f"{type(e).__name__}: {e}"
    warnings.warn(f"qlam_tn.mps_jit: numba could not compile its kernels here, mps_host takes its numpy "
                  f"pass instead ({_BROKEN.splitlines()[0]})", RuntimeWarning, stacklevel=3)


def _check_gates(flat: np.ndarray, gates: np.ndarray, needed: int, d: int) -> None:
    """The compiled kernels index gates unchecked and keep the state's dtype: refuse gates that are
    not ``(P, d, d)``, fewer gates than the call applies, or gates of another dtype (a caller
    promotes the state first)."""
    if gates.ndim != 3 or gates.shape[1:] != (d, d):
        raise ValueError(f"gates must be ({needed}, {d}, {d}), got {gates.shape}")
    if gates.shape[0] < needed:
        raise ValueError(f"{needed} gates to apply, {gates.shape[0]} given")
    if gates.dtype != flat.dtype:
        raise TypeError(f"gates of dtype {gates.dtype} on a state of dtype {flat.dtype}: promote the state first")


def _check_pairs(firsts: np.ndarray, n: int) -> None:
    """Every pair ``(firsts[k], firsts[k] + 1)`` on the chain (numba indexes the site list unchecked,
    and a negative index would wrap round)."""
    if firsts.size and not (0 <= firsts.min() and firsts.max() < n - 1):
        raise ValueError(f"pairs must start in [0, {n - 2}], got {firsts.tolist()}")


def flatten(sites: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """``(χl, 2, χr)`` arrays -> one buffer holding them one after another, and ``shapes (n, 3)``."""
    return np.concatenate([a.ravel() for a in sites]), np.array([a.shape for a in sites], dtype=np.int64)


def unflatten(flat: np.ndarray, shapes: np.ndarray) -> List[np.ndarray]:
    """``(χl, 2, χr)`` views of consecutive stretches of ``flat``, one per row of ``shapes``."""
    new, o = [], 0
    for l, p, r in shapes.tolist():
        new.append(flat[o:o + l * p * r].reshape(l, p, r))
        o += l * p * r
    return new


def layer(flat: np.ndarray, shapes: np.ndarray, c: int, gates: np.ndarray, firsts: List[int],
          policy: TruncationPolicy) -> Optional[Tuple[np.ndarray, np.ndarray, int, float, float]]:
    """``gates[k] (4, 4)`` on sites ``(firsts[k], firsts[k] + 1)``, in order, with the centre at
    ``c``: ``mps_host.neighbour_gates``'s numpy pass, compiled. The sites lie one after another in
    ``flat`` (float64 or complex128), site ``q`` of shape ``shapes[q] = (χl, 2, χr)``;
    ``gates (P, 4, 4)``. Returns the new buffer and shapes, the centre, the summed discarded weight
    and ``Σ log(1-ε)``, or ``None`` where the kernel cannot run here (``available()`` false, or
    numba failed to compile it: then it warns once and stays off). ``flat`` is not modified, also
    when a LAPACK call fails (``LinAlgError``). BLAS threads are the caller's business.
    """
    if not available():
        return None
    fs = np.asarray(firsts, dtype=np.int64)
    _check_gates(flat, gates, fs.shape[0], 4)
    _check_pairs(fs, shapes.shape[0])
    return _run(_layer, flat, shapes, c, (np.ascontiguousarray(gates), fs), policy, fs.shape[0])


def circuit(flat: np.ndarray, shapes: np.ndarray, c: int, ones: np.ndarray, twos: np.ndarray, firsts: np.ndarray,
            program: np.ndarray, policy: TruncationPolicy) -> Optional[Tuple[np.ndarray, np.ndarray, int, float, float]]:
    """Several layers in one call, as ``physical`` and ``layer`` one after another would run them
    (the same arithmetic in the same order). ``program (K, 3)`` rows ``(kind, start, stop)``:
    kind 0 applies the one-qubit layer ``ones[start] (n, 2, 2)`` (``ones (L, n, 2, 2)``), kind 1
    the gates ``twos[start:stop] (4, 4)`` on sites ``(firsts[j], firsts[j] + 1)`` for ``j`` in
    ``start:stop`` (``twos (P, 4, 4)``, ``firsts (P,)``). Returns as ``layer``."""
    if not available():
        return None
    n, program = shapes.shape[0], np.ascontiguousarray(program, dtype=np.int64)
    firsts = np.ascontiguousarray(firsts, dtype=np.int64)
    _check_gates(flat, twos, firsts.shape[0], 4)
    _check_pairs(firsts, n)
    if ones.dtype != flat.dtype or ones.ndim != 4 or ones.shape[1:] != (n, 2, 2):
        raise TypeError(f"one-qubit layers must be (L, {n}, 2, 2) of dtype {flat.dtype}, got "
                        f"{ones.shape} of {ones.dtype}")
    for kind, start, stop in program.tolist():
        if not ((kind == 0 and 0 <= start < ones.shape[0]) or (kind == 1 and 0 <= start <= stop <= firsts.shape[0])):
            raise ValueError(f"program row {(kind, start, stop)} does not fit {ones.shape[0]} one-qubit layers "
                             f"and {firsts.shape[0]} two-qubit gates")
    return _run(_circuit, flat, shapes, c, (np.ascontiguousarray(ones), np.ascontiguousarray(twos), firsts, program),
                policy, firsts.shape[0])


def _run(kernel, flat, shapes, c, args: tuple, policy: TruncationPolicy, n_gates: int):
    """Call ``_layer`` or ``_circuit`` with the policy's arguments; record its decompositions."""
    log = np.empty((n_gates * (shapes.shape[0] + 1), 5), dtype=np.int64)  # each gate: its moves, its split
    gram_allowed = gram_split_allowed(torch.complex128 if flat.dtype.kind == "c" else torch.float64, policy)
    try:
        t0 = time.perf_counter()
        out, out_shapes, c, disc, log_keep, nlog = kernel(
            flat, shapes, c, *args, policy.max_bond or 0, float(policy.cutoff), CUTOFF_CODES[policy.cutoff_mode],
            bool(policy.renormalize), gram_allowed, log)
    except numba.core.errors.NumbaError as e:  # a compile failure on this machine: the numpy pass instead
        _compile_failed(e)
        return None
    if TIMED is not None:
        TIMED.append(time.perf_counter() - t0)
    if RECORD is not None:
        RECORD.extend(tuple(int(v) for v in row) for row in log[:nlog])
    return out, out_shapes, int(c), float(disc), float(log_keep)
