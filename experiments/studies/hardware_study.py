"""The readout-protocol study of docs/results/hardware.md: trained QLAMs scored under shots,
windows, collapse, weak measurement and gate noise (``qlam eval --protocol ...``, in one process).

    python experiments/studies/hardware_study.py --runs runs/hardware --out runs/hardware/eval
    python experiments/studies/hardware_study.py --runs runs/hardware --out runs/hardware/eval --report

Expects the run folders ``qlam-row-s0``, ``-s1``, ``-s2`` (row-level mnist10k, the
``configs/hardware_row.toml`` recipe) and ``qlam-mqar-s0`` under ``--runs``. Each evaluation is
written to ``OUT/<name>.json`` (``evaluate.score``'s result) and skipped when that file exists,
so an interrupted study resumes. ``--report`` prints the markdown tables of the page and draws
``docs/results/img/hardware_accuracy.png`` from those files.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from qlam_tn.experiments import runfolder as rf
from qlam_tn.experiments.evaluate import protocol_settings, score

SHOTS = (1, 4, 16, 64, 256, 1024)
NOISE = (1e-4, 1e-3, 1e-2, 1e-1)


def grid():
    """``(name, run, protocol settings, repeats, limit)`` of every evaluation."""
    out = []
    for s in (0, 1, 2):
        run = f"qlam-row-s{s}"
        for shots in SHOTS:
            out.append((f"row-s{s}-restart-{shots}", run, protocol_settings("restart", shots), 3, None))
        for tau in (1, 2, 4, 7, 14):
            out.append((f"row-s{s}-window-{tau}", run, protocol_settings("window", None, tau), 1, None))
        out.append((f"row-s{s}-collapse-40", run, protocol_settings("collapse", 40), 1, 200))
    run = "qlam-row-s0"
    for shots in (10, 160):
        out.append((f"row-s0-collapse-{shots}", run, protocol_settings("collapse", shots), 1, 200))
    for g in (0.2, 0.5):
        out.append((f"row-s0-weak{g}-160", run, protocol_settings("weak", 160, weak_strength=g), 1, 200))
    for p in NOISE:
        out.append((f"row-s0-noise-{p:g}", run, protocol_settings("restart", None, noise=p), 1, 200))
    run = "qlam-mqar-s0"
    for shots in (1, 16, 256):
        out.append((f"mqar-s0-restart-{shots}", run, protocol_settings("restart", shots), 3, None))
    for tau in (2, 4, 8):
        out.append((f"mqar-s0-window-{tau}", run, protocol_settings("window", None, tau), 1, None))
    for shots in (6, 60):
        out.append((f"mqar-s0-collapse-{shots}", run, protocol_settings("collapse", shots), 1, 100))
    for p in (1e-3, 1e-2):
        out.append((f"mqar-s0-noise-{p:g}", run, protocol_settings("restart", None, noise=p), 1, 100))
    return out


def run_grid(runs: Path, out: Path, data_dir: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, run, settings, repeats, limit in grid():
        path = out / f"{name}.json"
        if path.exists():
            continue
        result = score(runs / run, data_dir=data_dir, split="test", device="cpu", protocol=settings,
                       repeats=repeats, seed=0, limit=limit)
        rf.atomic_write_json(path, result)
        print(f"{name}: {result['accuracy']:.4f} ± {result['accuracy_std']:.4f} (exact "
              f"{result['exact_accuracy']:.4f}, {sum(result['seconds_per_repeat']):.1f} s)", flush=True)


def _load(out: Path, name: str):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _pct(values) -> str:
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def report(out: Path, img: Path) -> None:
    """The page's tables (markdown on stdout) and its plot."""
    seeds = (0, 1, 2)
    print("| shots S per read and setting | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std over trained seeds |")
    print("|---|" + "--:|" * (len(seeds) + 1))
    curve = {}
    for shots in SHOTS + ("inf",):
        per_seed = []
        cells = []
        for s in seeds:
            r = _load(out, f"row-s{s}-restart-{1 if shots == 'inf' else shots}")
            if r is None:
                cells.append("-")
                continue
            accs = [r["exact_accuracy"]] if shots == "inf" else r["accuracies"]
            per_seed.append(statistics.mean(accs))
            cells.append(_pct(accs))
        curve[shots] = per_seed
        print(f"| {shots} | " + " | ".join(cells) + f" | {_pct(per_seed) if per_seed else '-'} |")
    print()
    print("| window τ (tokens per read, S = ∞) | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |")
    print("|---|" + "--:|" * (len(seeds) + 1))
    for tau in (1, 2, 4, 7, 14, 28):
        accs = []
        for s in seeds:
            r = _load(out, f"row-s{s}-window-{tau}") if tau < 28 else _load(out, f"row-s{s}-restart-1")
            if r is not None:
                accs.append(r["accuracy"] if tau < 28 else r["exact_accuracy"])
        print(f"| {tau}{' (= exact)' if tau == 28 else ''} | " + " | ".join(f"{100 * a:.2f}" for a in accs)
              + f" | {_pct(accs) if len(accs) > 1 else '-'} |")
    print()
    print("| evaluation (trained seed 0 unless said; first N test images) | N | accuracy (%) | exact on the same N (%) | seconds here |")
    print("|---|--:|--:|--:|--:|")
    names = ([f"row-s{s}-collapse-40" for s in seeds] + ["row-s0-collapse-10", "row-s0-collapse-160",
             "row-s0-weak0.2-160", "row-s0-weak0.5-160"] + [f"row-s0-noise-{p:g}" for p in NOISE]
             + [f"mqar-s0-{x}" for x in ("restart-1", "restart-16", "restart-256", "window-2", "window-4",
                                         "window-8", "collapse-6", "collapse-60", "noise-0.001", "noise-0.01")])
    for name in names:
        r = _load(out, name)
        if r is None:
            continue
        print(f"| {name} | {r['n']} | {_pct(r['accuracies'])} | {100 * r['exact_accuracy']:.2f} | "
              f"{sum(r['seconds_per_repeat']):.1f} |")
    _plot(out, curve, img)


