"""Aggregate run folders into a markdown table and a bar plot: ``qlam report``.

::

    qlam report runs/                                   # every run folder under runs/
    qlam report runs/gru-* runs/qlam-* --out results.md --plot results.png
    qlam report runs/my_study --by name                 # one row per run name (a study's runs)

A RUN argument is a run folder (``config.json`` + ``metrics.json``) or a folder holding run
folders. Runs are grouped by dataset, token scheme, model and model configuration (the options
given to the model, the matched width, and for QLAM its backend, size, and ``memory_lr_scale``
when it is not 1; an optimiser other than AdamW), so a row's runs
differ only in training options; a row whose runs differ in anything but the seed is reported
on stderr. With ``--by name`` a row is instead the runs of one name: the run folder's name without
its ``-s<seed>`` ending, as ``qlam study`` names them (``gru-lr0.01-s0``, ``gru-lr0.01-s1`` are
the row ``gru-lr0.01``), so runs that differ only in training options get rows of their own.
Each row gives mean ± sample std over the runs of the best validation accuracy and
of the test accuracy (of ``best.pt``), the number of seeds, the parameter count and the
training throughput (tokens/s, forward + backward, mean over epochs; for a cached frozen memory the
first epoch's, which ran the memory).

Memory-task runs (``qlam train --dataset mqar ...``) show the task's parameters in the tokens
column, their accuracy over the labelled positions, and two more columns: the test loss
(cross-entropy per labelled position) and the task's memoryless baseline
(``tasks.baseline``: chance accuracy for the recall tasks, 10·log 8/(T+20) nats for
``copy_memory``, whose accuracy counts every position, the blanks included).
"""
from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from qlam_tn.experiments import runfolder as rf
from qlam_tn.experiments import tasks
from qlam_tn.models import available

_QLAM_SIZE = ("n_qubits", "depth", "bond_dim")
_SEED_SUFFIX = re.compile(r"-s\d+$")


def run_name(path) -> str:
    """A run folder's name without its ``-s<seed>`` ending: the row ``--by name`` puts it in."""
    return _SEED_SUFFIX.sub("", Path(path).name)


def find_runs(paths) -> list[Path]:
    """Run folders named by ``paths``, or found one level below them, sorted, without repeats."""
    runs = []
    for path in map(Path, paths):
        if (path / "config.json").is_file():
            runs.append(path)
        elif path.is_dir():
            runs += sorted(p for p in path.iterdir() if (p / "config.json").is_file())
        else:
            raise FileNotFoundError(f"{path}: not a run folder (no config.json) nor a folder of runs")
    return sorted(dict.fromkeys(p.resolve() for p in runs))


def load_run(path: Path) -> dict:
    """A run's config, metrics and environment, with what the table needs pulled out."""
    config = json.loads((path / "config.json").read_text())
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {"epochs": []}
    env_file = path / "env.json"
    env = json.loads(env_file.read_text()) if env_file.is_file() else {}
    epochs = metrics.get("epochs", [])
    best, test = metrics.get("best") or {}, metrics.get("test") or {}
    rates = [r["tokens_per_s"] for r in epochs if r.get("tokens_per_s")]
    if config["train"].get("cache_memory"):
        # Only the first epoch ran the memory (over the cached splits); later ones train the head.
        rates = rates[:1]
    return {
        "path": path, "config": config, "env": env,
        "dataset": config["data"]["dataset"], "tokens": config["data"]["tokens"],
        "model": config["model"]["name"],
        "describe": describe_model(config["model"], config["train"].get("memory_lr_scale", 1.0),
                                   config["train"].get("optimizer", "adamw")),
        "params": config["model"]["params"], "seed": config["train"]["seed"],
        "state_floats": config["model"].get("state_floats"),
        "epochs_done": len(epochs), "epochs_planned": config["train"]["epochs"],
        "complete": bool(metrics.get("complete")),
        "best_val": best.get("val_acc"), "test": test.get("acc"), "test_loss": test.get("loss"),
        "baseline": task_baseline(config["data"]),
        "tokens_per_s": statistics.fmean(rates) if rates else None,
    }


def task_baseline(data: dict) -> str | None:
    """The memoryless baseline of a memory-task run's data record, as a table cell (``None``
    for an image run): ``tasks.baseline`` of its task and parameters."""
    if "task" not in data:
        return None
    base = tasks.baseline(data["task"], **data["params"])
    if base.metric == "accuracy":
        return f"{100 * base.value:.2f}% acc (chance)"
    if base.metric == "cross_entropy":
        return f"{base.value:.4f} nats (loss)"
    return f"{base.value:.4f} {base.metric}"


