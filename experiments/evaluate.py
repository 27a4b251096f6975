"""Score a checkpoint on a dataset split: ``qlam eval``.

::

    qlam eval --checkpoint runs/gru-mnist10k/best.pt --data-dir ../shared/data --split test --json
    {"accuracy": 0.9735, "n": 2000}

A checkpoint written by ``qlam train`` carries what rebuilding needs: the model's name and
resolved configuration, input size and classes, the token scheme, the training set's
normalisation, and the validation split's fraction and seed (``--split val`` is the run's own
validation split). ``--dataset`` and ``--data-dir`` default to the run's. With ``--json``,
stdout holds exactly one JSON object ``{"accuracy": ..., "n": ...}``; everything else goes to
stderr.

Accuracy versus bond dimension (QLAM checkpoints): ``--bond-dim CHI`` rebuilds the run's QLAM on
the MPS backend with bond cap ``CHI`` (``exact``: no cap, only the 1e-12 cutoff) and loads the
trained weights, which do not depend on the backend. A statevector-trained model is then
"trained exact, evaluated truncated". The JSON gains the bond cap, the backends and the
discarded weight (accumulated over a sequence's tokens, then averaged / maximised over the
split's sequences)::

    qlam eval --checkpoint runs/row_mnist10k/qlam-su4-init01-s0/best.pt --bond-dim 4 --json
    {"accuracy": ..., "n": 2000, "bond_dim": 4, "backend": "mps", "trained_backend":
     "statevector", "trained_bond_dim": null, "discarded_weight_mean": ..., "discarded_weight_max": ...,
     "centre_entropy_mean": ...}

(``centre_entropy_mean``: the entanglement entropy in bits across the centre bond of each
sequence's final memory, averaged over the split.)

A memory-task run (``qlam train --dataset mqar ...``) records its task, parameters, split sizes
and split seeds; its split is drawn again from them (``tasks.make``), so no ``--data-dir`` is
needed and ``--dataset`` may only name the run's own task. Accuracy and loss are then over the
labelled positions, and ``n`` counts those positions (as the run's own metrics do).

Accuracy on a quantum computer (QLAM checkpoints; ``qlam_tn.models.readout_protocols``):
``--protocol P`` reads the trained memory as hardware would, ``--shots S`` per read (``inf``:
expectations), ``--window TAU`` for ``window``, ``--weak-strength G`` for ``weak``, ``--noise P``
(a depolarising rate, or ``kind:p``) after every gate. The sampling is repeated ``--repeats R``
times with generators seeded ``--seed``, ``--seed + 1``, ...; the JSON gains the protocol, each
repeat's accuracy, their mean (``accuracy``) and standard deviation, the free exact readout's
accuracy on the same examples (``exact_accuracy``) and the seconds each took here. ``--limit N``
scores the first N examples of the split; ``--out FILE`` writes the JSON atomically. Without
these flags a QLAM is scored on its free exact reads, also one trained under a protocol::

    qlam eval --checkpoint runs/hardware/qlam-row-s0 --protocol collapse --shots 64 --repeats 3 \\
        --limit 500 --out runs/hardware/eval-collapse-64.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qlam_tn.experiments import runfolder as rf
from qlam_tn.experiments.data import load_splits
from qlam_tn.experiments.train import DTYPES, evaluate, make_dataset, model_from_config, \
    resolve_device, split_digest, task_split
from qlam_tn.measure import entropy_from_schmidt

# ``score(bond_dim=KEEP)``: evaluate the model as it was trained (distinct from None = exact MPS).
KEEP = "keep"


def parse_shots(raw) -> int | None:
    """``"inf"``/``None`` -> ``None`` (expectations); ``"64"``/``64`` -> ``64``; else ``ValueError``."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("inf", "none", "exact")):
        return None
    try:
        shots = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"shots must be a positive int or 'inf', got {raw!r}") from None
    if isinstance(raw, bool) or shots < 1 or (isinstance(raw, float) and raw != shots):
        raise ValueError(f"shots must be a positive int or 'inf', got {raw!r}")
    return shots


