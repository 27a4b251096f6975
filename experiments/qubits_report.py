"""Tables of the qubit-count study (issue 23): ``qlam qubits-report RUNS_DIR [RUNS_DIR ...]``.

The study trains with ``qlam study experiments/configs/qubits_{memory,memory_fashion,trained,
classical}.toml``; this command reads the finished run folders under the given folders and
prints (and writes, with ``--out``) the tables of docs/results/qubits.md from which
``experiments/doc_plots.py`` draws the page's plots:

* accuracy against the qubit count n, one row per dataset, memory (``frozen``: memory learning
  rate 0, head fitted on cached features; ``trained``: end to end) and bond cap χ;
* the state size (real numbers the memory carries token to token, ``state_size``) of each (n, χ);
* the GRU line: accuracy per hidden size (a GRU's state is its hidden vector);
* the trained memories' truncation and entanglement: per (n, χ), the discarded weight
  (accumulated over an image's tokens) and the von Neumann entropy across the centre bond of
  the final memory, for the trained memory and for the frozen memory of the same seed (the
  same initialisation), from ``qlam eval --bond-dim`` at the run's own χ (``evaluate.score``).

Accuracy is the test accuracy where the run has a test split (mnist10k), else its best
validation accuracy (Fashion-MNIST: only its training files are at hand). Cells: mean ± std
over seeds, the number of seeds in brackets.
"""
from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from qlam_tn.experiments.evaluate import load_model, score
from qlam_tn.experiments.report import find_runs, load_run
from qlam_tn.experiments.runfolder import atomic_write_text
from qlam_tn.models.common import state_size


def pct(values) -> str:
    """``"87.31 ± 1.20 (3)"``: mean accuracy in percent, sample std, seeds; ``—`` for none."""
    if not values:
        return "—"
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.2f} ± {100 * s:.2f} ({len(values)})"


# train options that do not change what a cell measures (the seed is the cell's spread)
_NOT_SETTINGS = ("seed", "out", "name", "data_dir", "threads", "progress", "device", "nproc",
                 "resume", "stop_after", "model_cfg")


def settings(run: dict) -> dict:
    """Everything a run was trained with besides its seed, n and χ (the model's resolved options
    and the training options): runs of one table row must agree on it."""
    train, model = run["config"]["train"], run["config"]["model"]
    resolved = {k: v for k, v in model["resolved"].items() if k not in ("n_qubits", "bond_dim", "hidden_size")}
    options = {k: v for k, v in train.items() if k not in _NOT_SETTINGS}
    return {"model": model["name"], "resolved": resolved, "train": options}


def chi_label(chi) -> str:
    return "exact" if chi is None else str(chi)


def _chi_order(chi):
    return (chi is None, chi or 0)


def describe(run: dict) -> dict:
    """What the tables key a run by: dataset, model family, memory, n, χ, GRU hidden size."""
    train, model = run["config"]["train"], run["config"]["model"]
    out = {"dataset": run["dataset"], "model": run["model"], "seed": run["seed"], "run": run,
           "settings": settings(run)}
    if run["model"] == "qlam":
        if model.get("backend") != "mps":
            raise ValueError(f"{run['path']}: the qubit study reads MPS-backend QLAMs, got "
                             f"backend {model.get('backend')!r}")
        resolved = model["resolved"]
        out.update(memory="frozen" if train.get("memory_lr_scale", 1.0) == 0 else "trained",
                   n=resolved["n_qubits"], chi=resolved["bond_dim"])
    elif run["model"] == "gru":
        out.update(memory="gru", hidden=model["resolved"]["hidden_size"])
    else:
        raise ValueError(f"{run['path']}: the qubit study compares QLAM with GRU, got {run['model']!r}")
    return out


def check_one_setting(rows) -> None:
    """Refuse runs that one table row would pool although they were trained differently (another
    depth, readout, encoding scale, data subset, ...): one (dataset, model, memory) row, one setting."""
    first = {}
    for r in rows:
        key = (r["dataset"], r["model"], r["memory"])
        if key not in first:
            first[key] = r
            continue
        a, b = first[key]["settings"], r["settings"]
        if a != b:
            differ = sorted({f"{part}.{k}" for part in ("resolved", "train")
                             for k in set(a[part]) | set(b[part]) if a[part].get(k) != b[part].get(k)})
            raise ValueError(f"{first[key]['run']['path'].name} and {r['run']['path'].name} would share the "
                             f"{r['dataset']} {r['memory']} row but differ in {', '.join(differ)}; report one "
                             "setting at a time (pass the folders of one study)")


