"""Sequence-model benchmark: forward and forward+backward time per token per sample, and peak memory.

Every model is matched to one parameter budget (default: a GRU with hidden size 32 on F=28,
C=10, 6,282 parameters) with ``match_hidden_size``, then timed on a random ``(B, T, F)`` batch:

* ``fwd``: inference, ``model.eval()`` under ``torch.no_grad()``;
* ``fwdbwd``: training step without the optimiser: ``model.train()``, cross-entropy on the
  logits, ``backward()``.

Figures are the fastest of ``--repeats`` runs after one warm-up (the minimum is the least
disturbed by other work on the machine). ``tokens_per_s`` is the training (forward+backward)
throughput ``B·T / t_fwdbwd``. Each model runs in a fresh process, shortest sequence first, so
the peak resident memory recorded after each T (``ru_maxrss``, which includes the interpreter
and torch, about ``rss_before_mb``) is that T's own. Run it alone: two CPU-heavy jobs on a
machine with few cores slow each other down many-fold.

    qlam bench models                        # the docs' table (--markdown prints it as markdown)
    qlam bench models --T 28 --repeats 2     # a quick run
"""
from __future__ import annotations

import argparse
import multiprocessing

import torch
import torch.nn.functional as F_

from qlam_tn.experiments.bench.table import Table, provenance
from qlam_tn.experiments.timing import best_time, peak_rss_mb


def bench_model(model: torch.nn.Module, T: int, B: int, F: int, repeats: int = 3, seed: int = 0) -> dict:
    """Time ``model`` (``(B, T, F) -> (B, C)`` logits, with a ``num_classes`` attribute) on random data.

    Returns ``fwd_ms_per_token_sample``, ``fwdbwd_ms_per_token_sample``, ``tokens_per_s``
    (forward+backward), ``fwd_ms``/``fwdbwd_ms`` (whole batch), ``peak_rss_mb`` (this
    process's peak so far) and ``rss_before_mb`` (the peak before the model ran).
    """
    rss_before = peak_rss_mb()
    g = torch.Generator().manual_seed(seed)
    p = next(model.parameters())
    x = torch.randn(B, T, F, generator=g).to(device=p.device, dtype=p.dtype)
    y = torch.randint(0, model.num_classes, (B,), generator=g).to(p.device)

    def fwd():
        with torch.no_grad():
            model(x)

    def fwdbwd():
        model.zero_grad(set_to_none=True)
        F_.cross_entropy(model(x), y).backward()

    model.eval()
    t_fwd = best_time(fwd, repeats)
    model.train()
    t_fwdbwd = best_time(fwdbwd, repeats)
    return {"fwd_ms": 1e3 * t_fwd, "fwdbwd_ms": 1e3 * t_fwdbwd,
            "fwd_ms_per_token_sample": 1e3 * t_fwd / (B * T),
            "fwdbwd_ms_per_token_sample": 1e3 * t_fwdbwd / (B * T),
            "tokens_per_s": B * T / t_fwdbwd,
            "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before}


def _bench_named(name: str, cfg: dict, Ts: list[int], B: int, F: int, classes: int, repeats: int,
                 threads: int) -> list[dict]:
    """Build ``name`` and run ``bench_model`` for every T, shortest first (see ``peak_rss_mb``)."""
    from qlam_tn.models.common import count_parameters
    from qlam_tn.models.registry import build

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name, F, classes, **cfg)
    rows = []
    for T in sorted(Ts):
        rows.append({"model": name, "config": cfg, "params": count_parameters(model), "T": T, "B": B,
                     "threads": torch.get_num_threads(), **bench_model(model, T, B, F, repeats)})
    return rows


def main(argv=None):
    from qlam_tn.models.common import count_parameters, match_hidden_size
    from qlam_tn.models.registry import available, build, width_key

    p = argparse.ArgumentParser(prog="qlam bench models", description=__doc__.splitlines()[0])
    # QLAM is benchmarked through --qlam (its variants need a backend and a size), not --models.
    p.add_argument("--models", nargs="*", default=["lstm", "gru", "transformer", "ssm"],
                   choices=[m for m in available() if m != "qlam"], help="baselines (QLAM: see --qlam)")
    p.add_argument("--T", type=int, nargs="+", default=[28, 784])
    p.add_argument("--B", type=int, default=32)
    p.add_argument("--F", type=int, default=28)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--target", type=int, default=None,
                   help="parameter budget (default: a GRU with hidden size 32)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--qlam", nargs="*", default=["sv8", "mps8x16", "mps16x16", "mps16x32", "mps32x16", "mps32x32"],
                   help="QLAM variants: svN (statevector, N qubits) or mpsNxCHI (MPS, N qubits, bond CHI)")
    p.add_argument("--mps-T", type=int, nargs="+", default=[28],
                   help="sequence lengths for the MPS variants (T=784 takes minutes per variant)")
    p.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    target = args.target or count_parameters(build("gru", args.F, args.classes, hidden_size=32))
    ctx = multiprocessing.get_context("spawn")
    setting = (f"budget {target} parameters, B={args.B}, F={args.F}, "
               f"threads {args.threads or torch.get_num_threads()}")
    print(f"{provenance()}\n\n{setting}" if args.markdown else f"torch {torch.__version__}, {setting}")
    table = Table(["model", "width", "params", "T", "fwd (µs/token/sample)", "fwd+bwd (µs/token/sample)",
                   "fwd+bwd tokens/s", "peak RSS (MB)"], args.markdown, width=[18, 16, 6, 4, 0, 0, 0, 0])
    rows = []
    jobs = [(name, {width_key(name): match_hidden_size(name, target, args.F, args.classes)}, args.T)
            for name in args.models]
    for variant in args.qlam:
        if variant.startswith("sv"):
            base, Ts = dict(backend="statevector", n_qubits=int(variant[2:])), args.T
        else:
            n, chi = variant[3:].split("x")
            base, Ts = dict(backend="mps", n_qubits=int(n), bond_dim=int(chi)), args.mps_T
        base["head_hidden"] = match_hidden_size("qlam", target, args.F, args.classes, **base)
        jobs.append(("qlam", base, Ts))
    for name, cfg, Ts in jobs:
        with ctx.Pool(1) as pool:
            out = pool.apply(_bench_named, (name, cfg, Ts, args.B, args.F, args.classes, args.repeats, args.threads))
        label = name if name != "qlam" else (
            f"qlam sv n={cfg['n_qubits']}" if cfg["backend"] == "statevector"
            else f"qlam mps n={cfg['n_qubits']} χ={cfg['bond_dim']}")
        for r in out:
            rows.append(r)
            table.row(label, f"{width_key(name)}={cfg[width_key(name)]}", r["params"], r["T"],
                      f"{1e3 * r['fwd_ms_per_token_sample']:.2f}", f"{1e3 * r['fwdbwd_ms_per_token_sample']:.2f}",
                      f"{r['tokens_per_s']:,.0f}", f"{r['peak_rss_mb']:.0f}")
    return rows


if __name__ == "__main__":
    main()