def protocol_settings(protocol: str = "exact", shots=None, window=None, weak_strength=None, noise=None,
                      trajectories: int = 16) -> dict:
    """The ``QLAMConfig`` readout fields of a protocol, checked (``ValueError``) by building a
    config from them; ``noise`` as a rate (depolarising) or ``"kind:p"``. What depends on the
    model (``end`` with per-position outputs, collapse copies ``>= K`` settings) is checked when
    the model is built from them."""
    from qlam_tn.models.qlam import QLAMConfig
    if isinstance(noise, str):
        try:
            noise = float(noise)
        except ValueError:
            pass
    settings = dict(readout_protocol=protocol, shots=parse_shots(shots), window=window,
                    weak_strength=weak_strength, noise=noise, trajectories=trajectories)
    # readout "zz" needs one measurement setting (K = 1): the model's own K is checked on loading
    QLAMConfig(readout="zz", readout_at="last" if protocol == "end" else "every", **settings)
    return settings


def parse_bond_dim(raw) -> int | None:
    """``"exact"``/``"none"``/``None`` -> ``None`` (no cap); ``"8"``/``8`` -> ``8``; else ``ValueError``."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("exact", "none")):
        return None
    try:
        chi = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"bond dimension must be a positive int or 'exact', got {raw!r}") from None
    if isinstance(raw, bool) or chi < 1 or (isinstance(raw, float) and raw != chi):
        raise ValueError(f"bond dimension must be a positive int or 'exact', got {raw!r}")
    return chi


def resolve_checkpoint(path) -> Path:
    """A ``.pt`` file, or a run folder (its ``best.pt``, else its ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path}: a folder without best.pt or last.pt (not a run folder?)")
    return path


def qlam_model_config(config: dict, bond_dim=KEEP) -> dict:
    """A run's ``config["model"]`` with its QLAM rebuilt on the MPS backend at ``bond_dim``.

    ``bond_dim=KEEP`` returns ``config["model"]`` unchanged. The parameters of a QLAM do not
    depend on the backend (the same encoder, entangler and query weights drive either engine),
    so the run's state dict loads into the rebuilt model. ``ValueError`` for a non-QLAM run.
    """
    model_cfg = config["model"]
    if bond_dim == KEEP:
        return model_cfg
    if model_cfg["name"] != "qlam":
        raise ValueError(f"a bond dimension applies to QLAM checkpoints only; this one holds a "
                         f"{model_cfg['name']!r} model")
    resolved = {**model_cfg["resolved"], "backend": "mps", "bond_dim": parse_bond_dim(bond_dim)}
    return {**model_cfg, "resolved": resolved}


def with_protocol(model_cfg: dict, settings: dict | None) -> dict:
    """A run's ``config["model"]`` with its QLAM's readout fields replaced by ``settings``
    (``protocol_settings``); unchanged for ``None``. ``ValueError`` for a non-QLAM run."""
    if settings is None:
        return model_cfg
    if model_cfg["name"] != "qlam":
        raise ValueError(f"a readout protocol applies to QLAM checkpoints only; this one holds a "
                         f"{model_cfg['name']!r} model")
    return {**model_cfg, "resolved": {**model_cfg["resolved"], **settings}}


def load_model(checkpoint, bond_dim=KEEP, dtype: str | None = None, nonfinite: str = "warn",
               protocol: dict | None = None):
    """``(model, ckpt)``: the trained model of ``checkpoint`` (a ``.pt`` or a run folder), on the CPU.

    ``bond_dim``: ``KEEP`` (as trained), an int cap or ``None``/``"exact"`` (MPS backend, see
    :func:`qlam_model_config`). ``protocol``: readout fields (``protocol_settings``) to read the
    QLAM's memory with (:func:`with_protocol`). ``dtype`` (``float32``/``float64``) defaults to the run's.
    ``ValueError`` naming the file for a checkpoint that fails verification, lacks what
    rebuilding needs, or whose tensors are not the model's (the first key that differs);
    weights holding NaN or inf are named in a ``RuntimeWarning`` (``nonfinite="warn"``) or a
    ``ValueError`` (``"error"``).
    """
    path = resolve_checkpoint(checkpoint)
    ckpt = rf.load_checkpoint(path)
    rf.check_entries(ckpt, path, rf.MODEL_ENTRIES)
    config = ckpt["config"]
    try:
        model = model_from_config(with_protocol(qlam_model_config(config, bond_dim), protocol),
                                  dtype or config["train"]["dtype"])
    except ValueError as exc:  # a value the model refuses, or a bond cap for a non-QLAM model
        raise ValueError(f"{path}: {exc}") from None
    except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise ValueError(f"{path}: its configuration does not rebuild the model "
                         f"({type(exc).__name__}: {exc}): the checkpoint was edited") from None
    rf.load_weights(model, ckpt["model"], path, nonfinite)
    return model, ckpt


