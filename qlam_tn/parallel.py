"""Batched CPU decompositions on several threads, a slice of the batch each.

torch's CPU wrappers of LAPACK (``eigh``, ``svd``, ``qr``) factor the matrices of a batch one
after another in the calling thread, and LAPACK itself does not split matrices this small
(χ ≤ 64) over cores: a batch of 32 two-site splits keeps one core busy and leaves the others
idle. ``batch_map`` cuts the batch into ``torch.get_num_threads()`` slices and factors them
concurrently (torch releases the GIL inside each call); the calling thread takes the first slice.
Each matrix is factored on its own either way, so the factors are bitwise those of one call
(their memory layout is not: the slices are concatenated row-major, so later matmuls on them may
round differently, at the 1e-16 level).

Only for values: the slices run under ``no_grad`` (grad mode is per thread), so callers use it
where nothing is differentiated through the call (the ``eigh`` split, the forward of the SVD
with the hand-written backward, QR moves outside autograd).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Tuple

import torch

__all__ = ["batch_map"]

# Below this much work (batch · m · n · min(m, n): ~0.3 ms of LAPACK here) the hand-off to a thread
# costs about what it saves.
MIN_WORK = 1 << 17

_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None
_pool_key: Tuple[int, int] = (0, 0)  # (pid, workers): a forked child or a new thread count gets a new pool


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    key = (os.getpid(), workers)
    with _lock:
        if _pool is None or _pool_key != key:
            # After a fork the parent's threads do not exist here: drop the old pool without joining.
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qlam-linalg")
            _pool_key = key
        return _pool


def _values(fn: Callable, a: torch.Tensor) -> tuple:
    with torch.no_grad():
        return fn(a)


def batch_map(fn: Callable, a: torch.Tensor, min_work: Optional[int] = None):
    """``fn(a)`` for a batched decomposition ``fn``, its batch split over threads where that pays.

    Args:
        fn: maps ``(b, m, n)`` to a tensor or tuple of tensors whose leading axis is ``b``, each
            matrix independently (``torch.linalg.eigh``, ``svd``, ``qr``, or a lambda over them).
        a: ``(B, m, n)``.
        min_work: ``B · m · n · min(m, n)`` below which ``fn(a)`` is called as it is (default
            ``MIN_WORK``).

    Returns what ``fn(a)`` returns: a tensor, or a plain tuple of tensors where ``fn`` returns a
    tuple (named tuples become plain ones: unpack them). Split results carry no autograd history
    (see the module docstring).
    """
    threads = torch.get_num_threads()
    b, m, n = a.shape[0], a.shape[-2], a.shape[-1]
    floor = MIN_WORK if min_work is None else min_work
    if threads < 2 or b < 2 or a.device.type != "cpu" or b * m * n * min(m, n) < floor:
        return fn(a)
    chunks = a.detach().chunk(min(threads, b))
    pool = _executor(len(chunks) - 1)
    futures = [pool.submit(_values, fn, c) for c in chunks[1:]]
    parts = [_values(fn, chunks[0])] + [f.result() for f in futures]
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return tuple(torch.cat(p) for p in zip(*parts))
