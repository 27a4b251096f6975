"""The engine at two revisions, side by side in one run.

The anchors' QLAM token circuit (RY layer, two CZ brickwork layers, RX layer; complex128, cutoff
1e-12) on an n=32 MPS at χ 16/32/64 and B 1/32, and a QLAM training step on the MPS backend
(n=16, χ=16, B=64, T=28: forward + backward, float32), each revision in its own process,
alternating, ``--repeats`` times. Prints ms per token (median over the repeats), old ÷ new, and
whether the results agree. Only ``qlam_tn/`` (the engine) comes from each revision; ``models/``,
``contraction/`` and ``experiments/`` resolve to the installed tree. Run it ALONE.

    python experiments/studies/engine_ab.py OLD_REV [--new NEW_REV] [--repeats 3] [--markdown]

``--new`` defaults to the working tree. Each revision is checked out in a temporary git worktree.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def measure(root: str) -> dict:
    """``{case: (ms per token, value, value, tolerance)}`` with the engine of ``root/qlam_tn``
    (run in a child process: the engine is imported from ``root`` first)."""
    sys.path.insert(0, root)
    import torch

    import qlam_tn as qt

    assert qt.__file__.startswith(root), qt.__file__
    torch.set_num_threads(2)
    # the anchors benchmark's circuit pieces (experiments/ is the installed tree's)
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
    # the MPS training setting: the SVD splits under autograd
    from qlam_tn.models.qlam import QLAMClassifier

    torch.manual_seed(0)
    model = QLAMClassifier(28, 10, backend="mps", n_qubits=16, bond_dim=16, head_hidden=88)
    x, y = torch.rand(64, 28, 28), torch.randint(0, 10, (64,))
    steps = []
    for _ in range(3):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        steps.append(time.perf_counter() - t0)
    grad = sum(float(p.grad.abs().sum()) for p in model.parameters())
    out["train step, mps n=16 chi=16 B=64 T=28"] = (1e3 * min(steps[1:]) / 28, float(loss.detach()), grad, 1e-4)
    return out


def _worktree(rev: str, path: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(path), rev], check=True)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", metavar="OLD_REV", nargs="?", help="the revision to compare against")
    ap.add_argument("--new", metavar="NEW_REV", help="the other revision (default: the working tree)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    ap.add_argument("--child", metavar="ROOT", help=argparse.SUPPRESS)  # one measurement, as JSON
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child)))
        return 0
    if args.old is None or args.repeats < 1:
        ap.error("give OLD_REV, and --repeats >= 1")
    runs = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = []
        try:
            trees.append(_worktree(args.old, Path(tmp) / "old"))
            new = REPO
            if args.new:
                trees.append(_worktree(args.new, Path(tmp) / "new"))
                new = trees[-1]
            for _ in range(args.repeats):
                for side, root in (("old", trees[0]), ("new", new)):
                    child = subprocess.run([sys.executable, __file__, "--child", str(root)], check=True,
                                           capture_output=True, text=True)
                    runs[side].append(json.loads(child.stdout.splitlines()[-1]))
        finally:
            for tree in trees:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)

    from qlam_tn.experiments.bench.table import Table

    print(f"ms per token (a whole batch's token; median of {args.repeats} alternating runs); circuits: n=32, "
          f"complex128; old = {args.old}, new = {args.new or 'working tree'}")
    table = Table(["case", "old", "new", "old ÷ new", "results agree? (<Z0>, discarded; loss, Σ abs(grad))"],
                  args.markdown, width=[38, 6, 6, 0, 0])
    for case in runs["old"][0]:
        o = statistics.median(r[case][0] for r in runs["old"])
        n = statistics.median(r[case][0] for r in runs["new"])
        a, b = runs["old"][0][case], runs["new"][0][case]
        tol = a[3]
        same = abs(a[1] - b[1]) <= tol * max(1.0, abs(a[1])) and abs(a[2] - b[2]) <= tol * max(1.0, abs(a[2]))
        table.row(case, f"{o:.1f}", f"{n:.1f}", f"{o / n:.2f}", "yes" if same else f"no: {a[1:3]} vs {b[1:3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