def describe_model(model: dict, memory_lr_scale: float = 1.0, optimizer: str = "adamw") -> str:
    """The model options that tell its rows apart: given keywords, QLAM's backend and size, a
    QLAM memory trained at another rate than its head (``memory_lr_scale``; 0: frozen), and an
    optimiser other than AdamW (``lbfgs``: a frozen memory's head fitted at once)."""
    parts = dict(model.get("cfg", {}))
    if memory_lr_scale != 1.0:
        parts["memory_lr_scale"] = memory_lr_scale
    if optimizer != "adamw":
        parts["optimizer"] = optimizer
    if model["name"] == "qlam":
        resolved = model.get("resolved", {})
        parts.update({k: resolved[k] for k in _QLAM_SIZE if k in resolved})
        if model.get("backend"):
            parts["backend"] = model["backend"]
        if parts.get("backend") == "statevector":
            parts.pop("bond_dim", None)
    return " ".join(f"{k}={v}" for k, v in sorted(parts.items()))


def _training_signature(run: dict) -> dict:
    train = dict(run["config"]["train"])
    for key in ("seed", "data_dir"):
        train.pop(key)
    return train


def _mean_std(values) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _pct(mean, std) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def group_runs(runs: list[dict], by: str = "model") -> list[dict]:
    """One row per (dataset, tokens, model, model options), in dataset/tokens/registry order;
    ``by="name"``: one row per (dataset, tokens, model, run name), the row's ``name`` set."""
    if by not in ("model", "name"):
        raise ValueError(f"group runs by model or name, got {by!r}")
    groups = defaultdict(list)
    for run in runs:
        last = run["describe"] if by == "model" else run_name(run["path"])
        groups[(run["dataset"], run["tokens"], run["model"], last)].append(run)
    order = {name: i for i, name in enumerate(["qlam"] + [m for m in available() if m != "qlam"])}
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], order.get(k[2], len(order)), k[2], k[3])):
        members = groups[key]
        what = f"{'/'.join(key[:3])} {key[3]}"
        signatures = [_training_signature(r) for r in members]
        differing = sorted({k for s in signatures for k in s if s[k] != signatures[0].get(k)})
        if by == "name":
            options = sorted({r["describe"] for r in members})
            if len(options) > 1:
                differing = ["model options"] + differing
        if differing:
            print(f"qlam report: warning: runs of {what} differ in "
                  f"{', '.join(differing)}: " + ", ".join(str(r["path"]) for r in members),
                  file=sys.stderr)
        seeds = [r["seed"] for r in members]
        if len(set(seeds)) < len(seeds):
            print(f"qlam report: warning: repeated seeds {sorted(seeds)} in {what}", file=sys.stderr)
        val = _mean_std(r["best_val"] for r in members)
        test = _mean_std(r["test"] for r in members)
        test_loss = _mean_std(r["test_loss"] for r in members)
        baselines = sorted({r["baseline"] for r in members if r["baseline"]})
        rates = [r["tokens_per_s"] for r in members if r["tokens_per_s"]]
        params = sorted({r["params"] for r in members})
        states = sorted({r["state_floats"] for r in members if r.get("state_floats") is not None})
        rows.append({
            "dataset": key[0], "tokens": key[1], "model": key[2],
            "options": key[3] if by == "model" else " / ".join(sorted({r["describe"] for r in members})),
            "name": key[3] if by == "name" else None,
            "params": params, "state_floats": states, "seeds": len(set(seeds)), "runs": len(members), "val": val, "test": test,
            "test_loss": test_loss, "baseline": " / ".join(baselines) or None,
            "tokens_per_s": statistics.fmean(rates) if rates else None,
            "epochs": sorted({r["epochs_done"] for r in members}),
            "incomplete": sum(not r["complete"] for r in members),
        })
    return rows


