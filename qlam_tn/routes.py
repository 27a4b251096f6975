"""Which implementation of the MPS update runs: the one place that decides.

Three routes compute the same update, with the same signatures (``mps_update``'s docstring)::

    route       module        runs where                                        operations
    torch       mps_update    everywhere: autograd, float32, CUDA, batches      all (the reference)
    host        mps_host      one sample, CPU, float64/complex128, no autograd  all
    compiled    mps_packed    CPU, float64/complex128, no autograd, numba on    neighbour_gates,
                                                                                physical, circuit

One read takes the numpy route as well: ``rdm1`` (every one-site reduced density matrix, a sweep
of small contractions) runs in ``mps_host.rdm1`` for CPU float64/complex128 sites outside autograd,
any batch, and in ``environments`` (the reference, with autograd) otherwise; ``environments``
asks ``choose("rdm1", tensors)``.

A factorisation that fails (a NaN or infinity reached it) raises ``linalg.LinAlgError`` on every
route, and the state is left as it was.

``choose`` picks the fastest route that computes what the reference computes: compiled where it
takes the operation, then host, then torch. ``run`` calls it, and takes the next route where the
compiled kernels turn out not to compile here (they then switch themselves off for the process).
``MPS`` calls nothing else to update its sites.

Switches (each a context manager): ``mps_jit.disabled()`` turns the compiled route off (host and
torch remain), ``mps_host.disabled()`` turns both fast routes off (the reference alone), for
side-by-side benchmarks and tests; ``QLAM_TN_JIT=0`` turns the compiled route off for a process.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from . import mps_host, mps_packed, mps_update
from .linalg import LinAlgError

__all__ = ["ROUTES", "OPERATIONS", "READS", "choose", "run"]

ROUTES = {"torch": mps_update, "host": mps_host, "compiled": mps_packed}
OPERATIONS = {
    "torch": ("moved", "two_site", "neighbour_gates", "physical", "circuit"),
    "host": ("moved", "two_site", "neighbour_gates", "physical", "circuit"),
    "compiled": ("neighbour_gates", "physical", "circuit"),
}
READS = ("rdm1",)  # host or torch (environments), no gates


def choose(op: str, tensors: Sequence[torch.Tensor], gates: Sequence[torch.Tensor] = ()) -> str:
    """The route for operation ``op`` on these site tensors ``(B, χl, 2, χr)`` with these gates
    (one tensor per layer: shared ``(P, d, d)`` or per-sample ``(B, P, d, d)``; for ``two_site`` a
    ``(4, 4)`` / ``(B, 4, 4)`` gate or none for SWAP)."""
    batch = tensors[0].shape[0]
    if op in READS:
        return "host" if mps_host.reads(batch, tensors) else "torch"
    if op in OPERATIONS["compiled"] and mps_packed.takes(batch, gates, tensors):
        return "compiled"
    # The numpy pass takes gates shared by the batch's one sample: (P, d, d) layers, or a
    # (d, d) / (1, d, d) two-site gate.
    shared = op == "two_site" or all(g.dim() == 3 for g in gates)
    if op in OPERATIONS["host"] and shared and mps_host.applies(batch, (*tensors, *gates)):
        return "host"
    return "torch"


def run(op: str, tensors: Sequence[torch.Tensor], gates: Sequence[torch.Tensor], *args):
    """``op(*args)`` by the route ``choose(op, tensors, gates)`` picks; ``args`` as the route
    modules take them (``mps_update``'s docstring)."""
    route = choose(op, tensors, gates)
    try:
        out = getattr(ROUTES[route], op)(*args)
        if out is None:  # the compiled kernels could not compile here and switched themselves off
            route = choose(op, tensors, gates)
            out = getattr(ROUTES[route], op)(*args)
    except (np.linalg.LinAlgError, torch.linalg.LinAlgError) as e:
        if isinstance(e, LinAlgError):
            raise
        raise LinAlgError(f"{op} on the {route} route failed ({e}): a NaN or infinite gate or site "
                          f"reached a factorisation; the state is as it was before the call") from e
    return out
