"""Every speed table of docs/benchmarks.md in one run, as markdown (each under its provenance line).

Run it ALONE on the machine (another CPU job skews every figure); it takes ~20 minutes on 2 cores.

    python experiments/studies/engine_bench.py [OUT]

Writes ``OUT/<table>.md`` (default ``runs/engine_bench``), one file per table, and prints them.
"""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

# table -> qlam command line
TABLES = {
    "models": "bench models --threads 2 --markdown",
    "models_b64": "bench models --models gru --qlam sv8 mps16x16 --B 64 --T 784 --mps-T 28 --threads 2 --markdown",
    "anchors": "bench anchors --extras --markdown",
    "engine": "bench engine --markdown",
    # the split's decompositions alone, float64 vs complex128: the ceiling on a real circuit's speed-up
    "lapack": "bench engine --lapack --chi 8 16 32 64 --repeats 15 --markdown",
}


def svd_floor(n: int = 16, chi: int = 16, batch: int = 64) -> str:
    """The floor under the MPS training target (n=16, χ=16, B=64, ≥ 10k tokens/s): once the bonds
    saturate, the splits between two full bonds are ``(B, 2χ, 2χ)`` matrices; their forward SVDs
    alone (what autograd runs; float32, the training dtype) bound the rate."""
    import torch

    from qlam_tn.experiments.timing import best_time

    torch.set_num_threads(2)
    bonds = [1] + [min(2 ** min(k, n - k), chi) for k in range(1, n)] + [1]
    full = sum(1 for i in range(n - 1) if bonds[i] == chi and bonds[i + 2] == chi)
    a = torch.randn(batch, 2 * chi, 2 * chi)
    one = best_time(lambda: torch.linalg.svd(a), 10)
    return (f"one SVD of ({batch}, {2 * chi}, {2 * chi}) float32: {1e3 * one:.2f} ms; {full} such splits per token "
            f"-> {1e3 * full * one:.1f} ms per token of B={batch} -> at most {batch / (full * one):,.0f} tokens/s "
            f"from these SVDs alone (forward only; target 10,000)")


def main(argv=None) -> int:
    from qlam_tn.experiments import cli

    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "runs/engine_bench")
    out.mkdir(parents=True, exist_ok=True)
    for name, command in TABLES.items():
        print(f"== {name}: qlam {command}", flush=True)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cli.main(command.split())
        (out / f"{name}.md").write_text(buf.getvalue())
        print(buf.getvalue(), flush=True)
    text = svd_floor()
    (out / "svd_floor.md").write_text(text + "\n")
    print(f"== svd_floor\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
