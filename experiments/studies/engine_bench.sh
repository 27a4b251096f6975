#!/usr/bin/env bash
# Every speed table in the README's "Measured" section, in one run. Run it ALONE on the machine
# (another CPU job skews every figure); it takes ~15 minutes on 2 cores.
#
#   bash experiments/studies/engine_bench.sh [OUT]
#
# Writes OUT/*.md (default runs/engine_bench), one file per table, and prints them.
set -euo pipefail
OUT=${1:-runs/engine_bench}
mkdir -p "$OUT"
run() { local name=$1; shift; echo "== $name: $*"; "$@" | tee "$OUT/$name.md"; }
run models qlam bench-models --threads 2
run models_b64 qlam bench-models --models gru --qlam sv8 mps16x16 --B 64 --T 784 --mps-T 28 --threads 2
run anchors qlam bench-anchors --extras
run engine qlam bench-engine
# The floor under the MPS training target (issue: n=16, χ=16, B=64, ≥ 10k tokens/s): the 15 two-site
# splits of one token alone, as LAPACK SVDs of (64, 32, 32) float64 (what autograd runs), forward only.
run svd_floor python - <<'PY'
import time, torch
torch.set_num_threads(2)
a = torch.randn(64, 32, 32, dtype=torch.float64)
torch.linalg.svd(a)
best = min((lambda t0: ([torch.linalg.svd(a) for _ in range(15)], time.perf_counter() - t0)[1])(time.perf_counter())
           for _ in range(5))
print(f"15 SVDs of (64, 32, 32) float64: {1e3 * best:.1f} ms per token of B=64 "
      f"-> at most {64 / best:,.0f} tokens/s before anything else (forward only)")
PY