def metric_splits(rows) -> dict:
    """Per dataset: ``test`` where every run of it has a test split (mnist10k), else ``val``
    (Fashion-MNIST: only its training files are at hand), so one dataset's cells share a split."""
    out = {}
    for r in rows:
        has_test = r["run"]["test"] is not None
        out[r["dataset"]] = "test" if out.get(r["dataset"], "test") == "test" and has_test else "val"
    return out


def accuracy(r: dict, splits: dict) -> float:
    """The run's test accuracy, or its best validation accuracy, as its dataset's split says."""
    return r["run"]["test"] if splits[r["dataset"]] == "test" else r["run"]["best_val"]


def collect(folders) -> list[dict]:
    """Every finished run under ``folders``, described; unfinished ones are named and skipped."""
    rows = []
    for path in find_runs(folders):
        run = load_run(path)
        if not run["complete"]:
            print(f"  (skipped, not finished: {path.name})")
            continue
        rows.append(describe(run))
    if not rows:
        raise SystemExit(f"no finished run under {', '.join(map(str, folders))}")
    check_one_setting(rows)
    return rows


def run_state_floats(run: dict) -> int:
    """The run's recorded ``state_floats``, or (runs recorded before it was) the model's own."""
    if run["state_floats"] is not None:
        return run["state_floats"]
    model, _ = load_model(run["path"])
    return state_size(model, seq_len=run["config"]["data"]["seq_len"])


def _metric_note(rows, splits: dict) -> str:
    names = {"test": "test accuracy", "val": "best validation accuracy"}
    return ", ".join(f"{names[splits[d]]} ({d})" for d in sorted({r["dataset"] for r in rows}))


def accuracy_table(rows, splits: dict) -> str:
    qlam = [r for r in rows if r["model"] == "qlam"]
    ns = sorted({r["n"] for r in qlam})
    cells = defaultdict(list)
    for r in qlam:
        cells[(r["dataset"], r["memory"], r["chi"], r["n"])].append(accuracy(r, splits))
    keys = sorted({k[:3] for k in cells}, key=lambda k: (k[0], k[1] != "frozen", _chi_order(k[2])))
    lines = ["### Accuracy against qubits n", "",
             f"{_metric_note(qlam, splits)}, %: mean ± std over seeds, seeds in brackets.", "",
             "| dataset | memory | χ | " + " | ".join(f"n={n}" for n in ns) + " |",
             "|---|---|--:|" + "--:|" * len(ns)]
    lines += [f"| {d} | {m} | {chi_label(chi)} | " + " | ".join(pct(cells.get((d, m, chi, n), [])) for n in ns) + " |"
              for d, m, chi in keys]
    return "\n".join(lines)


def state_table(rows) -> str:
    qlam = [r for r in rows if r["model"] == "qlam"]
    ns = sorted({r["n"] for r in qlam})
    floats = {}
    for r in qlam:
        if (r["chi"], r["n"]) not in floats:  # one setting per row (check_one_setting): any run will do
            floats[(r["chi"], r["n"])] = run_state_floats(r["run"])
    chis = sorted({c for c, _ in floats}, key=_chi_order)
    lines = ["### State size", "",
             "Real numbers the memory carries token to token (`state_size`: the MPS at its largest "
             "under the bond cap χ).", "",
             "| χ | " + " | ".join(f"n={n}" for n in ns) + " |", "|--:|" + "--:|" * len(ns)]
    lines += [f"| {chi_label(chi)} | " + " | ".join(f"{floats[(chi, n)]:,}" if (chi, n) in floats else "—"
                                                   for n in ns) + " |"
              for chi in chis]
    return "\n".join(lines)