@torch.no_grad()
def evaluate_truncated(model, loader, device, dtype) -> dict:
    """:func:`train.evaluate` plus the MPS discarded weight of every sequence: adds
    ``discarded_sum`` and ``discarded_max`` (over sequences of the per-sequence weight cut,
    accumulated over its tokens), ``sequences`` (their count), and ``centre_entropy_sum`` (bits):
    the von Neumann entropy across the centre bond (between qubits n//2 - 1 and n//2) of each
    sequence's final memory."""
    cut = {"discarded_sum": 0.0, "discarded_max": 0.0, "centre_entropy_sum": 0.0, "sequences": 0}

    def record(m):
        qlam = _qlam_of(m)
        disc = qlam.last_discarded_weight  # (B,), set by this forward
        cut["discarded_sum"] += float(disc.sum())
        cut["discarded_max"] = max(cut["discarded_max"], float(disc.max()))
        cut["sequences"] += disc.shape[0]
        memory = qlam.last_memory
        if memory.n_qubits > 1:
            centre = memory.schmidt_values(memory.n_qubits // 2 - 1)  # (B, k)
            cut["centre_entropy_sum"] += float(entropy_from_schmidt(centre).sum())

    return {**evaluate(model, loader, device, dtype, after_batch=record), **cut}


def _qlam_of(model):
    """The QLAM layer of a QLAM classifier (wrapped in a memory task's ``SequenceModel`` or not)."""
    return getattr(model, "body", model).qlam


@torch.no_grad()
def evaluate_protocol(model, exact_model, loader, device, dtype, repeats: int = 1, seed: int = 0) -> dict:
    """``model`` (a QLAM under a readout protocol) scored ``repeats`` times, the sampling
    generator seeded ``seed + r`` for repeat ``r``, and ``exact_model`` (the same weights, free
    exact reads) once: ``{"accuracies", "losses", "seconds", "exact_accuracy", "exact_loss",
    "exact_seconds", "n"}``."""
    qlam = _qlam_of(model)
    accs, losses, secs = [], [], []
    for r in range(repeats):
        qlam.readout_generator = torch.Generator().manual_seed(seed + r)
        start = time.perf_counter()
        stats = evaluate(model, loader, device, dtype)
        secs.append(time.perf_counter() - start)
        accs.append(stats["correct"] / stats["n"])
        losses.append(stats["loss_sum"] / stats["n"])
    start = time.perf_counter()
    exact = evaluate(exact_model, loader, device, dtype)
    return {"accuracies": accs, "losses": losses, "seconds": secs, "n": exact["n"],
            "exact_accuracy": exact["correct"] / exact["n"], "exact_loss": exact["loss_sum"] / exact["n"],
            "exact_seconds": time.perf_counter() - start}


def score(checkpoint, dataset: str | None = None, data_dir=None, split: str = "test",
          batch_size: int = 256, device: str = "auto", bond_dim=KEEP, protocol: dict | None = None,
          repeats: int = 1, seed: int = 0, limit: int | None = None) -> dict:
    """``{"accuracy", "n", "loss"}`` of the model in ``checkpoint`` on ``split``.

    ``bond_dim`` (QLAM only; an int, or ``None``/``"exact"``): evaluate on the MPS backend at
    that bond cap instead of as trained; the result then also holds ``bond_dim``, ``backend``,
    ``trained_backend``, ``trained_bond_dim``, ``discarded_weight_mean`` and
    ``discarded_weight_max``.

    ``protocol`` (QLAM only; ``protocol_settings``): read the memory under that readout protocol,
    ``repeats`` times (generators seeded ``seed``, ``seed + 1``, ...); ``accuracy`` and ``loss``
    are then the repeats' means and the result adds ``protocol`` (the settings),
    ``accuracies``, ``accuracy_std``, ``repeats``, ``seed``, ``exact_accuracy``, ``exact_loss``,
    ``seconds_per_repeat`` and ``exact_seconds``. ``limit``: score only the first ``limit``
    examples of the split.

    Raises ``ValueError`` for a checkpoint that fails verification (or holds weights that are
    not the model's, or not finite), a dataset that does not fit the model (image shape,
    classes) or a split of no images, ``FileNotFoundError`` for missing files.
    """
    checkpoint = resolve_checkpoint(checkpoint)
    if protocol is not None and bond_dim != KEEP:
        raise ValueError("a readout protocol and a bond cap are separate studies: give one of them")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    model, ckpt = load_model(checkpoint, bond_dim, nonfinite="error", protocol=protocol)
    if protocol is None and getattr(getattr(model, "body", model), "qlam", None) is not None \
            and _qlam_of(model).protocol_active:
        # a model trained under a protocol (shot-noise training) is scored on its free exact
        # reads unless a protocol is asked for: reproducible, as for every other model
        model, ckpt = load_model(checkpoint, bond_dim, nonfinite="error", protocol=protocol_settings("exact"))
    config = ckpt["config"]
    if (protocol is not None and protocol["readout_protocol"] == "end"
            and config["model"].get("outputs") == "per_position"):
        raise ValueError(f"{checkpoint}: readout_protocol='end' reads the memory once, after the last "
                         f"token; this model gives an output at every position (a read after every "
                         f"token): use 'restart', 'window' or 'collapse'")
    train_cfg, data_cfg = config["train"], config["data"]
    if "task" in data_cfg:
        dataset, data = _task_data(checkpoint, data_cfg, dataset, split)
    else:
        dataset, data = _image_data(checkpoint, config, dataset, data_dir, split)
    if limit is not None:
        data = torch.utils.data.Subset(data, range(min(limit, len(data))))
    dev = resolve_device(device)
    model = model.to(dev)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
    if protocol is not None:
        # free exact reads, also for a model trained under a protocol (shot-noise training)
        exact_model, _ = load_model(checkpoint, nonfinite="error", protocol=protocol_settings("exact"))
        stats = evaluate_protocol(model, exact_model.to(dev), loader, dev, DTYPES[train_cfg["dtype"]],
                                  repeats, seed)
        accs = stats["accuracies"]
        mean = sum(accs) / repeats
        std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (repeats - 1)) if repeats > 1 else 0.0
        out = {"accuracy": mean, "n": stats["n"], "loss": sum(stats["losses"]) / repeats,
               "dataset": dataset, "split": split, "epoch": ckpt["epoch"], "protocol": protocol,
               "accuracies": accs, "accuracy_std": std, "repeats": repeats, "seed": seed,
               "exact_accuracy": stats["exact_accuracy"], "exact_loss": stats["exact_loss"],
               "seconds_per_repeat": stats["seconds"], "exact_seconds": stats["exact_seconds"],
               "limit": limit, "checkpoint": str(checkpoint)}
        if "task" in data_cfg:
            out["task"] = data_cfg["task"]
        return out
    truncated = bond_dim != KEEP
    stats = (evaluate_truncated if truncated else evaluate)(model, loader, dev,
                                                             DTYPES[train_cfg["dtype"]])
    n = stats["n"]
    out = {"accuracy": stats["correct"] / n, "n": n, "loss": stats["loss_sum"] / n,
           "dataset": dataset, "split": split, "epoch": ckpt["epoch"]}
    if "task" in data_cfg:
        out["task"] = data_cfg["task"]
    if truncated:
        resolved = config["model"]["resolved"]
        out.update(bond_dim=getattr(model, "body", model).config.bond_dim, backend="mps",
                   trained_backend=config["model"]["backend"], trained_bond_dim=resolved["bond_dim"],
                   # per sequence (n counts labelled positions in a memory task)
                   discarded_weight_mean=stats["discarded_sum"] / stats["sequences"],
                   discarded_weight_max=stats["discarded_max"],
                   centre_entropy_mean=stats["centre_entropy_sum"] / stats["sequences"])
    return out


