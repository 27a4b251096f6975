"""The compiled route of the MPS update: ``mps_jit``'s kernels on a batch, sample by sample.

Same signatures as the torch reference (``mps_update``) and the numpy pass (``mps_host``)::

    neighbour_gates(ts, c, gates, firsts, policy)    -> ts, c, err   (or None)
    physical(ts, gates)                              -> ts           (or None)
    circuit(ts, c, ops, policy)                      -> ts, c, err   (or None: a token in one call)

``None`` means the kernels cannot run here (numba failed to compile them; they then switch
themselves off and ``qlam_tn.routes`` takes the next route). ``takes`` says where they may run.

Each call packs the sites into one flat buffer per sample (``Packed``), runs one compiled call
per sample, and makes tensors of the result:

- at B=1, ``(1, χl, 2, χr)`` views of the buffer;
- at B > 1, one zero-padded ``(B, χl, 2, χr)`` tensor per site, each bond as wide as its widest
  sample's. This is what the torch route holds too: a sample's columns beyond its own rank are zero.

Nothing is kept between calls: the state's sites are plain tensors again after every call, so
what a caller reads or edits is what the next call packs. A QLAM token's layers (a one-qubit
layer, brickwork layers, another one-qubit layer) are one ``circuit`` call, so the packing is
paid once a token.

A batch runs sample by sample, each sample's sites ragged (its own ranks). Each sample's call
releases the GIL and the samples are spread over ``torch.get_num_threads()`` threads: the thread
count the torch route's batched LAPACK calls use. BLAS inside each call runs on one thread.

The compiled layers compute what ``mps_host``'s numpy pass computes (tests/test_mps_host.py,
tests/test_mps_jit.py), and a batch sample by sample what each sample alone does
(tests/test_mps_packed.py). The torch route stays the reference of all of them.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import mps_host, mps_jit
from .linalg import TruncationError, TruncationPolicy

__all__ = ["Packed", "takes", "neighbour_gates", "physical", "circuit", "thread_pool"]

_TORCH_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.complex128): torch.complex128}

Sites = List[torch.Tensor]


def takes(batch: int, gates: Sequence[torch.Tensor], tensors: Sequence[torch.Tensor]) -> bool:
    """Whether the compiled kernels may run layers of ``gates`` (one tensor per layer) on these
    sites: switched on and compiling here, each layer's gates shared (``(P, d, d)``) or one set per
    sample (``(B, P, d, d)``), on the CPU in float64/complex128 outside autograd."""
    if not (mps_host.ENABLED and mps_jit.available()):
        return False
    if not all(g.dim() == 3 or (g.dim() == 4 and g.shape[0] == batch) for g in gates):
        return False
    return mps_host.host_tensors((*gates, *tensors))


def neighbour_gates(ts: Sites, c: int, gates: torch.Tensor, firsts: Sequence[int],
                    policy: TruncationPolicy) -> Optional[Tuple[Sites, int, TruncationError]]:
    """``mps_update.neighbour_gates``, one compiled call per sample."""
    return _unpacked(Packed.pack(ts).layer(c, gates, list(firsts), policy))


def physical(ts: Sites, gates: torch.Tensor) -> Optional[Sites]:
    """``mps_update.physical``, one compiled call per sample."""
    new = Packed.pack(ts).physical(gates)
    return None if new is None else new.tensors()


def circuit(ts: Sites, c: int, ops: Sequence[tuple], policy: TruncationPolicy
            ) -> Optional[Tuple[Sites, int, TruncationError]]:
    """``mps_update.circuit``: every layer in one compiled call per sample, atomically."""
    return _unpacked(Packed.pack(ts).circuit(c, ops, policy))


def _unpacked(done) -> Optional[Tuple[Sites, int, TruncationError]]:
    if done is None:
        return None
    packed, c, disc, logf = done
    return packed.tensors(), c, TruncationError(torch.from_numpy(disc), torch.from_numpy(logf))


class Packed:
    """The sites of ``B`` samples, each sample's in one flat buffer (``mps_jit.flatten``'s layout).

    ``flats[s]`` (float64 or complex128) holds sample ``s``'s sites one after another, site ``q``
    of shape ``shapes[s][q] = (χl, 2, χr)``. A ``Packed`` is never modified: every layer returns a
    new one.
    """

    __slots__ = ("flats", "shapes")

    def __init__(self, flats: List[np.ndarray], shapes: List[np.ndarray]):
        self.flats, self.shapes = flats, shapes

    @classmethod
    def pack(cls, tensors: Sequence[torch.Tensor]) -> "Packed":
        """Sites ``(B, χl, 2, χr)`` (CPU, float64/complex128) -> one buffer per sample (a copy)."""
        arrays = [mps_host.np_view(t) for t in tensors]
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
        """The sites as ``(B, χl, 2, χr)`` tensors: at B=1 views of the buffer, at B > 1
        zero-padded copies."""
        if self.batch == 1:
            return [mps_host.site_tensor(a) for a in mps_jit.unflatten(self.flats[0], self.shapes[0])]
        return self._padded()

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

    def physical(self, gates: torch.Tensor) -> Optional["Packed"]:
        """``gates (n, 2, 2)`` (or per sample ``(B, n, 2, 2)``) on every site's physical index:
        ``mps_update.physical``. ``None`` where the kernel cannot run (numba failed to compile it)."""
        g = mps_host.np_view(gates)
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
        centre ``c``: ``mps_update.neighbour_gates``. ``gates (P, 4, 4)`` or per sample ``(B, P, 4, 4)``.

        Returns the new sites, the centre (the same for every sample: it follows the gates), and
        per sample ``(B,)`` the discarded weight and ``Σ log(1-ε)``; ``None`` where the kernel
        cannot run. Nothing is modified if a sample's step raises.
        """
        g = mps_host.np_view(gates)
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
            g = mps_host.np_view(op[1])
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
        with mps_host.one_blas_thread():
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
    parts = list(thread_pool(workers).map(lambda chunk: [fn(i) for i in chunk], chunks))
    out = [None] * len(items)
    for k, part in enumerate(parts):
        out[k::workers] = part
    return out


@functools.lru_cache(maxsize=4)
def thread_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads for compiled samples (made once)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="qlam_tn-packed")


# A forked child inherits the pools without their threads (its work would wait for ever): it
# starts its own.
os.register_at_fork(after_in_child=thread_pool.cache_clear)
