"""Tables of the memory-task studies (issue 21): ``qlam memory-report STUDY RUNS_DIR``.

Each study trains with ``qlam study experiments/configs/memory_<study>.toml``; this command
reads the finished run folders and prints (and writes next to them as ``memory_<study>.md``)
the tables of docs/results/memory.md that ``qlam report`` cannot compute from the training
metrics alone (the page's plots are drawn from these tables by ``experiments/doc_plots.py``):

* ``capacity``: MQAR test accuracy per model and number of pairs K (mean ± std over seeds),
  each model's streaming state size (real numbers carried token to token, ``state_size``), the
  largest K held at 90% accuracy, and the information bound K·log2(V/2) bits.
* ``recall``: selective-copying test accuracy per model and length; induction heads evaluated
  at lengths beyond training (``--lengths``, fresh draws from each run's test seed).
* ``copy``: copy memory per model and T: the test cross-entropy per position against the
  memoryless baseline 10·log 8/(T+20), and the accuracy on the 10 recalled symbols alone.
* ``entanglement``: the half-chain (centre-bond) entropy of QLAM's memory after every token of
  MQAR test sequences, for the trained memories and for freshly initialised ones (phase means,
  and the mean after selected tokens).

Every number is recomputed from checkpoints and seeded draws, so a rerun prints the same table.
"""
from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from qlam_tn.experiments import tasks
from qlam_tn.experiments.evaluate import load_model
from qlam_tn.experiments.report import find_runs, load_run
from qlam_tn.experiments.runfolder import atomic_write_text
from qlam_tn.models.common import state_size
from qlam_tn.models.heads import IGNORE_INDEX, count_correct

STUDIES = ("capacity", "recall", "copy", "entanglement")
EVAL_BATCH = 64


# ----------------------------------------------------------------------------------------------
# shared pieces
# ----------------------------------------------------------------------------------------------

def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of a non-empty list."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def pct(values) -> str:
    """``"87.3 ± 1.2 (3)"``: a mean accuracy in percent, its spread and the number of seeds."""
    if not values:
        return "—"
    m, s = mean_std(values)
    return f"{100 * m:.1f} ± {100 * s:.1f} ({len(values)})"


def model_label(run: dict) -> str:
    """The study's name for a run's model: its run name without the seed and the setting."""
    return run["path"].name.split("-")[0]


def finished_runs(folder) -> list[dict]:
    """Every complete run under ``folder`` (``load_run``'s records); unfinished ones are skipped
    with a line on stdout, so a report of a study still running says what it leaves out."""
    runs = []
    for path in find_runs([folder]):
        run = load_run(path)
        if run["complete"] and run["test"] is not None:
            runs.append(run)
        else:
            print(f"  (skipped, not finished: {path.name})")
    if not runs:
        raise SystemExit(f"no finished run under {folder}")
    return runs


def task_params(run: dict) -> dict:
    return dict(run["config"]["data"]["params"])


@torch.no_grad()
def predict(model, x: torch.Tensor) -> torch.Tensor:
    """``model``'s per-position logits on tokens ``x (N, L)`` -> ``(N, L, C)``, in batches."""
    model.eval()
    return torch.cat([model.forward_sequence(x[i:i + EVAL_BATCH]) for i in range(0, x.shape[0], EVAL_BATCH)])