def _image_data(checkpoint: Path, config: dict, dataset, data_dir, split: str):
    """``(dataset name, split's token dataset)`` of an image run, checked against the model."""
    train_cfg, data_cfg = config["train"], config["data"]
    try:
        dataset = dataset or data_cfg["dataset"]
        data_dir = data_dir if data_dir is not None else train_cfg["data_dir"]
        fraction, seed = train_cfg["val_fraction"], train_cfg["seed"]
    except KeyError as exc:
        raise ValueError(f"{checkpoint}: its configuration has no {exc} entry: the checkpoint "
                         f"was edited") from None
    if split == "val" and fraction == 0:
        raise ValueError(f"{checkpoint}: the run had no validation split (val_fraction 0)")
    part = load_splits(dataset, data_dir, (split,), fraction, seed)[split]
    if len(part.labels) == 0:
        carved = f"; the run's --val-fraction {fraction} carves none" if split == "val" else ""
        raise ValueError(f"{checkpoint}: the {split} split of {dataset} has 0 images "
                         f"({part.info.source}{carved}): there is nothing to score")
    shape = list(part.info.image_shape)
    if shape != data_cfg["image_shape"]:
        raise ValueError(f"{dataset!r} has images of shape {shape}; the model in {checkpoint} "
                         f"was trained on {data_cfg['image_shape']}")
    if part.info.num_classes != config["model"]["num_classes"]:
        raise ValueError(f"{dataset!r} has {part.info.num_classes} classes; the model in "
                         f"{checkpoint} has {config['model']['num_classes']}")
    return dataset, make_dataset(part, data_cfg)