def markdown(rows: list[dict], runs: list[dict]) -> str:
    """The table, with footnotes on incomplete runs and the machines the throughput came from."""
    named = any(r.get("name") is not None for r in rows)
    with_tasks = any(r.get("baseline") for r in rows)  # memory tasks: their loss and baseline
    with_state = any(r.get("state_floats") for r in rows)  # runs that recorded their state size
    head = ["run"] * named + ["dataset", "tokens", "model", "options", "params"] + \
        ["state (floats)"] * with_state + ["seeds", "best val acc (%)", "test acc (%)"] + \
        ["test loss", "memoryless baseline"] * with_tasks + ["tokens/s", "epochs"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * (4 + named) + ["--:"] * (6 + with_state + 2 * with_tasks)) + "|"]
    for r in rows:
        epochs = ", ".join(map(str, r["epochs"])) + ("*" if r["incomplete"] else "")
        extra = [_loss(*r["test_loss"]), r["baseline"] or "—"] if with_tasks else []
        cells = [r["name"]] * named + [
            r["dataset"], r["tokens"], r["model"], r["options"] or "defaults",
            " / ".join(f"{p:,}" for p in r["params"])] + [
            " / ".join(f"{s:,}" for s in r.get("state_floats") or []) or "—"] * with_state + [
            _seeds(r), _pct(*r["val"]),
            _pct(*r["test"])] + extra + [
            "—" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}", epochs]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", ("Mean ± sample std over seeds; test accuracy is that of each run's "
                  "best-validation checkpoint; tokens/s is training throughput (forward + "
                  "backward), mean over epochs.")]
    if with_tasks:
        notes.append("Memory tasks: accuracy and loss over the labelled positions (cross-entropy "
                     "in nats per position); the memoryless baseline is `tasks.baseline`, chance "
                     "accuracy for the recall tasks, the loss 10·log 8/(T+20) for copy_memory "
                     "(whose accuracy counts every position, the blanks included).")
    if any(r["incomplete"] for r in rows):
        notes.append("\\* the row includes runs that stopped before their planned epochs.")
    if any(run["config"]["train"].get("cache_memory") for run in runs):
        notes.append("Runs with a cached frozen memory (`--cache-memory`): tokens/s is that of the "
                     "first epoch, which ran the memory forward once over every split.")
    machines = sorted({_machine(run["env"]) for run in runs if run["env"]})
    if machines:
        notes.append("Measured on: " + "; ".join(machines) + ".")
    return "\n".join(lines + notes) + "\n"


def _loss(mean, std) -> str:
    if mean is None:
        return "—"
    return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def _seeds(row: dict) -> str:
    return str(row["seeds"]) + ("" if row["runs"] == row["seeds"] else f" ({row['runs']} runs)")


def _machine(env: dict) -> str:
    device = env.get("gpu") or env.get("device", "?")
    n = env.get("torch_threads")
    threads = f", {n} thread{'s' * (n != 1)}" if env.get("device") == "cpu" else ""
    world = f", {env['world_size']} processes" if env.get("world_size", 1) > 1 else ""
    return f"{device}{threads}{world} ({env.get('hostname', '?')}, torch {env.get('torch', '?')})"


def plot(rows: list[dict], path) -> None:
    """Bars of test accuracy (validation where a row has no test score) per model, one panel
    per dataset and token scheme, with the std over seeds as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(dict.fromkeys((r["dataset"], r["tokens"]) for r in rows))
    fig = Figure(figsize=(max(4.0, 1.1 * len(rows) + 1.5 * len(panels)), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        members = [r for r in rows if (r["dataset"], r["tokens"]) == panel]
        labels, heights, errors, colours = [], [], [], []
        for r in members:
            score, what = (r["test"], "test") if r["test"][0] is not None else (r["val"], "val")
            label = r.get("name") or r["model"]
            labels.append(f"{label}\n{_short(r['params'])}" + ("" if what == "test" else "\n(val)"))
            heights.append(100 * (score[0] or 0.0))
            errors.append(100 * (score[1] or 0.0))
            colours.append("tab:purple" if r["model"] == "qlam" else "tab:gray")
        xs = range(len(members))
        ax.bar(xs, heights, yerr=errors, capsize=4, color=colours)
        for x, h in zip(xs, heights):
            ax.text(x, h, f"{h:.1f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), labels, fontsize=8)
        lo = min(heights) if heights else 0.0
        ax.set_ylim(max(0.0, lo - 15.0), 100.0)
        ax.set_title(f"{panel[0]}, {panel[1]} tokens", fontsize=10)
        ax.set_ylabel("accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("test accuracy, mean ± std over seeds", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    rf.atomic_write_bytes(path, buf.getvalue())


def _short(params: list[int]) -> str:
    p = params[0]
    return f"{p / 1000:.1f}k" if p >= 1000 else str(p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="qlam report", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN", help="run folders, or folders of runs")
    ap.add_argument("--out", metavar="FILE.md", help="also write the table to this file")
    ap.add_argument("--plot", metavar="FILE.png", help="write a bar plot of the accuracies")
    ap.add_argument("--by", choices=("model", "name"), default="model",
                    help="a row per model configuration (default), or per run name: the folder's "
                         "name without its -s<seed> ending, as qlam study names runs")
    args = ap.parse_args(argv)
    try:
        paths = find_runs(args.runs)
        runs = []
        for p in paths:
            try:
                runs.append(load_run(p))
            except (KeyError, json.JSONDecodeError) as exc:
                raise ValueError(f"{p}: not a readable run folder ({type(exc).__name__}: {exc})") from None
    except (ValueError, FileNotFoundError) as exc:
        ap.error(str(exc))
    if not runs:
        ap.error(f"no run folders in {' '.join(args.runs)}")
    rows = group_runs(runs, args.by)
    table = markdown(rows, runs)
    print(table, end="")
    if args.out:
        rf.atomic_write_text(args.out, table)
    if args.plot:
        try:
            plot(rows, args.plot)
        except ImportError:
            ap.error("--plot needs matplotlib (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