def score_positions(logits: torch.Tensor, y: torch.Tensor, positions: slice | None = None) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy in nats)`` of ``logits (N, L, C)`` over the labelled
    positions of ``y (N, L)``, or over ``positions`` only (the others ignored)."""
    if positions is not None:
        keep = torch.zeros_like(y, dtype=torch.bool)
        keep[:, positions] = True
        y = torch.where(keep, y, torch.full_like(y, IGNORE_INDEX))
    hits, total = count_correct(logits, y)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).double(), y.flatten(),
                                             ignore_index=IGNORE_INDEX, reduction="sum")
    return hits / total, float(loss) / total


def held_out(run: dict, n: int | None = None, **override):
    """The run's test sequences (its own test seed), or ``n`` fresh ones with parameters overridden
    (``seq_len=4096``): the same draw ``qlam train`` scored, or the same seed at another length."""
    data = run["config"]["data"]
    params = {**task_params(run), **override}
    size = n if n is not None else data["sizes"]["test"]
    x, y = tasks.make(run["dataset"], size, data["split_seeds"]["test"], **params)
    return torch.as_tensor(x), torch.as_tensor(y)


def write(out: Path, text: str) -> None:
    print(text)
    atomic_write_text(out, text + "\n")
    print(f"\nwritten: {out}")


# ----------------------------------------------------------------------------------------------
# 1. capacity (MQAR)
# ----------------------------------------------------------------------------------------------

def capacity(folder: Path) -> str:
    runs = finished_runs(folder)
    acc = defaultdict(list)          # (model, K) -> test accuracies over seeds
    states, params, vocab, seq_len = {}, {}, None, None
    for run in runs:
        p = task_params(run)
        name, k = model_label(run), p["num_pairs"]
        acc[(name, k)].append(run["test"])
        vocab, seq_len = p["vocab_size"], p["seq_len"]
        if name not in states:
            model, _ = load_model(run["path"])
            states[name], params[name] = state_size(model, seq_len=seq_len), run["params"]
    models = sorted(states, key=lambda m: states[m])
    ks = sorted({k for _, k in acc})
    chance = 1 / (vocab - vocab // 2)
    lines = [f"MQAR, L={seq_len}, V={vocab} (chance {100 * chance:.1f}%): test accuracy over the query "
             f"positions, % (mean ± std over seeds, seeds in brackets)", ""]
    lines.append("| model | params | state (floats) | " + " | ".join(f"K={k}" for k in ks)
                 + " | largest K at ≥ 90% |")
    lines.append("|---|--:|--:|" + "--:|" * len(ks) + "--:|")
    for m in models:
        held = [k for k in ks if acc.get((m, k)) and statistics.fmean(acc[(m, k)]) >= 0.9]
        lines.append(f"| {m} | {params[m]:,} | {states[m]:,} | "
                     + " | ".join(pct(acc.get((m, k), [])) for k in ks)
                     + f" | {max(held) if held else f'< {ks[0]}'} |")
    bits = {k: k * math.log2(vocab // 2) for k in ks}
    lines += ["", "Information to store: K·log2(V/2) bits = "
              + ", ".join(f"{bits[k]:.0f} (K={k})" for k in ks)
              + "; a model's state holds its floats (32 bits each, far more than the bound: "
                "capacity here is limited by what training finds, not by the state's bits)."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# 2. selective copying and induction heads
# ----------------------------------------------------------------------------------------------

def recall(folder: Path, lengths: list[int], n_extrapolate: int) -> str:
    runs = finished_runs(folder)
    sel = defaultdict(list)
    ind = [r for r in runs if r["dataset"] == "induction"]
    for r in runs:
        if r["dataset"] == "selective_copy":
            sel[(model_label(r), task_params(r)["seq_len"])].append(r["test"])
    lines = []
    if sel:
        ls = sorted({L for _, L in sel})
        models = sorted({m for m, _ in sel})
        p = next(task_params(r) for r in runs if r["dataset"] == "selective_copy")
        lines += [f"Selective copying (M={p['num_tokens']} tokens, V={p['vocab_size']}, chance "
                  f"{100 / (p['vocab_size'] - 2):.1f}%): test accuracy at the marker positions, %", "",
                  "| model | " + " | ".join(f"L={L}" for L in ls) + " |", "|---|" + "--:|" * len(ls)]
        lines += [f"| {m} | " + " | ".join(pct(sel.get((m, L), [])) for L in ls) + " |" for m in models]
    ext = defaultdict(list)
    if ind:
        train_len = task_params(ind[0])["seq_len"]
        for r in ind:
            model, _ = load_model(r["path"])
            for L in lengths:
                x, y = held_out(r, n=n_extrapolate, seq_len=L)
                ext[(model_label(r), L)].append(score_positions(predict(model, x), y)[0])
        models = sorted({m for m, _ in ext})
        v = task_params(ind[0])["vocab_size"]
        lines += ["", f"Induction heads (V={v}, chance {100 / (v - 1):.1f}%), trained at L={train_len}, "
                  f"tested on {n_extrapolate} fresh sequences (the run's test seed) at each length, %", "",
                  "| model | " + " | ".join(f"L={L}" for L in lengths) + " |", "|---|" + "--:|" * len(lengths)]
        lines += [f"| {m} | " + " | ".join(pct(ext.get((m, L), [])) for L in lengths) + " |" for m in models]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# 3. copy memory
# ----------------------------------------------------------------------------------------------

def copy(folder: Path) -> str:
    runs = finished_runs(folder)
    ce, recalled = defaultdict(list), defaultdict(list)
    for r in runs:
        L = task_params(r)["seq_len"]
        model, _ = load_model(r["path"])
        x, y = held_out(r)
        logits = predict(model, x)
        ce[(model_label(r), L)].append(score_positions(logits, y)[1])
        recalled[(model_label(r), L)].append(score_positions(logits, y, slice(L - tasks.COPY_LENGTH, L))[0])
    ls = sorted({L for _, L in ce})
    models = sorted({m for m, _ in ce})
    lines = ["Copy memory: test cross-entropy per position (nats; the memoryless baseline "
             "10·log 8/(T+20) in the header) and accuracy on the 10 recalled symbols "
             f"(chance {100 / tasks.COPY_SYMBOLS:.1f}%), mean ± std (seeds)", "",
             "| model | " + " | ".join(f"T={L - 20}: CE (baseline {tasks.baseline('copy_memory', seq_len=L).value:.4f})"
                                     f" | T={L - 20}: recall %" for L in ls) + " |",
             "|---|" + "--:|--:|" * len(ls)]
    for m in models:
        cells = []
        for L in ls:
            c = ce.get((m, L), [])
            cells.append("—" if not c else f"{mean_std(c)[0]:.4f} ± {mean_std(c)[1]:.4f} ({len(c)})")
            cells.append(pct(recalled.get((m, L), [])))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# 4. entanglement while storing and recalling
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def centre_entropy(model, x: torch.Tensor) -> torch.Tensor:
    """Half-chain entropy (bits) of a QLAM memory after each token of ``x (N, L)`` -> ``(N, L)``,
    streamed with ``model.step`` (the memory is ``state.memory``, a StateVector or an MPS)."""
    state = model.init_state(x.shape[0])
    out = []
    for t in range(x.shape[1]):
        _, state = model.step(x[:, t], state)
        ent = state.memory.entropy()                    # (N, n - 1), every bond
        out.append(ent[:, ent.shape[1] // 2])
    return torch.stack(out, 1)


def entanglement(folder: Path, n_sequences: int) -> str:
    runs = [r for r in finished_runs(folder) if r["model"] == "qlam" and r["dataset"] == "mqar"]
    if not runs:
        raise SystemExit(f"no finished QLAM MQAR run under {folder}")
    curves = defaultdict(list)       # (K, "trained"|"random") -> (L,) mean entropy per run
    rows = []
    for r in runs:
        k = task_params(r)["num_pairs"]
        x, _ = held_out(r, n=n_sequences)
        trained, _ = load_model(r["path"])
        for tag, model in (("trained", trained), ("random", _fresh_like(r))):
            e = centre_entropy(model, x).mean(0)
            curves[(k, tag)].append(e)
            rows.append((k, tag, r["seed"], float(e[:2 * k].mean()), float(e[2 * k:].mean()), float(e.max())))
    n_qubits = runs[0]["config"]["model"]["resolved"]["n_qubits"]
    lines = [f"Centre-bond entropy (bits; at most {n_qubits // 2}) of QLAM's memory (n={n_qubits}) across "
             f"MQAR test sequences ({n_sequences} per run): mean over the pairs phase (first 2K tokens) and "
             "the query phase (the rest)", "",
             "| K | memory | pairs phase | query phase | max | runs |", "|--:|---|--:|--:|--:|--:|"]
    for k in sorted({k for k, _ in curves}):
        for tag in ("trained", "random"):
            sel = [row for row in rows if row[0] == k and row[1] == tag]
            if sel:
                lines.append(f"| {k} | {tag} | {_ms([s[3] for s in sel])} | {_ms([s[4] for s in sel])} | "
                             f"{_ms([s[5] for s in sel])} | {len(sel)} |")
    seq_len = max(len(c[0]) for c in curves.values())
    marks = sorted({1, 2, 4, 8, 16, 24, 32, 48, 64, seq_len} & set(range(1, seq_len + 1)))
    lines += ["", "Centre-bond entropy (bits) after token t, mean over runs", "",
              "| K | memory | " + " | ".join(f"t={t}" for t in marks) + " |", "|--:|---|" + "--:|" * len(marks)]
    for k in sorted({k for k, _ in curves}):
        for tag in ("trained", "random"):
            if curves.get((k, tag)):
                e = torch.stack(curves[(k, tag)]).mean(0)
                lines.append(f"| {k} | {tag} | " + " | ".join(f"{float(e[t - 1]):.2f}" for t in marks) + " |")
    return "\n".join(lines)


def _fresh_like(run: dict):
    """The run's model at a fresh initialisation drawn from its seed (the 'random' memory)."""
    from qlam_tn.experiments.train import model_from_config

    torch.manual_seed(run["seed"])
    return model_from_config(run["config"]["model"], run["config"]["train"]["dtype"])


def _ms(values) -> str:
    m, s = mean_std(values)
    return f"{m:.2f} ± {s:.2f}"


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qlam memory-report", description=__doc__.splitlines()[0])
    p.add_argument("study", choices=STUDIES)
    p.add_argument("runs", help="the study's folder of run folders (e.g. runs/memory_capacity)")
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024, 4096],
                   help="recall: the lengths induction heads are tested at")
    p.add_argument("--n-sequences", type=int, default=256,
                   help="recall: fresh test sequences per length; entanglement: sequences per run")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n_sequences < 1:
        raise SystemExit(f"--n-sequences must be >= 1, got {args.n_sequences}")
    if any(L < 2 for L in args.lengths):
        raise SystemExit(f"--lengths must be >= 2, got {args.lengths}")
    folder = Path(args.runs)
    if not folder.is_dir():
        raise SystemExit(f"no such folder: {folder}")
    if args.study == "capacity":
        text = capacity(folder)
    elif args.study == "recall":
        text = recall(folder, args.lengths, args.n_sequences)
    elif args.study == "copy":
        text = copy(folder)
    else:
        text = entanglement(folder, args.n_sequences)
    write(folder / f"memory_{args.study}.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
