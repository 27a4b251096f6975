#!/usr/bin/env bash
# Every speed table of docs/benchmarks.md, in one run, as markdown (each under its provenance line).
# Run it ALONE on the machine (another CPU job skews every figure); it takes ~20 minutes on 2 cores.
#
#   bash experiments/studies/engine_bench.sh [OUT]
#
# Writes OUT/*.md (default runs/engine_bench), one file per table, and prints them.
set -euo pipefail
OUT=${1:-runs/engine_bench}
mkdir -p "$OUT"
run() { local name=$1; shift; echo "== $name: $*"; "$@" | tee "$OUT/$name.md"; }
run models qlam bench models --threads 2 --markdown
run models_b64 qlam bench models --models gru --qlam sv8 mps16x16 --B 64 --T 784 --mps-T 28 --threads 2 --markdown
run anchors qlam bench anchors --extras --markdown
run engine qlam bench engine --markdown
# The split's decompositions alone, float64 vs complex128: the ceiling on a real circuit's speed-up.
run lapack qlam bench engine --lapack --chi 8 16 32 64 --repeats 15 --markdown
# The floor under the MPS training target (issue: n=16, χ=16, B=64, ≥ 10k tokens/s): once the bonds
# saturate ([2, 4, 8, 16, ..., 16, 8, 4, 2]), 7 of a token's 15 two-site splits are (64, 32, 32)
# matrices; their forward SVDs alone (what autograd runs; float32, the training dtype) bound the rate.
run svd_floor python - <<'PY'
import time, torch
torch.set_num_threads(2)
n, chi, B = 16, 16, 64
bonds = [1] + [min(2 ** min(k, n - k), chi) for k in range(1, n)] + [1]
full = sum(1 for i in range(n - 1) if 2 * bonds[i] == 2 * chi and 2 * bonds[i + 2] == 2 * chi)
a = torch.randn(B, 2 * chi, 2 * chi)
torch.linalg.svd(a)
times = []
for _ in range(10):
    t0 = time.perf_counter()
    torch.linalg.svd(a)
    times.append(time.perf_counter() - t0)
one = min(times)
print(f"one SVD of ({B}, {2 * chi}, {2 * chi}) float32: {1e3 * one:.2f} ms; {full} such splits per token "
      f"-> {1e3 * full * one:.1f} ms per token of B={B} -> at most {B / (full * one):,.0f} tokens/s "
      f"from these SVDs alone (forward only; target 10,000)")
PY
