#!/usr/bin/env bash
# The engine at two revisions, side by side in one run: the anchors' QLAM token circuit (RY layer,
# two CZ brickwork layers, RX layer; complex128, cutoff 1e-12) on an n=32 MPS at chi 16/32/64 and
# B 1/32, and a QLAM training step on the MPS backend, each revision in its own process,
# alternating, REPEATS times. Prints ms per token (median over repeats) and OLD / NEW, and whether
# the results agree. Only qlam_tn/ (the engine) comes from each revision; models/ and contraction/
# resolve to the installed tree. Run it ALONE.
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
import torch
sys.path.insert(0, sys.argv[1])
import qlam_tn as qt
assert qt.__file__.startswith(sys.argv[1]), qt.__file__
torch.set_num_threads(2)
# The anchors benchmark's circuit pieces (experiments/ is the installed tree's: only qlam_tn/ differs).
from qlam_tn.experiments.bench.anchors import cz_pairs, token_angles
n, warm, timed = 32, 3, 3
pairs = cz_pairs(n)
out = {}
for batch in (1, 32):
    for chi in (16, 32, 64):
        angles = token_angles(n, warm + timed)
        psi = qt.MPS.zeros(n, batch=batch, max_bond=chi, cutoff=1e-12, dtype=torch.complex128)
        cz = qt.gates.CZ(dtype=torch.complex128)
        for t, (ry, rx) in enumerate(angles):
            if t == warm:  # bonds saturated: time from here
                t0 = time.perf_counter()
            psi.apply_layer(qt.gates.RY(torch.as_tensor(ry)).to(torch.complex128))
            for pair in pairs:
                psi.apply(cz, pair)
            psi.apply_layer(qt.gates.RX(torch.as_tensor(rx)))
        ms = 1e3 * (time.perf_counter() - t0) / timed
        out[f"B={batch} chi={chi}"] = (ms, float(psi.expect("Z0")[0]), float(psi.discarded_weight[0]), 1e-9)
# A QLAM training step on the MPS backend (n=16, chi=16, B=64, T=28 rows of 28 pixels; the issue's
# MPS training setting): forward + backward, float32, the SVD splits under autograd.
from qlam_tn.models.qlam import QLAMClassifier  # models/ is the installed tree's: only qlam_tn/ differs
torch.manual_seed(0)
model = QLAMClassifier(28, 10, backend="mps", n_qubits=16, bond_dim=16, head_hidden=88)
x, y = torch.rand(64, 28, 28), torch.randint(0, 10, (64,))
steps = []
for s in range(3):
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    steps.append(time.perf_counter() - t0)
grad = sum(float(p.grad.abs().sum()) for p in model.parameters())
out["train step, mps n=16 chi=16 B=64 T=28"] = (1e3 * min(steps[1:]) / 28, float(loss.detach()), grad, 1e-4)  # float32
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
print(f"ms per token (a whole batch's token; median of {reps} alternating runs); circuits: n=32, complex128; "
      f"old = {old_rev}, new = {new_rev}")
print("| case | old | new | old ÷ new | results agree? (<Z0>, discarded; loss, Σ abs(grad)) |")
print("|---|---|---|---|---|")
for case in runs["old"][0]:
    o = statistics.median(r[case][0] for r in runs["old"])
    n = statistics.median(r[case][0] for r in runs["new"])
    a, b = runs["old"][0][case], runs["new"][0][case]
    tol = a[3]
    same = abs(a[1] - b[1]) <= tol * max(1.0, abs(a[1])) and abs(a[2] - b[2]) <= tol * max(1.0, abs(a[2]))
    print(f"| {case} | {o:.1f} | {n:.1f} | {o / n:.2f} | {'yes' if same else f'no: {a[1:3]} vs {b[1:3]}'} |")
PY