def _task_data(checkpoint: Path, data_cfg: dict, dataset, split: str):
    """``(task name, split's TensorDataset)`` of a memory-task run: the split drawn again from
    the task, parameters, size and seed the run recorded."""
    task = data_cfg["task"]
    if dataset is not None and dataset.lower().replace("-", "_") != task:
        raise ValueError(f"{checkpoint}: the run trained on task {task!r}; --dataset {dataset!r} "
                         f"is not it (a task run is scored on its own task's splits)")
    try:
        size, seed = data_cfg["sizes"].get(split), data_cfg["split_seeds"].get(split)
        params = data_cfg["params"]
    except (KeyError, AttributeError) as exc:
        raise ValueError(f"{checkpoint}: its task record lacks {exc}: the checkpoint was "
                         f"edited") from None
    if size is None:
        raise ValueError(f"{checkpoint}: the run drew no {split} split (train it with "
                         f"--n-{split} N)")
    try:
        ds = task_split(task, params, size, seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{checkpoint}: its task record does not draw the {split} split "
                         f"({exc}): the checkpoint was edited") from None
    recorded = (data_cfg.get("sha256") or {}).get(split)
    if recorded is not None and split_digest(ds) != recorded:
        raise ValueError(f"{checkpoint}: the {split} split drawn now differs from the one the run scored "
                         f"(sha256 mismatch): numpy {np.__version__} draws another stream, or the task "
                         f"generator changed")
    return task, ds


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qlam eval", description="Score a checkpoint on a split.")
    ap.add_argument("--checkpoint", required=True, help="a best.pt or last.pt of a run")
    ap.add_argument("--dataset", help="dataset name (default: the run's)")
    ap.add_argument("--data-dir", help="folder with the dataset's files (default: the run's)")
    ap.add_argument("--split", choices=("test", "val"), default="test")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--bond-dim", metavar="CHI",
                    help="QLAM only: evaluate on the MPS backend with this bond cap (an int, or "
                         "'exact' for none); the JSON adds the discarded weight and the "
                         "centre-bond entropy")
    hw = ap.add_argument_group("readout protocols (QLAM only; docs/results/hardware.md)")
    hw.add_argument("--protocol", choices=("exact", "restart", "end", "window", "collapse", "weak"),
                    help="read the memory as a quantum computer would (exact: free expectations)")
    hw.add_argument("--shots", metavar="S", help="shots per read and setting, or copies for "
                    "collapse/weak; 'inf': expectations (default)")
    hw.add_argument("--window", type=int, metavar="TAU", help="tokens per read for --protocol window")
    hw.add_argument("--weak-strength", type=float, metavar="G", help="strength in (0, 1] for --protocol weak")
    hw.add_argument("--noise", metavar="P", help="gate noise after every gate: a depolarising rate, "
                    "or kind:p (depolarizing, amplitude_damping, dephasing)")
    hw.add_argument("--trajectories", type=int,
                    help="noisy runs averaged per read with --noise and no --shots (default 16)")
    hw.add_argument("--repeats", type=int, help="repeats of the sampling (default 1)")
    hw.add_argument("--seed", type=int, help="seed of the first repeat's sampling (default 0)")
    hw.add_argument("--limit", type=int, metavar="N", help="score the first N examples of the split")
    hw.add_argument("--out", metavar="FILE", help="also write the result JSON here (atomically)")
    ap.add_argument("--json", action="store_true",
                    help='print only {"accuracy": ..., "n": ...} on stdout (with --bond-dim '
                         'also the bond caps, backends, discarded weight and centre-bond entropy)')
    return ap


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    bond_dim = KEEP
    if args.bond_dim is not None:
        try:
            bond_dim = parse_bond_dim(args.bond_dim)
        except ValueError as exc:
            parser.error(f"--bond-dim: {exc}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    protocol = None
    wants_protocol = any(v is not None for v in (args.protocol, args.shots, args.window,
                                                 args.weak_strength, args.noise))
    if not wants_protocol:
        stray = [f for f, v in (("--repeats", args.repeats), ("--seed", args.seed),
                                ("--trajectories", args.trajectories)) if v is not None]
        if stray:
            parser.error(f"{', '.join(stray)}: the sampling of a readout protocol, which needs "
                         f"--protocol (or --shots/--noise)")
    if wants_protocol:
        try:
            protocol = protocol_settings(args.protocol or "restart", args.shots, args.window,
                                         args.weak_strength, args.noise,
                                         16 if args.trajectories is None else args.trajectories)
        except ValueError as exc:
            parser.error(str(exc))
        if args.trajectories is not None and (protocol["noise"] is None or protocol["shots"] is not None):
            parser.error("--trajectories is the number of noisy runs averaged per read: it goes with "
                         "--noise and without --shots (with --shots each of the S shots is one run)")
    if args.out is not None and not Path(args.out).parent.is_dir():
        parser.error(f"--out {args.out}: the folder {Path(args.out).parent} does not exist")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    # whatever a library prints while loading must not reach the JSON on stdout
    with contextlib.redirect_stdout(sys.stderr):
        try:
            result = score(args.checkpoint, args.dataset, args.data_dir, args.split,
                           args.batch_size, args.device, bond_dim, protocol,
                           1 if args.repeats is None else args.repeats,
                           0 if args.seed is None else args.seed, args.limit)
        except (ValueError, FileNotFoundError) as exc:
            parser.error(str(exc))
    extra = ("bond_dim", "backend", "trained_backend", "trained_bond_dim", "discarded_weight_mean",
             "discarded_weight_max", "centre_entropy_mean", "protocol", "accuracies", "accuracy_std",
             "exact_accuracy")
    if args.out:
        rf.atomic_write_json(args.out, result)
    if args.json:
        print(json.dumps({k: result[k] for k in ("accuracy", "n") + extra if k in result}))
    else:
        what = "labelled positions" if "task" in result else "images"
        print(f"accuracy {result['accuracy']:.4f} on {result['n']} {result['split']} {what} of "
              f"{result['dataset']} (loss {result['loss']:.4f}; {args.checkpoint}, epoch "
              f"{result['epoch']})")
        if "protocol" in result:
            p = result["protocol"]
            print(f"protocol {p['readout_protocol']} (shots {p['shots'] or 'inf'}, window {p['window']}, "
                  f"weak strength {p['weak_strength']}, noise {p['noise']}): accuracy "
                  f"{result['accuracy']:.4f} ± {result['accuracy_std']:.4f} over {result['repeats']} "
                  f"repeats, exact {result['exact_accuracy']:.4f}")
        if "bond_dim" in result:
            print(f"MPS bond cap {result['bond_dim'] or 'exact'} (trained on "
                  f"{result['trained_backend']}, bond cap {result['trained_bond_dim'] or 'exact'}): "
                  f"discarded weight per sequence mean {result['discarded_weight_mean']:.3e}, "
                  f"max {result['discarded_weight_max']:.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
