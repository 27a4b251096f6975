"""Per-call time of the engine's hot-path contractions: torch.einsum vs opt_einsum vs contract.

Three ways to run each contraction at the engine's sizes (B = batch, chi = bond dimension):

- ``einsum``: plain ``torch.einsum(eq, *ops)`` (for 3+ operands torch re-plans the path with
  opt_einsum on every call);
- ``oe_expr``: an ``opt_einsum.contract_expression`` built once, called with
  ``backend="torch"``;
- ``contract``: ``qlam_tn.contraction.contract`` with its plan cached (what the engine runs).

docs/benchmarks.md ("Planned contractions") holds its tables. Run (well under a minute)::

    qlam bench contraction --threads 1 [--markdown]
"""
from __future__ import annotations

import argparse

import opt_einsum
import torch

from qlam_tn.contraction import contract
from qlam_tn.experiments.bench.table import Table, provenance
from qlam_tn.experiments.timing import per_call_us

# name -> (equation, shapes as functions of (B, chi))
CASES = {
    "1q gate": ("bpq,blqr->blpr", lambda B, c: [(B, 2, 2), (B, c, 2, c)]),
    "two-site merge": ("bixj,bjyk->bixyk", lambda B, c: [(B, c, 2, c), (B, c, 2, c)]),
    "2q gate": ("bpqxy,blxyr->blpqr", lambda B, c: [(B, 2, 2, 2, 2), (B, c, 2, 2, c)]),
    "1-site rdm": ("blpr,blqr->bpq", lambda B, c: [(B, c, 2, c), (B, c, 2, c)]),
    "env update": ("bac,bapr,bcps->brs", lambda B, c: [(B, c, c), (B, c, 2, c), (B, c, 2, c)]),
    "env update + op": (
        "bac,bapr,pq,bcqs->brs",
        lambda B, c: [(B, c, c), (B, c, 2, c), (2, 2), (B, c, 2, c)],
    ),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="qlam bench contraction", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--dtype", default="complex128", choices=["complex128", "complex64", "float64", "float32"]
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--chis", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per measurement")
    parser.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    setting = f"opt_einsum {opt_einsum.__version__}, dtype {args.dtype}; microseconds per call"
    print(f"{provenance()}\n\n{setting}" if args.markdown else
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, {setting}")
    table = Table(["case", "B", "chi", "einsum", "oe_expr", "contract", "best"], args.markdown,
                  width=[16, 3, 4, 10, 10, 10, 8])
    for name, (eq, shapes_of) in CASES.items():
        for B in args.batches:
            for chi in args.chis:
                shapes = shapes_of(B, chi)
                ops = [torch.randn(*s, dtype=dtype) for s in shapes]
                expr = opt_einsum.contract_expression(eq, *shapes)
                times = {
                    "einsum": per_call_us(lambda: torch.einsum(eq, *ops), args.min_time),
                    "oe_expr": per_call_us(lambda: expr(*ops, backend="torch"), args.min_time),
                    "contract": per_call_us(lambda: contract(eq, *ops), args.min_time),
                }
                best = min(times, key=times.get)
                table.row(name, B, chi, *(f"{t:.1f}" for t in times.values()), best)


if __name__ == "__main__":
    main()
