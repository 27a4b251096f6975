#!/usr/bin/env bash
# The engine at two revisions, side by side in one run: the anchors' QLAM token circuit (RY layer,
# two CZ brickwork layers, RX layer; complex128, cutoff 1e-12) on an n=32 MPS at chi 16/32/64 and
# B 1/32, each revision in its own process, alternating, REPEATS times. Prints ms per token
# (median over repeats of the mean over the timed tokens) and OLD / NEW. Run it ALONE.
#
#   bash experiments/studies/engine_ab.sh OLD_REV [NEW_REV] [REPEATS]
#
# NEW_REV defaults to the working tree. OLD_REV is checked out in a temporary git worktree.
set -euo pipefail
OLD=${1:?usage: engine_ab.sh OLD_REV [NEW_REV] [REPEATS]}
NEW=${2:-}
REPEATS=${3:-3}
TMP=$(mktemp -d)
trap 'git worktree remove --force "$TMP/old" >/dev/null 2>&1 || true; \
      [ -n "$NEW" ] && git worktree remove --force "$TMP/new" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
git worktree add -q --detach "$TMP/old" "$OLD"
if [ -n "$NEW" ]; then git worktree add -q --detach "$TMP/new" "$NEW"; NEWDIR=$TMP/new; else NEWDIR=$(pwd); fi
cat > "$TMP/ab_token_time.py" <<'PY'
import json, sys, time
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
import qlam_tn as qt
assert qt.__file__.startswith(sys.argv[1]), qt.__file__
torch.set_num_threads(2)
n, warm, timed = 32, 3, 3
pairs = list(range(0, n - 1, 2)) + list(range(1, n - 1, 2))[::-1]
out = {}
for batch in (1, 32):
    for chi in (16, 32, 64):
        angles = np.random.default_rng(0).uniform(0, 2 * np.pi, size=(warm + timed, 2, n))
        psi = qt.MPS.zeros(n, batch=batch, max_bond=chi, cutoff=1e-12, dtype=torch.complex128)
        cz = qt.gates.CZ(dtype=torch.complex128)
        for t, (ry, rx) in enumerate(angles):
            if t == warm:  # bonds saturated: time from here
                t0 = time.perf_counter()
            psi.apply_layer(qt.gates.RY(torch.as_tensor(ry)).to(torch.complex128))
            for q in pairs:
                psi.apply(cz, (q, q + 1))
            psi.apply_layer(qt.gates.RX(torch.as_tensor(rx)))
        ms = 1e3 * (time.perf_counter() - t0) / timed
        out[f"B={batch} chi={chi}"] = (ms, float(psi.expect("Z0")[0]), float(psi.discarded_weight[0]))
print(json.dumps(out))
PY
for rep in $(seq "$REPEATS"); do
  for side in old new; do
    dir=$TMP/old; [ "$side" = new ] && dir=$NEWDIR
    python "$TMP/ab_token_time.py" "$dir" > "$TMP/$side.$rep.json"
  done
done
python - "$TMP" "$REPEATS" "$OLD" "${NEW:-working tree}" <<'PY'
import json, statistics, sys
tmp, reps, old_rev, new_rev = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = {s: [json.load(open(f"{tmp}/{s}.{r}.json")) for r in range(1, reps + 1)] for s in ("old", "new")}
print(f"n=32, complex128, ms per token (median of {reps} alternating runs); old = {old_rev}, new = {new_rev}")
print("| case | old | new | old ÷ new | <Z0>, discarded: same? |")
print("|---|---|---|---|---|")
for case in runs["old"][0]:
    o = statistics.median(r[case][0] for r in runs["old"])
    n = statistics.median(r[case][0] for r in runs["new"])
    a, b = runs["old"][0][case], runs["new"][0][case]
    same = abs(a[1] - b[1]) < 1e-9 and abs(a[2] - b[2]) <= 1e-9 * max(1.0, abs(a[2]))
    print(f"| {case} | {o:.1f} | {n:.1f} | {o / n:.2f} | {'yes' if same else f'no: {a[1:]} vs {b[1:]}'} |")
PY