def _plot(out: Path, curve: dict, img: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [s for s in SHOTS if curve.get(s)]
    ys = [100 * statistics.mean(curve[s]) for s in xs]
    es = [100 * statistics.stdev(curve[s]) if len(curve[s]) > 1 else 0 for s in xs]
    a.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label="restart: S shots per read and setting")
    if curve.get("inf"):
        exact = 100 * statistics.mean(curve["inf"])
        a.axhline(exact, color="k", ls="--", lw=1, label=f"exact expectations ({exact:.1f}%)")
    coll = [(40, _load(out, f"row-s{s}-collapse-40")) for s in (0, 1, 2)]
    coll = [r["accuracy"] for _, r in coll if r is not None]
    if coll:
        a.scatter([40], [100 * statistics.mean(coll)], marker="x", color="C3", zorder=3,
                  label="collapse: 40 copies (4 per setting)")
    a.set_xscale("log")
    a.set_xlabel("shots S")
    a.set_ylabel("test accuracy (%)")
    a.set_title("row-level mnist10k QLAM (T=28, 10 settings)")
    a.legend(fontsize=8)
    ps, accs = [], []
    for p in NOISE:
        r = _load(out, f"row-s0-noise-{p:g}")
        if r is not None:
            ps.append(p)
            accs.append(100 * r["accuracy"])
    b.plot(ps, accs, marker="o", label="depolarising p after every gate (16 trajectories)")
    r0 = _load(out, "row-s0-noise-0.0001")
    if r0 is not None:
        b.axhline(100 * r0["exact_accuracy"], color="k", ls="--", lw=1, label="noiseless, same 200 images")
    b.set_xscale("log")
    b.set_xlabel("error rate p per gate")
    b.set_ylabel("test accuracy (%)")
    b.set_title("gate noise (trained seed 0, 200 test images)")
    b.legend(fontsize=8)
    fig.text(0.01, 0.01, "2-core AMD EPYC dev VM, torch 2.13 CPU; experiments/studies/hardware_study.py --report",
             fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    img.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(img, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/hardware", help="folder holding the trained run folders")
    ap.add_argument("--out", default="runs/hardware/eval", help="folder of the evaluation JSON files")
    ap.add_argument("--data-dir", help="dataset folder (default: the runs' own)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="print the tables and draw the plot instead")
    ap.add_argument("--img", default="docs/results/img/hardware_accuracy.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.report:
        report(Path(args.out), Path(args.img))
    else:
        run_grid(Path(args.runs), Path(args.out), args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
