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


def accuracy(run: dict) -> float:
    """Test accuracy where the run has a test split, else its best validation accuracy."""
    return run["test"] if run["test"] is not None else run["best_val"]


def describe(run: dict) -> dict:
    """What the tables key a run by: dataset, model family, memory, n, χ, GRU hidden size."""
    train, model = run["config"]["train"], run["config"]["model"]
    out = {"dataset": run["dataset"], "model": run["model"], "seed": run["seed"], "run": run}
    if run["model"] == "qlam":
        resolved = model["resolved"]
        if resolved.get("backend") != "mps":
            raise ValueError(f"{run['path']}: the qubit study reads MPS-backend QLAMs, got "
                             f"backend {resolved.get('backend')!r}")
        out.update(memory="frozen" if train.get("memory_lr_scale", 1.0) == 0 else "trained",
                   n=resolved["n_qubits"], chi=resolved["bond_dim"])
    elif run["model"] == "gru":
        out.update(hidden=model["resolved"]["hidden_size"])
    else:
        raise ValueError(f"{run['path']}: the qubit study compares QLAM with GRU, got {run['model']!r}")
    return out


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
    return rows


def run_state_floats(run: dict) -> int:
    """The run's recorded ``state_floats``, or (runs recorded before it was) the model's own."""
    if run["state_floats"] is not None:
        return run["state_floats"]
    model, _ = load_model(run["path"])
    return state_size(model, seq_len=run["config"]["data"]["seq_len"])


def _metric_note(rows) -> str:
    with_test = sorted({r["dataset"] for r in rows if r["run"]["test"] is not None})
    without = sorted({r["dataset"] for r in rows if r["run"]["test"] is None})
    parts = [f"test accuracy ({', '.join(with_test)})"] * bool(with_test) + \
            [f"best validation accuracy ({', '.join(without)})"] * bool(without)
    return " and ".join(parts)


def accuracy_table(rows) -> str:
    qlam = [r for r in rows if r["model"] == "qlam"]
    ns = sorted({r["n"] for r in qlam})
    cells = defaultdict(list)
    for r in qlam:
        cells[(r["dataset"], r["memory"], r["chi"], r["n"])].append(accuracy(r["run"]))
    keys = sorted({k[:3] for k in cells}, key=lambda k: (k[0], k[1] != "frozen", k[2]))
    lines = [f"Accuracy against qubits n: {_metric_note(qlam)}, % (mean ± std over seeds, seeds "
             "in brackets)", "",
             "| dataset | memory | χ | " + " | ".join(f"n={n}" for n in ns) + " |",
             "|---|---|--:|" + "--:|" * len(ns)]
    lines += [f"| {d} | {m} | {chi} | " + " | ".join(pct(cells.get((d, m, chi, n), [])) for n in ns) + " |"
              for d, m, chi in keys]
    return "\n".join(lines)


def state_table(rows) -> str:
    qlam = [r for r in rows if r["model"] == "qlam"]
    ns = sorted({r["n"] for r in qlam})
    floats = {}
    for r in qlam:
        if (r["chi"], r["n"]) not in floats:
            floats[(r["chi"], r["n"])] = run_state_floats(r["run"])
    chis = sorted({c for c, _ in floats})
    lines = ["State size: real numbers the memory carries token to token (the largest MPS at the "
             "bond cap χ, real amplitudes)", "",
             "| χ | " + " | ".join(f"n={n}" for n in ns) + " |", "|--:|" + "--:|" * len(ns)]
    lines += [f"| {chi} | " + " | ".join(f"{floats[(chi, n)]:,}" if (chi, n) in floats else "—" for n in ns) + " |"
              for chi in chis]
    return "\n".join(lines)


def classical_table(rows) -> str:
    gru = [r for r in rows if r["model"] == "gru"]
    if not gru:
        return ""
    hs = sorted({r["hidden"] for r in gru})
    cells = defaultdict(list)
    for r in gru:
        cells[(r["dataset"], r["hidden"])].append(accuracy(r["run"]))
    lines = [f"The classical line: GRU by hidden size h (its state: h floats), {_metric_note(gru)}, %", "",
             "| dataset | " + " | ".join(f"h={h}" for h in hs) + " |", "|---|" + "--:|" * len(hs)]
    lines += [f"| {d} | " + " | ".join(pct(cells.get((d, h), [])) for h in hs) + " |"
              for d in sorted({r["dataset"] for r in gru})]
    return "\n".join(lines)


def memory_stats(run: dict, limit: int) -> tuple[float, float]:
    """``(discarded weight, centre-bond entropy in bits)`` of the run's memory at its own χ,
    means over the first ``limit`` images of its test split (else its validation split)."""
    split = "test" if run["test"] is not None else "val"
    out = score(run["path"] / "best.pt", split=split, bond_dim=run["config"]["model"]["resolved"]["bond_dim"],
                limit=limit, device="cpu")
    return out["discarded_weight_mean"], out["centre_entropy_mean"]


def _mean_std(values, digits: str) -> str:
    if not values:
        return "—"
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{digits}} ± {s:{digits}} ({len(values)})"


def trained_table(rows, limit: int) -> str:
    trained = [r for r in rows if r["model"] == "qlam" and r["memory"] == "trained"]
    if not trained:
        return ""
    frozen = {(r["dataset"], r["n"], r["chi"], r["seed"]): r for r in rows
              if r["model"] == "qlam" and r["memory"] == "frozen"}
    acc, disc, ent, ent0 = (defaultdict(list) for _ in range(4))
    for r in trained:
        key = (r["dataset"], r["n"], r["chi"])
        acc[key].append(accuracy(r["run"]))
        d, e = memory_stats(r["run"], limit)
        disc[key].append(d)
        ent[key].append(e)
        twin = frozen.get(key + (r["seed"],))
        if twin is not None:
            ent0[key].append(memory_stats(twin["run"], limit)[1])
    lines = [f"Trained memories: discarded weight and centre-bond entropy (bits) of the final memory, "
             f"means over {limit} held-out images per run, mean ± std over seeds; \"frozen\": the "
             "untrained memory of the same seed (the trained one's initialisation)", "",
             "| dataset | n | χ | accuracy (%) | discarded weight | centre entropy, trained (bits) "
             "| centre entropy, frozen (bits) | max (bits) |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for key in sorted(acc):
        d, n, chi = key
        bound = min(n // 2, math.log2(chi)) if chi else n // 2  # Schmidt rank <= min(2^(n/2), χ)
        lines.append(f"| {d} | {n} | {chi} | {pct(acc[key])} | {_mean_std(disc[key], '.1e')} | "
                     f"{_mean_std(ent[key], '.3f')} | {_mean_std(ent0[key], '.3f')} | {bound:g} |")
    return "\n".join(lines)


def report(folders, limit: int = 500) -> str:
    rows = collect(folders)
    parts = [accuracy_table(rows), state_table(rows), classical_table(rows), trained_table(rows, limit)]
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
