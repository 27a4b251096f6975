"""The readout-protocol study of docs/results/hardware.md: trained QLAMs scored under shots,
windows, collapse, weak measurement and gate noise (``qlam eval --protocol ...``, in one process).

    python experiments/studies/hardware_study.py --runs runs/hardware --out runs/hardware/eval
    python experiments/studies/hardware_study.py --runs runs/hardware --out runs/hardware/eval --report

Expects the run folders ``qlam-row-s0``, ``-s1``, ``-s2`` (row-level mnist10k, the
``configs/runs/hardware_row.toml`` recipe) and ``qlam-mqar-s0`` under ``--runs``. Each evaluation is
written to ``OUT/<name>.json`` (``evaluate.score``'s result) and skipped when that file exists,
so an interrupted study resumes. ``--report`` prints the markdown tables of the page from those files.
The page's plot is drawn from those tables once pasted, by ``python -m qlam_tn.experiments.doc_plots
--only hardware_accuracy`` (one drawing for every results page).
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


def report(out: Path) -> None:
    """The page's tables, as markdown on stdout."""
    seeds = (0, 1, 2)
    print("| shots S per read and setting | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std over trained seeds |")
    print("|---|" + "--:|" * (len(seeds) + 1))

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
    names = ([f"rowlast-s0-end-{sh}" for sh in SHOTS] + [f"row-shots4trained-s0-restart-{sh}" for sh in (1, 4, 16)]
             + [f"row-s{s}-collapse-40" for s in seeds] + ["row-s0-collapse-10", "row-s0-collapse-160",
             "row-s0-weak0.2-160", "row-s0-weak0.5-160"] + [f"row-s0-noise-{p:g}" for p in NOISE]
             + [f"mqar-s0-{x}" for x in ("restart-1", "restart-16", "restart-256", "window-2", "window-4",
                                         "window-8", "collapse-6", "collapse-60", "noise-0.001", "noise-0.01")])
    for name in names:
        r = _load(out, name)
        if r is None:
            continue
        print(f"| {name} | {r['n']} | {_pct(r['accuracies'])} | {100 * r['exact_accuracy']:.2f} | "
              f"{sum(r['seconds_per_repeat']):.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/hardware", help="folder holding the trained run folders")
    ap.add_argument("--out", default="runs/hardware/eval", help="folder of the evaluation JSON files")
    ap.add_argument("--data-dir", help="dataset folder (default: the runs' own)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="print the page's tables instead")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.report:
        report(Path(args.out))
    else:
        run_grid(Path(args.runs), Path(args.out), args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
