"""Where a B=1 token of ``qlam bench-anchors``' QLAM circuit spends its time, by cProfile.

The circuit of ``bench_anchors.run_qlam`` (RY layer, two CZ brickwork layers, RX layer; complex128,
from |0...0>, as the bench runs it) on an MPS at chi=16 for n=32 and n=64, 60 tokens: the
unprofiled time per token, then the functions with the most time of their own. The profile also
covers the run's final ⟨Z_q⟩ readout (its ``torch.einsum`` calls), which the bench does not time.
Run it alone.

    python experiments/studies/profile_token.py [--top 18]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats

from qlam_tn.experiments import bench_anchors as ba


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--top", type=int, default=18, help="functions listed per configuration")
    args = ap.parse_args(argv)
    ba.run_qlam(32, 16, ba.token_angles(32, 20))  # warm-up: imports, caches
    for n, chi in [(32, 16), (64, 16)]:
        angles = ba.token_angles(n, 60)
        seconds = ba.run_qlam(n, chi, angles)[0]
        profile = cProfile.Profile()
        profile.enable()
        ba.run_qlam(n, chi, angles)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
        print(f"n={n} chi={chi}: {seconds / len(angles) * 1e3:.2f} ms/token unprofiled")
        print(out.getvalue().strip(), "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
