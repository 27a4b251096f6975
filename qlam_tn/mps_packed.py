"""An MPS's sites as the compiled kernels hold them, for one sample or a batch: ``Packed``.

``mps_jit``'s layers take one sample's sites as one flat buffer and return a new one. An MPS
whose layers run compiled keeps its sites in that form from one layer to the next
(``MPS._packed``) and makes torch tensors of them only when something reads ``MPS.tensors``:

- at B=1, ``(1, χl, 2, χr)`` views of the buffer;
- at B > 1, one zero-padded ``(B, χl, 2, χr)`` tensor per site, each bond as wide as its widest
  sample's. This is what the torch path holds too: a sample's columns beyond its own rank are zero.

So a token's layers (a one-qubit layer, two brickwork layers, another one-qubit layer) are four
kernel calls with no tensor wrapping between them. At χ=16 the wrapping had been a tenth of a
token (``experiments/studies/profile_token.py``).

A batch runs sample by sample, each sample's sites ragged (its own ranks). Each sample's layer is
one compiled call that releases the GIL, spread over ``torch.get_num_threads()`` threads: the
thread count the torch path's batched LAPACK calls use. BLAS inside each call runs on one thread.

The compiled layers compute what ``mps_host``'s numpy pass computes (tests/test_mps_host.py,
tests/test_mps_jit.py), and a batch sample by sample what each sample alone does
(tests/test_mps_packed.py). The torch path stays the reference of all of them.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import mps_host, mps_jit
from .linalg import TruncationPolicy

__all__ = ["Packed", "takes"]

_TORCH_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.complex128): torch.complex128}


def takes(batch: int, gates: Sequence[torch.Tensor], tensors: Optional[Sequence[torch.Tensor]]) -> bool:
    """Whether the compiled kernels may run layers of ``gates`` (one tensor per layer) on these
    sites: switched on and compiling here, each layer's gates shared (``(P, d, d)``) or one set per
    sample (``(B, P, d, d)``), on the CPU in float64/complex128 outside autograd. ``tensors=None``:
    sites already packed (numpy buffers: CPU, float64/complex128, no autograd)."""
    if not (mps_host.ENABLED and mps_jit.available()):
        return False
    if not all(g.dim() == 3 or (g.dim() == 4 and g.shape[0] == batch) for g in gates):
        return False
    return mps_host.host_tensors((*gates, *(tensors or ())))


class Packed:
    """The sites of ``B`` samples, each sample's in one flat buffer (``mps_jit.flatten``'s layout).

    ``flats[s]`` (float64 or complex128) holds sample ``s``'s sites one after another, site ``q``
    of shape ``shapes[s][q] = (χl, 2, χr)``. A ``Packed`` is never modified: every layer returns a
    new one.
    """

    __slots__ = ("flats", "shapes", "_made", "_stamps")

    def __init__(self, flats: List[np.ndarray], shapes: List[np.ndarray]):
        self.flats, self.shapes = flats, shapes
        self._made: Optional[Tuple[torch.Tensor, ...]] = None
        self._stamps: Optional[list] = None

    @classmethod
    def pack(cls, tensors: Sequence[torch.Tensor]) -> "Packed":
        """Sites ``(B, χl, 2, χr)`` (CPU, float64/complex128) -> one buffer per sample (a copy)."""
        arrays = [mps_host._np(t) for t in tensors]
        flats, shapes = [], []
        for s in range(arrays[0].shape[0]):
            flat, shape = mps_jit.flatten([a[s] for a in arrays])
            flats.append(flat)
            shapes.append(shape)
        return cls(flats, shapes)

    @property
    def batch(self) -> int:
        return len(self.flats)

    @property
    def dtype(self) -> torch.dtype:
        return _TORCH_DTYPES[self.flats[0].dtype]

    def bond_dims(self) -> List[int]:
        """The ``n - 1`` inner bonds as ``tensors()`` would hold them: the widest sample's."""
        return [int(max(shape[q, 2] for shape in self.shapes)) for q in range(self.shapes[0].shape[0] - 1)]

    def tensors(self) -> List[torch.Tensor]:
        """The sites as ``(B, χl, 2, χr)`` tensors (made once; at B=1 views of the buffer, at B > 1
        zero-padded copies)."""
        if self._made is None:
            if self.batch == 1:
                made = [mps_host._site(a) for a in mps_jit.unflatten(self.flats[0], self.shapes[0])]
            else:
                made = self._padded()
            self._made, self._stamps = tuple(made), [(t.data_ptr(), t._version) for t in made]
        return list(self._made)  # a list of its own: a caller's edit of it must not edit what ``made`` compares with

    def _padded(self) -> List[torch.Tensor]:
        samples = [mps_jit.unflatten(f, s) for f, s in zip(self.flats, self.shapes)]
        out = []
        for q in range(len(samples[0])):
            left = max(sites[q].shape[0] for sites in samples)
            right = max(sites[q].shape[2] for sites in samples)
            site = np.zeros((self.batch, left, 2, right), dtype=self.flats[0].dtype)
            for s, sites in enumerate(samples):
                a = sites[q]
                site[s, :a.shape[0], :, :a.shape[2]] = a
            out.append(torch.from_numpy(site))
        return out

    def made(self, tensors: Sequence[torch.Tensor]) -> bool:
        """Whether ``tensors`` are the very tensors ``tensors()`` returned at B=1, unchanged: none
        replaced in the list, none given other data (``t.data = ...``), none edited in place (a
        tensor's version counter; an edit the counter misses, through ``t.data`` or numpy, writes
        the buffer itself, which the tensors view). At B > 1 the tensors are padded copies, whose
        every edit the counter could not see: once read, they are always packed afresh."""
        made = self._made
        return (self.batch == 1 and made is not None and len(tensors) == len(made)
                and all(t is m and (t.data_ptr(), t._version) == stamp
                        for t, m, stamp in zip(tensors, made, self._stamps)))

    def physical(self, gates: torch.Tensor) -> Optional["Packed"]:
        """``gates (n, 2, 2)`` (or per sample ``(B, n, 2, 2)``) on every site's physical index:
        ``MPS._apply_layer``. ``None`` where the kernel cannot run (numba failed to compile it)."""
        g = mps_host._np(gates)
        out = []
        for s in range(self.batch):
            flat = mps_jit.physical(self.flats[s], self.shapes[s], g if g.ndim == 3 else g[s])
            if flat is None:
                return None
            out.append(flat)
        return Packed(out, self.shapes)

    def layer(self, c: int, gates: torch.Tensor, firsts: List[int], policy: TruncationPolicy
              ) -> Optional[Tuple["Packed", int, np.ndarray, np.ndarray]]:
        """``gates[..., k, :, :] (4, 4)`` on sites ``(firsts[k], firsts[k] + 1)``, in order, from
        centre ``c``: ``MPS._apply_neighbours``. ``gates (P, 4, 4)`` or per sample ``(B, P, 4, 4)``.

        Returns the new sites, the centre (the same for every sample: it follows the gates), and
        per sample ``(B,)`` the discarded weight and ``Σ log(1-ε)``; ``None`` where the kernel
        cannot run. Nothing is modified if a sample's step raises.
        """
        g = mps_host._np(gates)
        return self._each_sample(lambda s: mps_jit.layer(self.flats[s], self.shapes[s], c, g if g.ndim == 3 else g[s],
                                                         firsts, policy))

    def circuit(self, c: int, ops: Sequence[tuple], policy: TruncationPolicy
                ) -> Optional[Tuple["Packed", int, np.ndarray, np.ndarray]]:
        """``ops`` in turn, in one compiled call per sample (``mps_jit.circuit``): ``("1q", gates)``
        as ``physical``, ``("2q", gates, firsts)`` as ``layer``; the gates in the sites' dtype.
        Returns as ``layer``."""
        dtype, n = self.flats[0].dtype, self.shapes[0].shape[0]
        n_ones = sum(op[0] == "1q" for op in ops)
        n_twos = sum(len(op[2]) for op in ops if op[0] == "2q")
        ones = np.empty((self.batch, n_ones, n, 2, 2), dtype)  # per sample: every layer's gates
        twos = np.empty((self.batch, n_twos, 4, 4), dtype)
        firsts = np.empty(n_twos, np.int64)
        program = np.empty((len(ops), 3), np.int64)
        j = p = 0
        for k, op in enumerate(ops):
            g = mps_host._np(op[1])
            if g.dtype != dtype:  # (a cast would drop an imaginary part)
                raise TypeError(f"gates of dtype {g.dtype} on sites of dtype {dtype}: promote the state first")
            shape = (n, 2, 2) if op[0] == "1q" else (len(op[2]), 4, 4)
            if g.shape[-3:] != shape or g.ndim not in (3, 4):  # (assigning would broadcast a wrong shape)
                raise ValueError(f"a {op[0]} layer's gates must be {shape} or (B, *{shape}), got {g.shape}")
            if op[0] == "1q":
                ones[:, j] = g  # shared (n, 2, 2) or per sample (B, n, 2, 2)
                program[k] = (0, j, j)
                j += 1
            else:
                m = len(op[2])
                twos[:, p:p + m] = g
                firsts[p:p + m] = op[2]
                program[k] = (1, p, p + m)
                p += m
        return self._each_sample(lambda s: mps_jit.circuit(self.flats[s], self.shapes[s], c, ones[s], twos[s], firsts,
                                                           program, policy))

    def _each_sample(self, one) -> Optional[Tuple["Packed", int, np.ndarray, np.ndarray]]:
        """``one(s)`` (a ``mps_jit.layer`` or ``circuit`` call on sample ``s``) for every sample,
        BLAS on one thread; the new sites, centre and per-sample weights, or ``None`` where the
        kernel cannot run."""
        with mps_host._one_blas_thread():
            done = _each(one, range(self.batch))  # (numba compiles a kernel once, under its own lock)
        if any(d is None for d in done):
            return None
        return (Packed([d[0] for d in done], [d[1] for d in done]), done[0][2],
                np.array([d[3] for d in done]), np.array([d[4] for d in done]))


def _each(fn, items: range) -> list:
    """``[fn(i) for i in items]``, the items dealt out in turn to ``torch.get_num_threads()``
    threads (the compiled kernels release the GIL)."""
    workers = min(torch.get_num_threads(), len(items))
    if workers <= 1:
        return [fn(i) for i in items]
    chunks = [items[k::workers] for k in range(workers)]  # dealt in turn: the samples' costs are alike
    parts = list(_pool(workers).map(lambda chunk: [fn(i) for i in chunk], chunks))
    out = [None] * len(items)
    for k, part in enumerate(parts):
        out[k::workers] = part
    return out


@functools.lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="qlam_tn-packed")


# A forked child inherits the pools without their threads (its work would wait for ever): it
# starts its own.
os.register_at_fork(after_in_child=_pool.cache_clear)
