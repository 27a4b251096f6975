"""FLOP accounting: conventions, engine-level counts, and the machine's measured matmul peak.

The FLOPs, largest intermediate and path of any single planned contraction come from
``qlam_tn.contraction.plan(equation, *shapes, dtype=...)`` (``planner.py``), which uses the
convention defined here. This module adds the counts for one whole QLAM token update and one
readout on an MPS, and a measurement of the matmul peak, so that callers can report achieved
GFLOP/s against it.

Conventions (all counts are *real* floating-point operations):

- a real multiply-add is 2 FLOPs; a complex multiply-add is 8 (4 real multiplies and 4 real
  adds: ``(a+ib)(c+id) + (e+if)``), so complex arithmetic counts 4x real;
- each pairwise step of a contraction costs one multiply-add per point of its loop,
  ``prod(sizes of all labels in the step)``, at 2 or 8 FLOPs each (opt_einsum's count, times 4
  for complex; a step without a summed label, an outer product, counts half);
- QR (Householder, LAPACK ``geqrf`` + ``orgqr`` for the explicit thin Q) of an m x n matrix
  with k = min(m, n): ``2 max(m,n) k^2 - 2k^3/3`` (geqrf) + ``2mk^2 - 2k^3/3`` (orgqr), from
  LAPACK Working Note 41; for m >= n that is the familiar ``4mn^2 - 4n^3/3``;
- thin SVD (U_1, S, V) of an m x n matrix, m >= n (transpose otherwise): ``14mn^2 + 8n^3``, the
  Golub-Reinsch count in Golub & Van Loan, Matrix Computations, 4th ed., fig. 8.6.1. torch runs
  LAPACK's divide-and-conquer ``gesdd``, whose count differs, so this is an estimate; SVD
  also runs far below the matmul peak, so achieved/peak for an SVD-heavy step is expected to
  be low.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


def flops_per_multiply_add(dtype: torch.dtype) -> int:
    """Real FLOPs of one multiply-add in ``dtype``: 2 for real, 8 for complex."""
    return 8 if dtype.is_complex else 2


def _arith(real: bool) -> int:
    """Multiplier turning a real-arithmetic count into the count for the chosen field."""
    return 1 if real else 4


def qr_flops(m: int, n: int, real: bool = False) -> int:
    """FLOPs of a thin QR (R and the explicit m x min(m, n) Q) of one m x n matrix."""
    k = min(m, n)
    geqrf = 2 * max(m, n) * k * k - (2 * k**3) / 3
    orgqr = 2 * m * k * k - (2 * k**3) / 3
    return int(round(geqrf + orgqr)) * _arith(real)


def svd_flops(m: int, n: int, real: bool = False) -> int:
    """FLOPs of a thin SVD (U_1, S, V) of one m x n matrix (Golub-Reinsch estimate)."""
    m, n = max(m, n), min(m, n)
    return (14 * m * n * n + 8 * n**3) * _arith(real)


def bond_dims(n_qubits: int, chi: int) -> list[int]:
    """Bond dimensions of an n-qubit MPS saturated at ``chi``: ``min(chi, 2^k, 2^(n-k))``.

    Returns n+1 values; entries 0 and n are the trivial boundary bonds (1). Site i has the
    tensor shape ``(B, bonds[i], 2, bonds[i+1])``.
    """
    return [min(chi, 2 ** min(k, n_qubits - k)) for k in range(n_qubits + 1)]


def brickwork_pairs(n_qubits: int) -> list[tuple[int, int]]:
    """One brickwork layer: the even pairs (0,1), (2,3), ... then the odd pairs (1,2), ...

    That is n-1 two-qubit gates per layer.
    """
    even = [(i, i + 1) for i in range(0, n_qubits - 1, 2)]
    odd = [(i, i + 1) for i in range(1, n_qubits - 1, 2)]
    return even + odd


@dataclass(frozen=True)
class StepCost:
    """FLOPs of one engine step.

    Attributes:
        flops: total real FLOPs.
        breakdown: part name -> FLOPs (sums to ``flops``).
        config: the arguments the count was made for.
    """

    flops: int
    breakdown: dict
    config: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """``breakdown`` plus a ``"total"`` entry."""
        return {**self.breakdown, "total": self.flops}


def _check_config(n_qubits: int, chi: int, batch: int) -> None:
    for name, value in (("n_qubits", n_qubits), ("chi", chi), ("batch", batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def token_update_cost(
    n_qubits: int,
    chi: int,
    batch: int,
    depth: int = 1,
    real: bool = False,
    pairs=None,
) -> StepCost:
    """FLOPs of one QLAM token update on a batched MPS saturated at bond dimension ``chi``.

    Bonds follow :func:`bond_dims` (the largest the state can have); site i is
    ``A_i: (B, l, 2, r)`` with ``l, r = bonds[i], bonds[i+1]``. Per token:

    1. ``rotations``: a per-sample 1-qubit gate on every site,
       ``'bpq,blqr->blpr'``: ``B*l*2*2*r`` multiply-adds per site;
    2. ``depth`` layers of 2-qubit gates on ``pairs`` (default :func:`brickwork_pairs`,
       n-1 gates per layer). A gate on sites (i, i+1) with bonds l, m, r::

            l -A_i- m -A_i+1- r      merge   'blxm,bmyr->blxyr'   B*l*2*m*2*r  madds
                 |x        |y        gate    'bpqxy,blxyr->blpqr' B*l*4*4*r    madds
                                     svd     of the (2l x 2r) matrix, per sample
                                     absorb  S into one factor    B*m*2r       multiplies

       ``canonicalize``: moving the orthogonality centre on to the next pair costs one thin QR
       of the (2m x r) matrix of site i+1 and absorbing R into site i+2,
       ``'ab,bxc->axc'``: ``B*r*r*2*bonds[i+3]`` multiply-adds (none past the last site).

    Args:
        n_qubits: number of sites n.
        chi: maximum bond dimension.
        batch: batch size B.
        depth: number of entangling layers D.
        real: real arithmetic (float32/64) instead of complex (4x fewer FLOPs).
        pairs: adjacent pairs ``(i, i+1)`` of one layer; ``None`` for brickwork.

    Returns:
        :class:`StepCost` with parts ``rotations, merge, gate, svd, canonicalize``.
    """
    _check_config(n_qubits, chi, batch)
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative int, got {depth!r}")
    if pairs is None:
        pairs = brickwork_pairs(n_qubits)
    pairs = [tuple(p) for p in pairs]
    for p in pairs:
        if len(p) != 2 or p[1] != p[0] + 1 or not 0 <= p[0] < n_qubits - 1:
            raise ValueError(
                f"pair {p} is not an adjacent pair (i, i+1) of sites 0..{n_qubits - 1}"
            )
    bonds = bond_dims(n_qubits, chi)
    madd = flops_per_multiply_add(torch.float64 if real else torch.complex128)
    # a real singular value times a (complex) entry: 1 real FLOP, or 2 for complex
    scale = 1 if real else 2
    B = batch

    rotations = sum(madd * B * bonds[i] * 4 * bonds[i + 1] for i in range(n_qubits))
    merge = gate = svd = canon = 0
    for i, _ in pairs:
        l, m, r = bonds[i], bonds[i + 1], bonds[i + 2]
        merge += madd * B * l * 2 * m * 2 * r
        gate += madd * B * l * 16 * r
        svd += B * svd_flops(2 * l, 2 * r, real) + scale * B * m * 2 * r
        canon += B * qr_flops(2 * m, r, real)
        if i + 2 < n_qubits:
            canon += madd * B * r * r * 2 * bonds[i + 3]
    parts = {
        "rotations": rotations,
        "merge": depth * merge,
        "gate": depth * gate,
        "svd": depth * svd,
        "canonicalize": depth * canon,
    }
    config = dict(n_qubits=n_qubits, chi=chi, batch=batch, depth=depth, real=real, pairs=pairs)
    return StepCost(flops=sum(parts.values()), breakdown=parts, config=config)


def readout_cost(n_qubits: int, chi: int, batch: int, real: bool = False) -> StepCost:
    """FLOPs of one readout: the single-site reduced density matrix of every site.

    The centre sweeps from site 0 to site n-1 (bonds as in :func:`bond_dims`); at site i::

        rdm           'blpr,blqr->bpq' (A and conj A)      B*l*2*2*r multiply-adds
        canonicalize  thin QR of the (2l x r) matrix, then R into site i+1,
                      'ab,bxc->axc': B*r*r*2*bonds[i+2]   multiply-adds (i < n-1)

    Pauli expectations ``tr(rho sigma)`` from the 2x2 matrices are negligible and not counted.

    Returns:
        :class:`StepCost` with parts ``rdm, canonicalize``.
    """
    _check_config(n_qubits, chi, batch)
    bonds = bond_dims(n_qubits, chi)
    madd = flops_per_multiply_add(torch.float64 if real else torch.complex128)
    B = batch
    rdm = sum(madd * B * bonds[i] * 4 * bonds[i + 1] for i in range(n_qubits))
    canon = 0
    for i in range(n_qubits - 1):
        l, r = bonds[i], bonds[i + 1]
        canon += B * qr_flops(2 * l, r, real) + madd * B * r * r * 2 * bonds[i + 2]
    parts = {"rdm": rdm, "canonicalize": canon}
    config = dict(n_qubits=n_qubits, chi=chi, batch=batch, real=real)
    return StepCost(flops=sum(parts.values()), breakdown=parts, config=config)


@dataclass(frozen=True)
class MatmulPeak:
    """Measured matmul throughput.

    Attributes:
        gflops: dtype name -> best GFLOP/s over the sizes tried.
        table: (dtype name, size) -> GFLOP/s of an (size x size) @ (size x size) product.
        device: where it was measured.
        threads: ``torch.get_num_threads()`` at the time.
    """

    gflops: dict
    table: dict
    device: str
    threads: int


def measure_matmul_peak(
    dtypes=(torch.float64, torch.float32),
    sizes=(256, 512, 1024),
    device="cpu",
    min_time: float = 0.2,
) -> MatmulPeak:
    """Measure square matmul GFLOP/s with torch (best of repeated runs per size).

    A square product of size s costs ``s^3`` multiply-adds, i.e. ``2 s^3`` FLOPs for real
    and ``8 s^3`` for complex dtypes. Each (dtype, size) runs for about ``min_time`` seconds
    after one warm-up. Total time is roughly ``len(dtypes) * len(sizes) * 2 * min_time``.
    """
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    table = {}
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        for s in sizes:
            a = torch.randn(s, s, dtype=dtype, device=device)
            b = torch.randn(s, s, dtype=dtype, device=device)
            torch.matmul(a, b)
            sync()
            best = float("inf")
            spent = 0.0
            while spent < min_time:
                t0 = time.perf_counter()
                torch.matmul(a, b)
                sync()
                dt = time.perf_counter() - t0
                best = min(best, dt)
                spent += dt
            table[(name, s)] = flops_per_multiply_add(dtype) * s**3 / best / 1e9
    gflops = {}
    for (name, _), g in table.items():
        gflops[name] = max(gflops.get(name, 0.0), g)
    return MatmulPeak(gflops=gflops, table=table, device=str(device), threads=torch.get_num_threads())
