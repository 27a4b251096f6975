"""Engine micro-benchmark: one two-qubit gate and one brickwork layer on a saturated MPS.

For every (n, χ, B, real|complex) the state is first driven to bond dimension χ by random
brickwork layers; then we time

* ``gate``: one random two-qubit unitary on the middle pair, centre already there
  (contract, thin SVD of a (2χ x 2χ) matrix per sample, truncate);
* ``layer``: one brickwork layer of random two-qubit unitaries on (0,1), (2,3), ...,
  including the one-site centre moves (QR) between pairs.

Each figure is the median of ``--repeats`` timings. Run it alone: two CPU-heavy jobs on
a machine with few cores slow each other down many-fold.

    qlam bench engine                        # the docs' table (--markdown prints it as markdown)
    qlam bench engine --quick                # a 10-second smoke run
    qlam bench engine --lapack               # the decompositions alone, real vs complex

``--lapack`` times what a two-site split at bond χ runs, by itself: ``eigh`` of a (2χ x 2χ) Gram
matrix, the thin SVD and QR of a (2χ x 2χ) matrix, batched over B, in float64 and complex128. Their
ratio bounds how much faster a real circuit can run than a complex one when the splits dominate.
"""
from __future__ import annotations

import argparse
import itertools

import torch

from qlam_tn import MPS
from qlam_tn.experiments.bench.table import Table, provenance
from qlam_tn.experiments.timing import median_time


def random_unitaries(batch: int, dim: int, real: bool, generator: torch.Generator) -> torch.Tensor:
    """``(batch, dim, dim)`` Haar-like orthogonal (real) or unitary (complex) matrices via QR."""
    dtype = torch.float64 if real else torch.complex128
    if real:
        a = torch.randn(batch, dim, dim, dtype=dtype, generator=generator)
    else:
        a = torch.complex(torch.randn(batch, dim, dim, dtype=torch.float64, generator=generator),
                          torch.randn(batch, dim, dim, dtype=torch.float64, generator=generator))
    q, r = torch.linalg.qr(a)
    d = torch.diagonal(r, dim1=-2, dim2=-1)
    return q * (d / d.abs()).unsqueeze(-2)


def saturated_state(n: int, chi: int, batch: int, real: bool, generator: torch.Generator) -> MPS:
    """A state whose bonds have reached ``min(chi, 2^k, 2^(n-k))`` (random brickwork until saturation).

    Saturated with batch 1, then copied ``batch`` times: the cost of a gate depends on the
    shapes, not on which states the batch holds.
    """
    psi = MPS.zeros(n, batch=1, max_bond=chi, dtype=torch.float64 if real else torch.complex128)
    full = [min(chi, 2 ** (k + 1), 2 ** (n - k - 1)) for k in range(n - 1)]
    for layer in range(4 * n):
        for q in range(layer % 2, n - 1, 2):
            psi.apply(random_unitaries(1, 4, real, generator), (q, q + 1))
        if psi.bond_dims == full:
            break
    tensors = [t.expand(batch, *t.shape[1:]).clone() for t in psi.tensors]
    return MPS(tensors, psi.center, psi.policy)


def bench_one(n: int, chi: int, batch: int, real: bool, repeats: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    psi = saturated_state(n, chi, batch, real, g)
    mid = n // 2 - 1
    gates = [random_unitaries(batch, 4, real, g) for _ in range(repeats + 1)]
    it = itertools.cycle(gates)
    psi.move_center(mid)

    def one_gate():
        psi.apply(next(it), (mid, mid + 1))

    t_gate = median_time(one_gate, repeats)

    def one_layer():
        for q in range(0, n - 1, 2):
            psi.apply(next(it), (q, q + 1))

    t_layer = median_time(one_layer, max(1, repeats // 2))
    return {"n": n, "chi": chi, "batch": batch, "mode": "real f64" if real else "complex128",
            "bond": max(psi.bond_dims), "gate_ms": 1e3 * t_gate, "layer_ms": 1e3 * t_layer,
            "gate_ms_per_sample": 1e3 * t_gate / batch}


def lapack_times(chi: int, batch: int, repeats: int, seed: int = 0) -> dict:
    """Median ms of ``eigh`` (of a Gram matrix), thin ``svd`` and ``qr`` of ``(batch, 2χ, 2χ)``
    matrices in float64 and complex128, and the complex/real ratio of each."""
    g = torch.Generator().manual_seed(seed)
    out = {"chi": chi, "batch": batch}
    for dtype in (torch.float64, torch.complex128):
        a = torch.randn(batch, 2 * chi, 2 * chi, dtype=dtype, generator=g)
        gram = a @ a.mH
        tag = "real" if dtype == torch.float64 else "complex"
        out[f"eigh_{tag}"] = 1e3 * median_time(lambda: torch.linalg.eigh(gram), repeats)
        out[f"svd_{tag}"] = 1e3 * median_time(lambda: torch.linalg.svd(a, full_matrices=False), repeats)
        out[f"qr_{tag}"] = 1e3 * median_time(lambda: torch.linalg.qr(a), repeats)
    for op in ("eigh", "svd", "qr"):
        out[f"{op}_ratio"] = out[f"{op}_complex"] / out[f"{op}_real"]
    return out


def print_lapack(chis, batches, repeats: int, markdown: bool = False) -> list:
    table = Table(["χ", "B", "eigh f64 / c128 (ms)", "ratio", "SVD f64 / c128 (ms)", "ratio",
                   "QR f64 / c128 (ms)", "ratio"], markdown)
    rows = []
    for chi, batch in itertools.product(chis, batches):
        r = lapack_times(chi, batch, repeats)
        rows.append(r)
        cells = [c for op in ("eigh", "svd", "qr")
                 for c in (f"{r[op + '_real']:.3f} / {r[op + '_complex']:.3f}", f"{r[op + '_ratio']:.2f}×")]
        table.row(chi, batch, *cells)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="qlam bench engine", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[16, 32])
    p.add_argument("--chi", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="n=8, chi=8, B=1 and 4 only")
    p.add_argument("--lapack", action="store_true",
                   help="time the split's decompositions alone (eigh, SVD, QR; float64 vs complex128)")
    p.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.quick:
        args.n, args.chi, args.batch, args.repeats = [8], [8], [1, 4], 3
    print(provenance() if args.markdown else f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.lapack:
        return print_lapack(args.chi, args.batch, args.repeats, args.markdown)
    table = Table(["n", "χ", "B", "dtype", "gate (ms)", "gate per sample (ms)", "brickwork layer (ms)"],
                  args.markdown, width=[3, 3, 3, 10, 0, 0, 0])
    rows = []
    for n, chi, batch, real in itertools.product(args.n, args.chi, args.batch, (True, False)):
        r = bench_one(n, chi, batch, real, args.repeats)
        rows.append(r)
        table.row(n, chi, batch, r["mode"], f"{r['gate_ms']:.2f}", f"{r['gate_ms_per_sample']:.3f}",
                  f"{r['layer_ms']:.1f}")
    return rows


if __name__ == "__main__":
    main()
