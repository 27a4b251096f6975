"""Where a B=1 token of ``qlam bench anchors``' QLAM circuit spends its time.

The circuit of ``bench.anchors.run_qlam`` (RY layer, two CZ brickwork layers, RX layer; complex128,
from |0...0>, as the bench runs it) on an MPS at chi=16 (by default for n=16, 32 and 64):

1. the split of one run's time (median of ``--repeats`` runs of 12 tokens): inside the compiled
   calls (``mps_jit.TIMED``: a whole token per call, as ``memory.token_layers`` runs it, or one
   layer where a layer runs alone), the standalone time of the decompositions those calls
   performed (``mps_jit.RECORD``, re-run by ``bench.anchors``' compiled loop), and everything
   outside the compiled calls (the Python around them: building gates, checks, packing);
2. with ``--top K``: a cProfile of 60 tokens, the K functions with the most time of their own
   (the profile also covers the run's final ⟨Z_q⟩ readout, which the bench does not time).

Run it alone.

    qlam bench profile [--n 16 32 64] [--chi 16] [--repeats 5] [--top 18] [--markdown]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics

from qlam_tn import mps_host, mps_jit
from qlam_tn.experiments.bench import anchors as ba
from qlam_tn.experiments.bench.table import Table, provenance


def split_of_a_run(n: int, chi: int, repeats: int, tokens: int = 12) -> dict:
    """Median seconds per token of a run, of its compiled layer calls (brickwork and one-qubit), and
    of their decompositions re-run standalone, and how many splits and QRs one run performs; the
    compiled calls report their time through ``mps_jit.TIMED`` for the duration."""
    angles = ba.token_angles(n, tokens)
    ba.run_qlam(n, chi, angles[:1])  # warm-up: compiled kernels loaded, caches
    record = ba.recorded(lambda: ba.run_qlam(n, chi, angles))
    splits, qrs = ba.compiled_jobs(record)
    # Each round: a run, then its decompositions standalone right after it (the VM's speed drifts).
    runs, kernels, standalones = [], [], []
    try:
        for _ in range(repeats):
            mps_jit.TIMED = timed = []
            runs.append(ba.run_qlam(n, chi, angles)[0])
            kernels.append(sum(timed))
            mps_jit.TIMED = None
            with mps_host.one_blas_thread():
                standalones.append(splits() + qrs())
    finally:
        mps_jit.TIMED = None
    standalone = statistics.median(standalones)
    run, kernel = statistics.median(runs), statistics.median(kernels)
    return {"token": run / tokens, "kernel": kernel / tokens, "decompositions": standalone / tokens,
            "outside": (run - kernel) / tokens, "splits": sum(r[0] == 0 for r in record),
            "qrs": sum(r[0] == 1 for r in record)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="qlam bench profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--chi", type=int, nargs="+", default=[16])
    ap.add_argument("--repeats", type=int, default=5, help="timings per figure (medians)")
    ap.add_argument("--top", type=int, default=0, help="also profile 60 tokens and list this many functions")
    ap.add_argument("--markdown", action="store_true",
                    help="print the table as GitHub markdown (and the profile in a code block)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    if not mps_jit.available():
        ap.error("the compiled layers are off here (numba missing, QLAM_TN_JIT=0 or NUMBA_DISABLE_JIT)")
    if args.markdown:
        print(provenance())
    table = Table(["n", "χ", "ms / token", "in compiled layers", "their decompositions standalone",
                   "layers ÷ decompositions", "outside the layers", "token ÷ decompositions"], args.markdown)
    for n in args.n:
        for chi in args.chi:
            s = split_of_a_run(n, chi, args.repeats)
            table.row(n, chi, f"{s['token'] * 1e3:.2f}", f"{s['kernel'] * 1e3:.2f}", f"{s['decompositions'] * 1e3:.2f}",
                      f"{s['kernel'] / s['decompositions']:.2f}", f"{s['outside'] * 1e3:.2f}",
                      f"{s['token'] / s['decompositions']:.2f}")
    if not args.top:
        return 0
    for n in args.n:
        for chi in args.chi:
            angles = ba.token_angles(n, 60)
            profile = cProfile.Profile()
            profile.enable()
            ba.run_qlam(n, chi, angles)
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
            print(f"\nn={n} chi={chi}, 60 tokens under cProfile:")
            fence = "```" if args.markdown else ""
            print("\n".join(filter(None, [fence, out.getvalue().strip(), fence])), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
