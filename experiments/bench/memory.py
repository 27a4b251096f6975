"""Peak resident memory of one QLAM training step, with and without gradient checkpointing.

Each setting runs in a fresh process (``ru_maxrss`` is a high-water mark), on random data:
one forward + backward of ``QLAMClassifier`` on ``(B, T, 1)`` pixel tokens.

    qlam bench memory                        # n=8, chi=16, B=32, T=784
    qlam bench memory --checkpoint 0 32      # 0 = no checkpointing
"""
from __future__ import annotations

import argparse
import multiprocessing
import time

import torch

from qlam_tn.experiments.bench.table import Table, provenance
from qlam_tn.experiments.timing import peak_rss_mb


def _step(n, chi, batch, t_len, checkpoint, backend, seed=0):
    from qlam_tn.models import QLAMClassifier

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    before = peak_rss_mb()
    model = QLAMClassifier(1, 10, n_qubits=n, bond_dim=chi, backend=backend,
                           checkpoint_every=checkpoint or None)
    x = torch.rand(batch, t_len, 1)
    y = torch.randint(0, 10, (batch,))
    t0 = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    dt = time.perf_counter() - t0
    peak = peak_rss_mb()
    return {"checkpoint_every": checkpoint, "peak_rss_mb": peak, "baseline_rss_mb": before, "seconds": dt,
            "fast_path": model.qlam.uses_fast_path}


def main(argv=None):
    p = argparse.ArgumentParser(prog="qlam bench memory", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--chi", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--T", type=int, default=784)
    p.add_argument("--backend", default="mps", choices=["mps", "statevector"])
    p.add_argument("--checkpoint", type=int, nargs="+", default=[0, 28])
    p.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    args = p.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    if args.markdown:
        print(provenance() + "\n")
    print(f"QLAM {args.backend} n={args.n} chi={args.chi} B={args.batch} T={args.T}, one forward+backward, 1 thread")
    table = Table(["checkpoint_every", "peak RSS (MB)", "of which before the model (MB)", "time (s)"], args.markdown)
    for ck in args.checkpoint:
        with ctx.Pool(1) as pool:
            r = pool.apply(_step, (args.n, args.chi, args.batch, args.T, ck, args.backend))
        table.row(ck or "off", f"{r['peak_rss_mb']:.0f}", f"{r['baseline_rss_mb']:.0f}", f"{r['seconds']:.1f}")


if __name__ == "__main__":
    main()
