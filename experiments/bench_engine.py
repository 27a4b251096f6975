"""Moved to ``qlam_tn.experiments.bench.engine`` (run as ``qlam bench engine``).

This name stays only while ``experiments/scale.py`` and ``tests/test_scale.py`` import from it;
delete it once they import ``qlam_tn.experiments.bench.engine``.
"""
from qlam_tn.experiments.bench.engine import lapack_times, random_unitaries, saturated_state  # noqa: F401

if __name__ == "__main__":
    import sys

    print("renamed: use `qlam bench engine` (module qlam_tn.experiments.bench.engine)", file=sys.stderr)
    raise SystemExit(2)