def classical_table(rows, splits: dict) -> str:
    gru = [r for r in rows if r["model"] == "gru"]
    if not gru:
        return ""
    hs = sorted({r["hidden"] for r in gru})
    cells = defaultdict(list)
    for r in gru:
        cells[(r["dataset"], r["hidden"])].append(accuracy(r, splits))
    lines = ["### The classical line: GRU at the same state size", "",
             f"GRU by hidden size h (its state: `state_size`, h floats for one layer), "
             f"{_metric_note(gru, splits)}, %.", "",
             "| dataset | " + " | ".join(f"h={h}" for h in hs) + " |", "|---|" + "--:|" * len(hs)]
    lines += [f"| {d} | " + " | ".join(pct(cells.get((d, h), [])) for h in hs) + " |"
              for d in sorted({r["dataset"] for r in gru})]
    return "\n".join(lines)


def memory_stats(run: dict, split: str, limit: int) -> tuple[float, float]:
    """``(discarded weight, centre-bond entropy in bits)`` of the run's memory at its own χ:
    means over the first ``limit`` images of ``split``."""
    out = score(run["path"] / "best.pt", split=split, bond_dim=run["config"]["model"]["resolved"]["bond_dim"],
                limit=limit, device="cpu")
    return out["discarded_weight_mean"], out["centre_entropy_mean"]


def _mean_std(values, digits: str) -> str:
    if not values:
        return "—"
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{digits}} ± {s:{digits}} ({len(values)})"


def trained_table(rows, splits: dict, limit: int) -> str:
    trained = [r for r in rows if r["model"] == "qlam" and r["memory"] == "trained"]
    if not trained:
        return ""
    frozen = {(r["dataset"], r["n"], r["chi"], r["seed"]): r for r in rows
              if r["model"] == "qlam" and r["memory"] == "frozen"}
    acc, disc, ent, ent0 = (defaultdict(list) for _ in range(4))
    for r in trained:
        key = (r["dataset"], r["n"], r["chi"])
        split = splits[r["dataset"]]
        acc[key].append(accuracy(r, splits))
        d, e = memory_stats(r["run"], split, limit)
        disc[key].append(d)
        ent[key].append(e)
        twin = frozen.get(key + (r["seed"],))
        if twin is not None:
            ent0[key].append(memory_stats(twin["run"], split, limit)[1])
    lines = ["### Trained memories: truncation and entanglement", "",
             f"Per trained run, means over the first {limit} images of its dataset's split ("
             f"{_metric_note(trained, splits)} in the accuracy column): the weight the bond cap "
             "discarded over an image's tokens, and the von Neumann entropy across the centre bond "
             "of the final memory; \"frozen\": the untrained memory of the same seed (the trained "
             "one's initialisation); \"max\": min(⌊n/2⌋, log2 χ) bits. Mean ± std over seeds.", "",
             "| dataset | n | χ | accuracy (%) | discarded weight | centre entropy, trained (bits) "
             "| centre entropy, frozen (bits) | max (bits) |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for key in sorted(acc, key=lambda k: (k[0], k[1], _chi_order(k[2]))):
        d, n, chi = key
        bound = n // 2 if chi is None else min(n // 2, math.log2(chi))  # Schmidt rank <= min(2^⌊n/2⌋, χ)
        lines.append(f"| {d} | {n} | {chi_label(chi)} | {pct(acc[key])} | {_mean_std(disc[key], '.1e')} | "
                     f"{_mean_std(ent[key], '.3f')} | {_mean_std(ent0[key], '.3f')} | {bound:.3g} |")
    return "\n".join(lines)


def report(folders, limit: int = 500) -> str:
    rows = collect(folders)
    splits = metric_splits(rows)
    parts = [accuracy_table(rows, splits), state_table(rows), classical_table(rows, splits),
             trained_table(rows, splits, limit)]
    return "\n\n".join(p for p in parts if p)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qlam qubits-report", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders, or folders of run folders (a study's out)")
    ap.add_argument("--limit", type=int, default=500,
                    help="held-out images per run for the discarded weight and entropy (default 500)")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--out", type=Path, help="also write the tables here (atomically)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit < 1:
        raise SystemExit(f"--limit must be >= 1, got {args.limit}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        text = report(args.runs, args.limit)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"qlam qubits-report: {exc}") from None
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
        print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
