"""Issue-3 figures: exact-oracle time versus qubit count, and achieved GFLOP/s of a token update.

1. The cotengra oracle (``qlam_tn.contraction.oracle``) on a fixed shallow circuit: per qubit an
   RY, then ``layers`` brickwork layers of CZ followed by RX; time of one amplitude and of a
   two-qubit local expectation (light-cone simplified), for n in --n.
2. One QLAM token update on the MPS (RY on every qubit, ``depth`` brickwork layers of random
   two-qubit unitaries) at n=32 and chi in --chi, timed on a state already at bond chi; FLOPs
   from ``token_update_cost``; achieved GFLOP/s against the machine's measured matmul peak.

    qlam bench oracle [--markdown]
"""
from __future__ import annotations

import argparse

import torch

from qlam_tn import gates as G
from qlam_tn.contraction import measure_matmul_peak, token_update_cost
from qlam_tn.contraction import oracle
from qlam_tn.experiments.bench.engine import random_unitaries, saturated_state
from qlam_tn.experiments.bench.table import Table, provenance
from qlam_tn.experiments.timing import median_time


def shallow_circuit(n: int, layers: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ops = [(G.RY(float(torch.rand((), generator=g, dtype=torch.float64)) * 3), q) for q in range(n)]
    for layer in range(layers):
        for q in range(layer % 2, n - 1, 2):
            ops.append((G.CZ(), (q, q + 1)))
        ops += [(G.RX(float(torch.rand((), generator=g, dtype=torch.float64)) * 3), q) for q in range(n)]
    return ops


def time_oracle(n: int, layers: int, repeats: int = 3) -> dict:
    ops = shallow_circuit(n, layers)
    circ = oracle.ExactCircuit(n, ops)
    mid = n // 2
    # the warm-up call of each searches the contraction path for this structure
    amplitude = median_time(lambda: circ.amplitude("0" * n), repeats)
    expectation = median_time(lambda: circ.expectation(f"X{mid} Z{mid + 1}"), repeats)
    return {"n": n, "layers": layers, "amplitude_s": amplitude, "expectation_s": expectation}


def time_token_update(n: int, chi: int, batch: int, depth: int, real: bool, repeats: int = 3) -> dict:
    g = torch.Generator().manual_seed(0)
    psi = saturated_state(n, chi, batch, real, g)
    dtype = torch.float64 if real else torch.complex128

    def token():
        psi.apply_layer(G.RY(torch.rand(batch * n, generator=g, dtype=torch.float64) * 3).reshape(batch, n, 2, 2).to(dtype))
        for layer in range(depth):
            for q in range(layer % 2, n - 1, 2):
                psi.apply(random_unitaries(batch, 4, real, g), (q, q + 1))

    dt = median_time(token, repeats)
    pairs = [(q, q + 1) for layer in range(depth) for q in range(layer % 2, n - 1, 2)]
    cost = token_update_cost(n, chi, batch, depth=1, real=real, pairs=pairs)
    return {"n": n, "chi": chi, "batch": batch, "real": real, "seconds": dt, "gflop": cost.flops / 1e9,
            "gflops_per_s": cost.flops / dt / 1e9, "svd_share": cost.breakdown.get("svd", 0) / cost.flops}


def main(argv=None):
    p = argparse.ArgumentParser(prog="qlam bench oracle", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[10, 20, 30, 40, 50, 60])
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--chi", type=int, nargs="+", default=[32, 64])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--markdown", action="store_true", help="print the tables as GitHub markdown")
    args = p.parse_args(argv)
    print(provenance() if args.markdown else f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    table = Table(["n", "amplitude (s)", "<X Z> local expectation (s)"], args.markdown,
                  title=f"Exact oracle, RY + {args.layers} x (CZ brickwork + RX), cotengra greedy trees")
    for n in args.n:
        r = time_oracle(n, args.layers)
        table.row(n, f"{r['amplitude_s']:.3f}", f"{r['expectation_s']:.3f}")
    peak = measure_matmul_peak(dtypes=(torch.float64, torch.complex128), sizes=(256, 512, 1024))
    print("\nmatmul peak (GFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in peak.gflops.items()))
    table = Table(["n", "χ", "dtype", "time (ms)", "GFLOP", "GFLOP/s", "% of matmul peak", "SVD share of FLOPs"],
                  args.markdown, width=[3, 3, 10, 0, 0, 0, 0, 0], title=f"Token update (RY layer + {args.depth} brickwork layers of random "
                                       f"2-qubit unitaries), B={args.batch}")
    for chi in args.chi:
        for real in (True, False):
            r = time_token_update(32, chi, args.batch, args.depth, real)
            key = "float64" if real else "complex128"
            table.row(32, chi, key, f"{1e3 * r['seconds']:.1f}", f"{r['gflop']:.2f}", f"{r['gflops_per_s']:.2f}",
                      f"{100 * r['gflops_per_s'] / peak.gflops[key]:.1f}", f"{100 * r['svd_share']:.0f}%")


if __name__ == "__main__":
    main()
