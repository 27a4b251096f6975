#!/usr/bin/env bash
# Is splitting a batched decomposition over threads (qlam_tn.parallel.batch_map) worth it, and
# from what size? Times eigh (of a Gram matrix), thin SVD and QR of (B, 2χ, 2χ) complex128 and
# float32 batches as one call and through batch_map (forced, min_work=0), side by side, median of
# REPEATS; prints ms and one-call ÷ split, with the work B·m·n·min(m, n) that MIN_WORK compares.
# Run it ALONE (the point is what idle cores give).
#
#   bash experiments/studies/batch_threads_check.sh [THREADS] [REPEATS]
set -euo pipefail
python - "${1:-2}" "${2:-15}" <<'PY'
import statistics, sys, time
import torch
from qlam_tn import parallel

threads, repeats = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
ops = {
    "eigh": lambda g: torch.linalg.eigh(g)[1],
    "svd": lambda a: torch.linalg.svd(a, full_matrices=False),
    "qr": torch.linalg.qr,
}


def median_ms(fn):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


print(f"torch {torch.__version__}, {threads} threads, median of {repeats}; MIN_WORK = {parallel.MIN_WORK:,}")
print("| op | dtype | B | 2χ | work | one call (ms) | split (ms) | one ÷ split |")
print("|---|---|--:|--:|--:|--:|--:|--:|")
for dtype in (torch.complex128, torch.float32):
    for b in (4, 32, 64):
        for k in (16, 32, 64, 128):
            a = torch.randn(b, k, k, dtype=dtype)
            inputs = {"eigh": a @ a.mH, "svd": a, "qr": a[..., : k // 2]}
            for name, fn in ops.items():
                x = inputs[name]
                work = b * x.shape[-2] * x.shape[-1] * min(x.shape[-2:])
                one = median_ms(lambda: fn(x))
                split = median_ms(lambda: parallel.batch_map(fn, x, min_work=0))
                print(f"| {name} | {str(dtype).replace('torch.', '')} | {b} | {k} | {work:,} | {one:.3f} | {split:.3f} "
                      f"| {one / split:.2f} |", flush=True)
PY
