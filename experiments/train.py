"""Train a sequence classifier on a sequential-image dataset: ``qlam train``.

::

    qlam train --model gru --dataset mnist10k --data-dir ../shared/data --tokens row \\
        --epochs 20 --batch-size 64 --lr 3e-3 --out runs --name gru-row-s0
    qlam train --config experiments/configs/runs/NAME.toml --seed 1   # a run config; flags override it
    qlam train --model lstm --match-params 6282 ...         # width matched to a parameter budget
    qlam train --model qlam --model-cfg n_qubits=8 backend=statevector ...
    qlam train --resume runs/gru-row-s0                     # continue an interrupted run exactly
    qlam train --model gru --dataset mqar --data-cfg seq_len=64 num_pairs=4 vocab_size=128 \\
        --n-train 2000 --n-val 200 --n-test 200 --embed-dim 32   # a memory task (experiments.tasks)
    qlam train --nproc 2 ...                                # DistributedDataParallel, 2 processes
    torchrun --nproc_per_node=2 -m qlam_tn.experiments.train ...

This file reads top to bottom as a run does:

1. settings (:class:`TrainConfig`; a ``--config FILE`` is read by ``experiments.config``);
2. data (:func:`prepare`): read the dataset (``experiments.data``), carve the validation split
   from the training files (stratified, by ``--seed``), optionally keep a seeded subset of
   ``--limit-train`` images; tokens are normalised with the mean/std of the training images;
3. model: ``models.build`` (``--match-params`` sets the width), every generator seeded by
   ``--seed``;
4. optimiser (:func:`make_optimizer`): AdamW, learning rate linear warm-up then cosine decay to
   zero, stepped per optimiser step (``LambdaLR``), gradient-norm clipping;
5. the loop (:func:`fit`): every epoch train (data order from ``DistributedSampler``: a
   ``torch.Generator`` seeded with ``seed + epoch``), evaluate on the validation split, write
   metrics, curves and the ``last`` (and, when validation accuracy improves, ``best``) checkpoint;
6. evaluation: at the end, score ``best.pt`` on the test split when the dataset has one.

A memory task (``--dataset mqar``, ...; :data:`TASKS`) draws its splits instead of reading
files: ``tasks.make(task, n, tasks.split_seed(seed, split), **data_cfg)``; the model reads the
tokens through an embedding of width ``--embed-dim`` and gives logits at every position; loss and
accuracy count the labelled positions only (``models.per_position_loss``, ``count_correct``).

A QLAM memory trained slower or frozen (``--memory-lr-scale``), the frozen memory's features
computed once (``--cache-memory``) and the head fitted by L-BFGS (``--optimizer lbfgs``) live in
``experiments.frozen``; this trainer only calls it.

The run folder is described in ``experiments.runfolder``; one process writes it
(``runfolder.RunFolder``: made by an exclusive ``mkdir``, locked for the run's life), and a split
of no images is refused before it is made. ``--resume RUN_DIR`` first checks every file of the
run (``runfolder.verify_run``, then the splits and weights against what the configuration
builds), then restores model, optimiser, schedule, epoch, step and every random generator from
``RUN_DIR/last.pt``, so an interrupted run finishes with the same metrics and weights as an
uninterrupted one (bitwise on the CPU with the same thread count; the resumed run takes its
configuration from the checkpoint).

Distributed: under ``torchrun`` (or ``--nproc N``, which starts N local processes on loopback)
each process trains on its ``1/N`` shard of every epoch with ``--batch-size`` samples per step;
``DistributedDataParallel`` averages the gradients (gloo on the CPU, NCCL on GPUs), so N
processes with batch b take the steps one process takes with batch N*b. Metrics are summed over
processes; only rank 0 writes the run folder.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset
from tqdm import tqdm

from qlam_tn.experiments import config as run_config
from qlam_tn.experiments import frozen
from qlam_tn.experiments import runfolder as rf
from qlam_tn.experiments import tasks
from qlam_tn.experiments.data import DATASETS, DataSplit, SequenceDataset, load_splits, token_shape
# Kept importable from here, where it lived before experiments.frozen held it.
from qlam_tn.experiments.frozen import memory_features  # noqa: F401
from qlam_tn.models import available, build, count_correct, count_parameters, match_hidden_size, \
    per_position_loss, state_size, width_key

DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPTIMIZERS = ("adamw", "lbfgs")
_TOKENS = re.compile(r"pixel|row|permuted|patch[1-9][0-9]*")
DEFAULT_EMBED_DIM = 32        # a memory task's token embedding width when --embed-dim is not given
# The memory tasks (experiments.tasks) a run can train on; ``adding`` needs a regression head.
TASKS = tuple(t for t in tasks.available() if t != "adding")


# ----------------------------------------------------------------------------------------------
# 1. Settings
# ----------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything that decides what a run computes (``config.json["train"]``).

    ``batch_size`` is per process; ``warmup_steps`` overrides ``warmup_frac`` (a fraction of
    all optimiser steps); ``clip`` is the max global gradient norm (``None``: no clipping);
    ``model_cfg`` goes to ``models.build`` as keywords; ``match_params`` sets the model's width
    keyword so that its parameter count is closest to that number. ``memory_lr_scale`` (QLAM
    only) sets the quantum memory's learning rate to that multiple of ``lr`` (the head keeps
    ``lr``); ``0`` freezes the memory at its initialisation, so that only the readout head trains
    (a random-reservoir baseline). ``cache_memory`` (with ``memory_lr_scale=0`` only) runs the
    frozen memory once over every sequence before the first epoch and trains the head on those
    features: the same computation as running it every batch, without repeating the memory's
    cost each epoch. ``optimizer`` is ``adamw`` (minibatches, warm-up + cosine schedule,
    clipping) or, with ``cache_memory`` only, ``lbfgs``: the head fitted on all cached training
    features at once (full batch), ``lbfgs_iters`` L-BFGS iterations (strong-Wolfe line search,
    step ``lr``) per epoch, ``weight_decay`` then an L2 penalty ``wd/2·‖W‖²`` on the head's weight
    matrices (scikit-learn's logistic regression with ``C = 1/(wd·N)``), no schedule, no clipping.

    A memory task (``dataset`` one of :data:`TASKS`, see ``experiments.tasks``) draws its data:
    ``data_cfg`` holds the task's parameters (``seq_len=64 num_pairs=4 vocab_size=128``),
    ``n_train`` / ``n_val`` / ``n_test`` the sequences of each split (``None``: no such split;
    ``n_train`` is required), ``embed_dim`` the width of the token embedding the model reads
    (default :data:`DEFAULT_EMBED_DIM`). These five apply to the tasks only; ``tokens``,
    ``val_fraction`` and ``permute_seed`` to the image datasets only.
    """

    model: str = "qlam"
    dataset: str = "digits"
    data_dir: str | None = None
    tokens: str = "row"
    permute_seed: int | None = None
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    warmup_frac: float = 0.05
    clip: float | None = 1.0
    seed: int = 0
    val_fraction: float = 0.1
    limit_train: int | None = None
    limit_val: int | None = None
    match_params: int | None = None
    model_cfg: dict = field(default_factory=dict)
    dtype: str = "float32"
    memory_lr_scale: float = 1.0
    cache_memory: bool = False
    optimizer: str = "adamw"
    lbfgs_iters: int = 20
    data_cfg: dict = field(default_factory=dict)
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    embed_dim: int | None = None

    def __post_init__(self):
        if self.model not in available():
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(available())}")
        if not isinstance(self.dataset, str):
            raise TypeError(f"dataset must be a str, got {self.dataset!r}")
        self.dataset = self.dataset.lower().replace("-", "_")
        if self.dataset == "adding":
            raise ValueError("the adding task needs a regression head (one real number per "
                             "sequence, MSE loss) that the models do not have yet; train "
                             f"{', '.join(TASKS)} instead")
        if self.dataset not in DATASETS and self.dataset not in TASKS:
            raise ValueError(f"unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}; "
                             f"memory tasks: {', '.join(TASKS)}")
        if isinstance(self.data_cfg, (list, tuple)):  # ["seq_len=64", ...] as a study passes them
            self.data_cfg = run_config.parse_key_values(self.data_cfg, "--data-cfg")
        if not isinstance(self.data_cfg, dict):
            raise TypeError(f"data_cfg must be a dict, got {type(self.data_cfg).__name__}")
        for name in ("n_train", "n_val", "n_test", "embed_dim"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if not isinstance(self.tokens, str) or not _TOKENS.fullmatch(self.tokens):
            raise ValueError(f"unknown token scheme {self.tokens!r}: use pixel, row, patchK "
                             f"(e.g. patch4) or permuted")
        for name in ("epochs", "batch_size"):
            _check_int(name, getattr(self, name), 1)
        for name in ("permute_seed", "warmup_steps"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 0)
        for name in ("limit_train", "limit_val", "match_params"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        _check_int("seed", self.seed, 0)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac!r}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be > 0 (or None for no clipping), got {self.clip!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.limit_val is not None and self.val_fraction == 0:
            raise ValueError("limit_val needs a validation split; val_fraction is 0")
        if not isinstance(self.model_cfg, dict):
            raise TypeError(f"model_cfg must be a dict, got {type(self.model_cfg).__name__}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        scale = self.memory_lr_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale < math.inf:
            raise ValueError(f"memory_lr_scale must be a finite number >= 0, got {scale!r}")
        if scale != 1.0 and self.model != "qlam":
            raise ValueError(f"memory_lr_scale applies to the QLAM memory only, not to model {self.model!r}")
        if not isinstance(self.cache_memory, bool):
            raise TypeError(f"cache_memory must be True or False, got {self.cache_memory!r}")
        if self.cache_memory and (self.model != "qlam" or scale != 0):
            raise ValueError("cache_memory needs a frozen QLAM memory (model qlam, memory_lr_scale 0): "
                             "a memory that trains changes its features every step")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.optimizer == "lbfgs" and not self.cache_memory:
            raise ValueError("optimizer lbfgs fits the head on all cached features at once: it needs "
                             "cache_memory (a frozen QLAM memory)")
        _check_int("lbfgs_iters", self.lbfgs_iters, 1)
        sampled = {k: self.model_cfg[k] for k in ("readout_protocol", "noise") if self.model_cfg.get(k)
                   and (k == "noise" or self.model_cfg[k] in ("collapse", "weak"))}
        if sampled:
            raise ValueError(f"--model-cfg {sampled}: collapse, weak and noisy readouts sample measurement "
                             "outcomes, which carry no gradient to the memory; train exact (or with "
                             "readout_protocol=restart shots=S) and evaluate with qlam eval --protocol")
        if self.is_task:
            self._check_task()
        else:
            given = [f"--{k.replace('_', '-')}" for k in ("data_cfg", "n_train", "n_val", "n_test",
                                                           "embed_dim") if getattr(self, k)]
            if given:
                raise ValueError(f"{', '.join(given)} apply to the memory tasks ({', '.join(TASKS)}), "
                                 f"not to the image dataset {self.dataset!r}")

    @property
    def is_task(self) -> bool:
        """Whether ``dataset`` is a memory task (drawn by ``experiments.tasks``), not images."""
        return self.dataset in TASKS

    def _check_task(self) -> None:
        """A memory task's settings: its parameters (checked by ``tasks.spec``), the split sizes
        and the options that apply to images only."""
        try:
            tasks.spec(self.dataset, **self.data_cfg)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--data-cfg for task {self.dataset!r}: {exc}") from None
        if self.n_train is None:
            raise ValueError(f"task {self.dataset!r} draws its data: give --n-train N (and --n-val "
                             f"N, --n-test N for a validation and a test split)")
        for name in ("limit_train", "limit_val", "permute_seed"):
            if getattr(self, name) is not None:
                raise ValueError(f"--{name.replace('_', '-')} applies to the image datasets; task "
                                 f"{self.dataset!r} takes its split sizes from --n-train, --n-val "
                                 f"and --n-test")
        if self.memory_lr_scale != 1.0 or self.cache_memory:
            raise ValueError("memory_lr_scale and cache_memory work on a QLAM sequence classifier, "
                             f"not yet on the per-position model a memory task ({self.dataset!r}) "
                             f"trains")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")


def parse_model_cfg(items) -> dict:
    """``["n_qubits=8", "backend=statevector", "bond_dim=None"]`` -> a dict of typed values.

    Values become ``None`` (none/null), bools (true/false), ints, floats, else stay strings.
    A key given twice takes its last value (the ablation scripts override a base list this way).
    """
    return run_config.parse_key_values(items, "--model-cfg")


# ----------------------------------------------------------------------------------------------
# 2. Data (and the model and schedule a run records beside it): everything that can fail on bad
#    input, before anything is written
# ----------------------------------------------------------------------------------------------

def load_data(cfg: TrainConfig) -> dict[str, DataSplit]:
    """``{"train", "val" (if val_fraction > 0), "test" (if the dataset has one)}`` splits."""
    splits = ("train", "val") if cfg.val_fraction > 0 else ("train",)
    try:
        return load_splits(cfg.dataset, cfg.data_dir, splits + ("test",), cfg.val_fraction,
                           cfg.seed)
    except FileNotFoundError:
        # No test files: train and validate; a missing training file raises again here.
        return load_splits(cfg.dataset, cfg.data_dir, splits, cfg.val_fraction, cfg.seed)


def make_dataset(split: DataSplit, data_cfg: dict) -> SequenceDataset:
    """Tokens of ``split`` under a run's token scheme and training-set normalisation."""
    return SequenceDataset(split.images, split.labels, data_cfg["tokens"], data_cfg["permute_seed"],
                           normalize=(data_cfg["mean"], data_cfg["std"]))


@dataclass
class Prepared:
    """A run ready to train: its settings, records, model, datasets and place among processes."""

    cfg: TrainConfig
    config: dict                  # what config.json and the checkpoints record
    splits_record: dict           # what splits.json records
    model: torch.nn.Module
    train_set: torch.utils.data.Dataset
    val_set: SequenceDataset | None
    test_set: SequenceDataset | None
    device: torch.device
    dist: _Dist
    resume: dict | None = None    # a loaded last.pt to continue from


def prepare(cfg: TrainConfig, device: str = "auto", resume: dict | None = None) -> Prepared:
    """Load the data and build the model; raises ``ValueError``/``TypeError``/
    ``FileNotFoundError`` on bad input, writes nothing."""
    d = _Dist.from_env()
    if cfg.cache_memory and d.world > 1:
        raise ValueError("cache_memory runs in one process: every rank would compute every "
                         "sequence's features; drop --nproc or the cache")
    dev = resolve_device(device, d)
    if cfg.is_task:
        train_set, val_set, test_set, data_cfg, splits_record = _task_datasets(cfg)
        model, model_record = _model(cfg, data_cfg["num_features"], len(data_cfg["classes"]), dev,
                                     data_cfg["seq_len"], vocab_size=data_cfg["vocab_size"])
    else:
        train_set, val_set, test_set, data_cfg, splits_record = _datasets(cfg)
        model, model_record = _model(cfg, train_set.num_features, len(data_cfg["classes"]), dev,
                                     train_set.seq_len)
    n_train = math.ceil(len(train_set) / d.world)
    config = {
        "train": cfg.to_dict(),
        "model": model_record,
        "data": data_cfg,
        "schedule": _schedule(cfg, n_train),
        "distributed": {"world_size": d.world, "batch_per_process": cfg.batch_size,
                        "global_batch": cfg.batch_size * d.world},
    }
    if resume is not None:
        try:
            _check_resumable(config, resume["config"], d.world)
        except (KeyError, TypeError, IndexError, RuntimeError) as exc:  # missing or odd entries
            raise ValueError(f"the run's checkpoint records a configuration that cannot be "
                             f"compared with this one ({type(exc).__name__}: {exc}): it was "
                             f"edited") from None
    return Prepared(cfg, config, splits_record, model, train_set, val_set, test_set, dev, d, resume)


def _datasets(cfg: TrainConfig):
    """``(train, val, test, data record, splits record)``; val/test ``None`` where absent."""
    parts = load_data(cfg)
    _check_not_empty(cfg, parts)
    train = parts["train"]
    info = train.info
    token_shape(info.image_shape, cfg.tokens)  # a patch size that does not divide fails here

    train_idx = None
    if cfg.limit_train is not None and cfg.limit_train < len(train.labels):
        g = torch.Generator().manual_seed(cfg.seed)
        train_idx = torch.randperm(len(train.labels), generator=g)[:cfg.limit_train].sort().values
        train = DataSplit(train.images[train_idx], train.labels[train_idx], info)
    train_set = SequenceDataset(train.images, train.labels, cfg.tokens, cfg.permute_seed,
                                normalize="standard")
    data_cfg = {
        "dataset": cfg.dataset, "tokens": cfg.tokens, "permute_seed": train_set.permute_seed,
        "image_shape": list(info.image_shape), "seq_len": train_set.seq_len,
        "num_features": train_set.num_features, "classes": list(info.classes),
        "mean": train_set.mean.tolist(), "std": train_set.std.tolist(),
    }
    val_idx = None
    if "val" in parts and cfg.limit_val is not None and cfg.limit_val < len(parts["val"].labels):
        # Its own generator stream (seed + 1): the training subset above stays what it was.
        g = torch.Generator().manual_seed(cfg.seed + 1)
        val = parts["val"]
        val_idx = torch.randperm(len(val.labels), generator=g)[:cfg.limit_val].sort().values
        parts["val"] = DataSplit(val.images[val_idx], val.labels[val_idx], val.info)
    val_set = make_dataset(parts["val"], data_cfg) if "val" in parts else None
    test_set = make_dataset(parts["test"], data_cfg) if "test" in parts else None

    info_dict = info.to_dict()
    info_dict.update(split="train", val_indices=_indices_summary(info.val_indices),
                     test_indices=_indices_summary(info.test_indices),
                     train_used=len(train_set), limit_train=cfg.limit_train,
                     val_used=None if val_set is None else len(val_set), limit_val=cfg.limit_val)
    data_cfg["info"] = info_dict
    splits_record = {
        "val_indices": list(info.val_indices), "val_seed": info.seed,
        "val_fraction": info.val_fraction,
        "test_indices": None if info.test_indices is None else list(info.test_indices),
        "train_subset": None if train_idx is None else train_idx.tolist(),
        "val_subset": None if val_idx is None else val_idx.tolist(),
        "note": "val_indices index the training pool (the training files, or the non-test part "
                "of a built-in dataset, in source order); train_subset (--limit-train) indexes "
                "the training split left after carving val; val_subset (--limit-val) indexes the "
                "validation split",
    }
    return train_set, val_set, test_set, data_cfg, splits_record


def task_label(params: dict) -> str:
    """A memory task's parameters as one string (``seq_len=64 num_pairs=4 vocab_size=128``): what a
    task run records where an image run records its token scheme."""
    return " ".join(f"{k}={v}" for k, v in params.items())


def task_split(task: str, params: dict, n: int, seed: int) -> TensorDataset:
    """``n`` sequences of ``task`` drawn from ``seed``: int64 tokens ``(n, L)`` and labels
    ``(n, L)`` (``-100`` where nothing is asked) as a ``TensorDataset``."""
    x, y = tasks.make(task, n, seed, **params)
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def split_digest(ds: TensorDataset) -> str:
    """SHA-256 of a task split's tensors (x then y): what a rerun must draw again."""
    h = hashlib.sha256()
    for t in ds.tensors:
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _task_datasets(cfg: TrainConfig):
    """A memory task's ``(train, val, test, data record, splits record)``: each split drawn by
    ``tasks.make`` from its own seed ``tasks.split_seed(cfg.seed, split)``; val/test ``None``
    without ``n_val``/``n_test``. The records hold what rebuilds the data (task, parameters,
    sizes, split seeds) and a digest of each split."""
    params, spec = tasks.params(cfg.dataset, **cfg.data_cfg), tasks.spec(cfg.dataset, **cfg.data_cfg)
    sizes = {s: n for s, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test))
             if n is not None}
    seeds = {s: tasks.split_seed(cfg.seed, s) for s in sizes}
    sets = {s: task_split(cfg.dataset, params, n, seeds[s]) for s, n in sizes.items()}
    base = tasks.baseline(cfg.dataset, **params)
    data_cfg = {
        "dataset": cfg.dataset, "task": cfg.dataset, "params": params,
        "tokens": task_label(params), "permute_seed": None, "seq_len": spec.seq_len,
        "vocab_size": spec.vocab_size, "num_features": cfg.embed_dim or DEFAULT_EMBED_DIM,
        "classes": list(range(spec.num_classes)), "metric": spec.metric,
        "labelled_per_sequence": spec.labelled, "sizes": sizes, "split_seeds": seeds,
        "baseline": dataclasses.asdict(base),
        "sha256": {s: split_digest(ds) for s, ds in sets.items()},
    }
    splits_record = {
        "task": cfg.dataset, "params": params, "sizes": sizes, "split_seeds": seeds,
        "sha256": data_cfg["sha256"],
        "note": "each split is tasks.make(task, size, split_seed, **params); sha256 of its x then y",
    }
    return sets["train"], sets.get("val"), sets.get("test"), data_cfg, splits_record


def _check_not_empty(cfg: TrainConfig, parts: dict[str, DataSplit]) -> None:
    """Refuse a split of no images before anything is computed from it (an empty training set
    has no statistics; an empty validation or test split scores NaN)."""
    info = parts["train"].info
    sizes, where = info.sizes, info.source
    pool = sizes["train"] + sizes["val"]
    if sizes["train"] == 0:
        if pool == 0:
            raise ValueError(f"{cfg.dataset}: the training split has 0 images: {where} holds none")
        raise ValueError(f"{cfg.dataset}: the training split has 0 images: --val-fraction "
                         f"{cfg.val_fraction} carves all {pool} training images of {where} for "
                         f"validation; lower it")
    if "val" in parts and sizes["val"] == 0:
        largest = int(torch.bincount(parts["train"].labels).max())
        raise ValueError(f"{cfg.dataset}: the validation split has 0 images: --val-fraction "
                         f"{cfg.val_fraction} takes round({cfg.val_fraction} * n) of each class's "
                         f"n images, and the largest class of the {pool} training images has "
                         f"{largest} ({where}); use --val-fraction at least "
                         f"{_round_up(0.5 / largest)}, or 0 for no validation split")
    if "test" in parts and len(parts["test"].labels) == 0:
        raise ValueError(f"{cfg.dataset}: the test split has 0 images ({info.test_split}; "
                         f"{where}): remove its empty files to train without a test split")


def _round_up(x: float) -> float:
    """``x > 0`` rounded up to two significant digits (a limit to quote that is safe to use)."""
    scale = 10.0 ** (math.floor(math.log10(x)) - 1)
    return round(math.ceil(x / scale) * scale, 12)


def _indices_summary(indices) -> dict | None:
    if indices is None:
        return None
    arr = np.asarray(indices, dtype=np.int64)
    return {"count": int(arr.size), "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}


def _check_resumable(now: dict, run: dict, world: int) -> None:
    """Refuse to continue a run whose model, data or process count would not be the same."""
    was = run["distributed"]["world_size"]
    if was != world:
        raise ValueError(f"the run was trained on {was} process(es); resume it on {was} "
                         f"(now {world}) to continue it exactly")
    if now["model"]["resolved"] != run["model"]["resolved"]:
        raise ValueError(f"the model this code builds, {now['model']['resolved']}, is not the "
                         f"run's {run['model']['resolved']} (have the model's defaults changed?)")
    if "task" in now["data"] or "task" in run["data"]:
        differ = rf.first_difference(rf.as_json(run["data"]), rf.as_json(now["data"]))
        if differ:
            raise ValueError(f"the task data drawn now differ from the run's ({differ}, the "
                             f"run against now)")
        return
    keys = ("image_shape", "mean", "std", "seq_len", "num_features")
    if any(now["data"][k] != run["data"][k] for k in keys) or \
            now["data"]["info"]["sizes"] != run["data"]["info"]["sizes"]:
        raise ValueError(f"the data read now ({now['data']['info']['source']}) differ from the "
                         f"run's ({run['data']['info']['source']}): sizes or statistics changed")


# ----------------------------------------------------------------------------------------------
# 3. Model
# ----------------------------------------------------------------------------------------------

def _model(cfg: TrainConfig, input_dim: int, num_classes: int, dev: torch.device, seq_len: int,
           vocab_size: int | None = None):
    """The model, seeded by ``cfg.seed``, on ``dev`` in ``cfg.dtype``; and what the run records
    of it (``config["model"]``), with ``state_floats``: the floats carried token to token per
    sequence (attention's KV cache after ``seq_len`` tokens). ``vocab_size`` (a memory task): int
    tokens through an embedding of width ``input_dim``, logits at every position
    (``models.SequenceModel``); the parameter budget of ``match_params`` then counts the
    embedding too."""
    kwargs = dict(cfg.model_cfg)
    tokens = {} if vocab_size is None else {"vocab_size": vocab_size, "outputs": "per_position"}
    try:
        if cfg.match_params is not None:
            kwargs[width_key(cfg.model)] = match_hidden_size(cfg.model, cfg.match_params, input_dim,
                                                             num_classes, **tokens, **kwargs)
        rf.seed_everything(cfg.seed)
        model = build(cfg.model, input_dim, num_classes, **tokens, **kwargs)
    except TypeError as exc:  # an unknown keyword in --model-cfg
        raise ValueError(f"--model-cfg {cfg.model_cfg} does not fit model {cfg.model!r}: {exc}") from None
    model_config = getattr(getattr(model, "body", model) if tokens else model, "config", None)
    resolved = dataclasses.asdict(model_config) if dataclasses.is_dataclass(model_config) else kwargs
    resolved = {k: v for k, v in resolved.items() if k not in ("input_dim", "num_classes")}
    record = {"name": cfg.model, "input_dim": input_dim, "num_classes": num_classes,
              "cfg": kwargs, "resolved": resolved, "class": type(model).__name__,
              "backend": getattr(model_config, "resolved_backend", None),
              "params": count_parameters(model), **tokens,
              "state_floats": state_size(model, seq_len=seq_len)}
    return model.to(device=dev, dtype=DTYPES[cfg.dtype]), record


def model_from_config(model_cfg: dict, dtype: str) -> torch.nn.Module:
    """The model a run's ``config["model"]`` section describes, freshly initialised (a memory
    task's, with ``vocab_size`` and ``outputs`` recorded, behind its token embedding)."""
    tokens = {k: model_cfg[k] for k in ("vocab_size", "outputs") if k in model_cfg}
    model = build(model_cfg["name"], model_cfg["input_dim"], model_cfg["num_classes"], **tokens,
                  **model_cfg["resolved"])
    return model.to(DTYPES[dtype])


# ----------------------------------------------------------------------------------------------
# 4. Optimiser and schedule
# ----------------------------------------------------------------------------------------------

def _schedule(cfg: TrainConfig, n_train: int) -> dict:
    """Optimiser steps per epoch and in all, and warm-up steps (``config["schedule"]``) for
    ``n_train`` training sequences per process."""
    if cfg.optimizer == "lbfgs":  # one full-batch step an epoch, at a constant step size
        steps_per_epoch, warmup = 1, 0
    else:
        steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.optimizer != "lbfgs":
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_frac * total)
    return {"steps_per_epoch": steps_per_epoch, "total_steps": total,
            "warmup_steps": min(warmup, total)}


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of the base lr at optimiser step ``step`` (0-based): linear warm-up, cosine."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(module: torch.nn.Module, cfg: TrainConfig) -> list:
    """The optimiser's parameter groups: every parameter at ``cfg.lr``, or with
    ``cfg.memory_lr_scale != 1`` the head at ``lr`` and the QLAM memory at ``lr · scale``
    (:func:`frozen.memory_param_groups`; at ``0`` the memory is frozen and left out)."""
    if cfg.memory_lr_scale == 1.0:
        return [{"params": list(module.parameters()), "lr": cfg.lr}]
    return frozen.memory_param_groups(module, cfg.lr, cfg.memory_lr_scale)


def make_optimizer(module: torch.nn.Module, cfg: TrainConfig, schedule: dict):
    """``(optimizer, scheduler)``: AdamW over :func:`param_groups` with the warm-up + cosine
    ``LambdaLR`` of ``schedule`` (``config["schedule"]``); or, for ``optimizer="lbfgs"``, L-BFGS
    over the head of a frozen memory at a constant step size. Call it before DDP wraps the
    module: DDP registers only the parameters that require gradients, and this freezes some."""
    groups = param_groups(module, cfg)
    if cfg.optimizer == "lbfgs":  # the frozen memory leaves the head, its one group
        optimizer = frozen.lbfgs_optimizer(module, cfg.lr, cfg.lbfgs_iters)
        factor = lambda s: 1.0  # noqa: E731
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup, total = schedule["warmup_steps"], schedule["total_steps"]
        factor = lambda s: lr_factor(s, warmup, total)  # noqa: E731
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----------------------------------------------------------------------------------------------
# Processes and devices
# ----------------------------------------------------------------------------------------------

@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> _Dist:
        """This process's place as ``torchrun`` (or ``--nproc``) describes it in the environment."""
        env = os.environ
        return cls(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")),
                   int(env.get("LOCAL_RANK", "0")))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values, device) -> list[float]:
        """Element-wise sum over processes of a list of numbers."""
        if self.world == 1:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def max(self, value: float, device) -> float:
        if self.world == 1:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def param_spread(self, module, device) -> float:
        """Largest difference of any parameter between processes (0.0 when DDP keeps them in sync)."""
        flat = torch.cat([(torch.view_as_real(p) if p.is_complex() else p).detach().reshape(-1)
                          .to(device=device, dtype=torch.float64) for p in module.parameters()])
        hi, lo = flat.clone(), flat.clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        return (hi - lo).max().item()


def resolve_device(name: str, d: _Dist | None = None) -> torch.device:
    """``auto`` (CUDA if torch sees it), ``cpu`` or ``cuda`` (this process's GPU under DDP)."""
    d = d or _Dist()
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", d.local_rank if d.world > 1 else torch.cuda.current_device())


# ----------------------------------------------------------------------------------------------
# 5. The loop
# ----------------------------------------------------------------------------------------------

def fit(p: Prepared, run_dir, *, stop_after: int | None = None, progress: bool = True,
        take_folder: bool = True) -> dict:
    """Train ``p`` into ``run_dir``; returns a summary dict.

    ``run_dir``: a :class:`runfolder.RunFolder` the caller holds, or a path that rank 0 takes
    for the run (a new folder, or for ``p.resume`` the run's own) and lets go at the end;
    ``take_folder=False``: the path is held by the process that started this one (``--nproc``).
    Only rank 0 writes the folder. ``stop_after``: the last epoch to train (>= 1).
    """
    d, dev = p.dist, p.device
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int)
                                   or stop_after < 1):
        raise ValueError(f"stop_after must be an int >= 1, got {stop_after!r}: a run stopped before "
                         f"its first epoch ends leaves no checkpoint to resume")
    folder = None
    if isinstance(run_dir, rf.RunFolder):
        run_dir = run_dir.path
    elif d.main and take_folder:
        folder = rf.RunFolder.create(run_dir) if p.resume is None else rf.RunFolder.reopen(run_dir)
        run_dir = folder.path
    backend, owned = None, False
    try:
        if d.world > 1:
            if not dist.is_initialized():
                if dev.type == "cuda":
                    torch.cuda.set_device(dev)
                dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
                owned = True
            backend = dist.get_backend()
        try:
            out = _fit(p, Path(run_dir), backend, stop_after, progress)
        except BaseException:
            if owned:
                dist.destroy_process_group()
            raise
        if owned:
            # Leave together: a rank that tears down its gloo group (rank 0 hosts the store)
            # while another is still using it can abort the other at exit.
            dist.barrier()
            dist.destroy_process_group()
    finally:
        if folder is not None:
            folder.release()
    return out


def _fit(p: Prepared, run_dir: Path, backend, stop_after, progress) -> dict:
    cfg, d, dev, dtype = p.cfg, p.dist, p.device, DTYPES[p.cfg.dtype]
    module, show = p.model, progress and d.main

    # Optimiser, then the DDP wrapper (which needs to know what is frozen).
    optimizer, scheduler = make_optimizer(module, cfg, p.config["schedule"])
    model = module if d.world == 1 else torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[dev.index] if dev.type == "cuda" else None)

    # Where the run starts: seeded afresh, or where last.pt left it. The loader draws one number
    # per epoch for worker seeds; a generator of its own keeps the global stream (dropout)
    # untouched by it.
    loader_gen = torch.Generator()
    rf.seed_everything(cfg.seed + d.rank)  # per-process streams (dropout), reproducible
    loader_gen.manual_seed(cfg.seed + d.rank)
    env = rf.environment(dev, d.world, backend)
    history, best, epoch, step = [], None, 0, 0
    if p.resume is not None:
        ck = p.resume
        rf.load_weights(module, ck["model"], run_dir / "last.pt", nonfinite="error")
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        epoch, step, best, history = ck["epoch"], ck["global_step"], ck["best"], list(ck["history"])
        rf.set_rng_state(ck["rng"][d.rank], loader_gen)
        if d.main and (run_dir / "env.json").is_file():
            previous = json.loads((run_dir / "env.json").read_text())
            env["previous_sessions"] = previous.pop("previous_sessions", []) + [previous]

    # Data: the token sequences through the whole model; or, with a cached frozen memory, its
    # features (computed once, after a resume has loaded its weights) through the head alone.
    sets = {"train": p.train_set, "val": p.val_set, "test": p.test_set}
    trained, scored, cache_s = model, module, 0.0  # what trains, what evaluate() scores
    if cfg.cache_memory:
        t0 = time.perf_counter()
        trained, sets = frozen.cache_features(module, sets, cfg.batch_size, dev, dtype, show)
        scored = trained
        cache_s = env["memory_cache_s"] = time.perf_counter() - t0
    sampler = DistributedSampler(sets["train"], num_replicas=d.world, rank=d.rank, shuffle=True,
                                 seed=cfg.seed)
    loader = DataLoader(sets["train"], batch_size=cfg.batch_size, sampler=sampler,
                        generator=loader_gen)
    val_loader, test_loader = (None if sets[k] is None else
                               DataLoader(_shard(sets[k], d), batch_size=cfg.batch_size)
                               for k in ("val", "test"))
    if cfg.optimizer == "lbfgs":  # the whole training set is one batch, moved to the device once
        full_batch = [t.to(dev) for t in sets["train"].tensors]

    if d.main:  # the run folder (taken by fit) says what the run is before its first epoch
        rf.atomic_write_json(run_dir / "config.json", p.config)
        rf.atomic_write_json(run_dir / "splits.json", p.splits_record)
        rf.atomic_write_json(run_dir / "env.json", env)

    # The loop: train an epoch, score it, checkpoint it.
    tokens_per_seq = p.config["data"]["seq_len"]
    last_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    while epoch < last_epoch:
        epoch += 1
        sampler.set_epoch(epoch)
        trained.train()
        if d.world > 1:
            dist.barrier()  # rank 0's writes of the last epoch are not this epoch's time
        t0 = time.perf_counter()
        if cfg.optimizer == "lbfgs":  # one full-batch step
            stats = frozen.lbfgs_epoch(trained, optimizer, *full_batch, cfg.weight_decay)
            _check_finite(stats["loss_sum"], f"epoch {epoch}", run_dir)
            step += 1
        else:  # minibatch steps
            bar = tqdm(total=len(loader), desc=f"epoch {epoch}/{cfg.epochs}", file=sys.stderr,
                       disable=not show, leave=False, dynamic_ncols=True)
            stats, step = _train_epoch(trained, loader, optimizer, scheduler, cfg.clip, dev, dtype,
                                       epoch, step, run_dir, bar, tokens_per_seq * d.world)
            bar.close()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        # The frozen memory's one pass over the data counts as this session's first epoch's time.
        train_time = d.max(time.perf_counter() - t0, dev) + cache_s
        # Score the epoch: training sums over processes, then the validation split.
        tr = _scores(d, stats, dev)
        # sequences, not scored positions: a memory task scores a few positions of each
        sequences = d.sum([stats.get("sequences", stats["n"])], dev)[0]
        row = {"epoch": epoch, "step": step, "train_loss": tr["loss"], "train_acc": tr["acc"],
               "val_loss": None, "val_acc": None, "lr": scheduler.get_last_lr()[0],
               "tokens_per_s": sequences * tokens_per_seq / train_time, "train_time_s": train_time}
        if val_loader is not None:
            va = _scores(d, evaluate(scored, val_loader, dev, dtype), dev)
            row.update(val_loss=va["loss"], val_acc=va["acc"])
        if d.world > 1:
            row["rank_param_spread"] = d.param_spread(module, dev)
        row["epoch_time_s"] = d.max(time.perf_counter() - t0, dev) + cache_s
        cache_s = 0.0
        history.append(row)
        # without a validation split the best checkpoint is the last one
        improved = row["val_acc"] is None or best is None or row["val_acc"] > best["val_acc"]
        if improved:
            best = {"epoch": epoch, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}

        # Checkpoint it (every rank's generators, gathered by all ranks; rank 0 writes).
        states = d.gather(rf.rng_state(loader_gen))
        if d.main:
            ckpt = {"config": p.config, "model": module.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "epoch": epoch, "global_step": step, "best": best, "history": history,
                    "rng": states, "threads": torch.get_num_threads()}
            _write_epoch(p, run_dir, ckpt, improved)

    summary = {"run_dir": str(run_dir), "epochs_done": epoch, "complete": epoch >= cfg.epochs,
               "params": p.config["model"]["params"], "best": best, "test": None}
    if epoch < cfg.epochs:
        if d.main:
            print(f"stopped after epoch {epoch} of {cfg.epochs}; continue with "
                  f"--resume {run_dir}", flush=True)
        return summary
    # Evaluation: the best checkpoint on the test split.
    summary["test"] = _test(p, run_dir, module, scored, test_loader, best, history)
    return summary


def _inputs(x: torch.Tensor, device, dtype) -> torch.Tensor:
    """A batch's inputs on ``device``: features in the run's ``dtype``, int tokens as they are."""
    return x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)


def _loss_and_hits(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``(mean loss, correct, scored)`` of a batch: one label per sequence (logits ``(B, C)``),
    or per-position logits ``(B, T, C)`` scored where ``y != -100`` only."""
    if logits.dim() == 3:
        loss = per_position_loss(logits, y)
        correct, scored = count_correct(logits.detach(), y)
        return loss, correct, scored
    return F.cross_entropy(logits, y), int((logits.detach().argmax(-1) == y).sum()), len(y)


def _train_epoch(model, loader, optimizer, scheduler, clip, device, dtype, epoch: int, step: int,
                 run_dir: Path, bar, tokens_per_seq: int) -> tuple[dict, int]:
    """One pass of minibatch steps over ``loader``: ``({"loss_sum", "correct", "n",
    "sequences"}, step)`` with ``n`` the scored positions (one per sequence for a sequence label)
    and ``step`` the optimiser steps taken in all; ``tokens_per_seq`` (over every process) only
    feeds the progress bar's throughput."""
    loss_sum, correct, seen, sequences = 0.0, 0, 0, 0
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = _inputs(x, device, dtype), y.to(device)
        logits = model(x)
        loss, hits, scored = _loss_and_hits(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        step += 1
        value = loss.item()
        _check_finite(value, f"epoch {epoch}, step {step}", run_dir)
        loss_sum += value * scored
        correct += hits
        seen += scored
        sequences += len(y)
        elapsed = time.perf_counter() - t0
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                        tok_s=f"{sequences * tokens_per_seq / max(elapsed, 1e-9):,.0f}", refresh=False)
        bar.update()
    return {"loss_sum": loss_sum, "correct": correct, "n": seen, "sequences": sequences}, step


def _check_finite(loss: float, where: str, run_dir: Path) -> None:
    if not math.isfinite(loss):
        last = run_dir / "last.pt"
        if last.is_file():
            raise FloatingPointError(f"loss is {loss} at {where}; the last good state is {last}")
        raise FloatingPointError(f"loss is {loss} at {where}: " + rf.no_checkpoint_message(run_dir))


def _shard(dataset, d: _Dist):
    return dataset if d.world == 1 else Subset(dataset, range(d.rank, len(dataset), d.world))


# ----------------------------------------------------------------------------------------------
# 6. Evaluation
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, loader, device, dtype, after_batch=None) -> dict:
    """Summed cross-entropy, correct predictions and count over ``loader``: per sequence, or for
    per-position logits (a memory task) over the labelled positions (``n`` counts those).

    ``after_batch(model)``, if given, is called after each batch's forward (e.g. to read what
    that forward recorded on the model).
    """
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        x, y = _inputs(x, device, dtype), y.to(device)
        logits = model(x)
        if after_batch is not None:
            after_batch(model)
        if logits.dim() == 3:
            loss, hits, scored = _loss_and_hits(logits, y)
            loss_sum += loss.item() * scored
        else:
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            hits, scored = int((logits.argmax(-1) == y).sum()), len(y)
        correct += hits
        n += scored
    return {"loss_sum": loss_sum, "correct": correct, "n": n}


def _scores(d: _Dist, stats: dict, device) -> dict:
    """Loss and accuracy over every process from summed ``{"loss_sum", "correct", "n"}``."""
    loss_sum, correct, n = d.sum([stats["loss_sum"], stats["correct"], stats["n"]], device)
    return {"loss": loss_sum / n if n else float("nan"), "acc": correct / n if n else float("nan"),
            "n": int(n)}


def _test(p: Prepared, run_dir: Path, module, scored, test_loader, best: dict,
          history: list) -> dict | None:
    """``best.pt`` scored on the test split (``None`` without one); rank 0 writes the final
    metrics and prints the summary."""
    d, dev, cfg = p.dist, p.device, p.cfg
    test = None
    if test_loader is not None:
        if d.main:
            best_pt = run_dir / "best.pt"
            rf.load_weights(module, rf.load_checkpoint(best_pt)["model"], best_pt)
        if d.world > 1:  # rank 0 alone reads the run folder
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, 0)
        te = _scores(d, evaluate(scored, test_loader, dev, DTYPES[cfg.dtype]), dev)
        test = {"acc": te["acc"], "loss": te["loss"], "n": te["n"], "checkpoint": "best.pt",
                "epoch": best["epoch"]}
    if d.main:
        rf.atomic_write_json(run_dir / "metrics.json", _metrics_doc(p, history, best, test, True))
        if best["val_acc"] is not None:
            print(f"best val accuracy {best['val_acc']:.4f} (epoch {best['epoch']})")
        if test is not None:
            print(f"test accuracy {test['acc']:.4f} (n={test['n']}, best.pt from epoch "
                  f"{test['epoch']})")
        else:
            print(f"no test split for {cfg.dataset} here: validation scores only")
        print(f"run folder: {run_dir}", flush=True)
    return test


# ----------------------------------------------------------------------------------------------
# The run folder's per-epoch files
# ----------------------------------------------------------------------------------------------

def _write_epoch(p: Prepared, run_dir: Path, ckpt: dict, improved: bool) -> None:
    """Checkpoint(s), metrics and curves after an epoch, and its line on stdout (rank 0)."""
    history, best, row = ckpt["history"], ckpt["best"], ckpt["history"][-1]
    rf.save_checkpoint(run_dir / "last.pt", ckpt)
    if improved:
        rf.save_checkpoint(run_dir / "best.pt", ckpt)
    rf.atomic_write_json(run_dir / "metrics.json", _metrics_doc(p, history, best, None, False))
    rf.atomic_write_csv(run_dir / "metrics.csv", history)
    cfg = p.cfg
    _write_curves(run_dir / "curves.png", history,
                  f"{cfg.model} on {cfg.dataset} ({p.config['data']['tokens']}), seed {cfg.seed}")
    val = "" if row["val_acc"] is None else \
        f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
    print(f"epoch {row['epoch']}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
          f"acc {row['train_acc']:.4f}{val}  lr {row['lr']:.2e}  "
          f"{row['tokens_per_s']:,.0f} tok/s  {row['epoch_time_s']:.1f}s", flush=True)


def _write_curves(path: Path, history: list[dict], title: str) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        warnings.warn("matplotlib is not installed: no curves.png (pip install matplotlib)",
                      stacklevel=2)
        return
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    epochs = [r["epoch"] for r in history]
    for ax, key, label in zip(fig.subplots(1, 2), ("loss", "acc"), ("cross-entropy", "accuracy")):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], "o-", ms=3, label="train")
        if any(r.get(f"val_{key}") is not None for r in history):
            ax.plot(epochs, [r[f"val_{key}"] for r in history], "s-", ms=3, label="val")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    rf.atomic_write_bytes(path, buf.getvalue())


def _metrics_doc(p: Prepared, history, best, test, complete) -> dict:
    return {"params": p.config["model"]["params"], "epochs_planned": p.cfg.epochs,
            "complete": complete, "best": best, "test": test, "epochs": history}


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

_D = TrainConfig()


def build_parser() -> run_config.OptionParser:
    ap = run_config.OptionParser(
        prog="qlam train", description="Train a sequence classifier; writes a run folder.",
        epilog="With --resume RUN_DIR the run's own configuration is used; options that "
               "contradict it are refused (--data-dir may change).",
        argument_default=argparse.SUPPRESS)
    ap.add_argument("--config", metavar="FILE",
                    help="a TOML file of these options, keyed by the names below without dashes and "
                         "with _ for - (model = \"gru\", epochs = 20, model_cfg = {n_qubits = 8}); flags "
                         "given on the command line override it")
    g = ap.add_argument_group("what to train")
    g.add_argument("--model", help=f"{' | '.join(available())} (default {_D.model})")
    g.add_argument("--dataset", help=f"{' | '.join(DATASETS)}, or a memory task: {' | '.join(TASKS)} "
                                     f"(default {_D.dataset})")
    g.add_argument("--data-cfg", dest="data_cfg", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="a memory task's parameters (e.g. seq_len=64 num_pairs=4 vocab_size=128 for "
                        "mqar; see docs/tasks.md); a key given twice takes its last value")
    g.add_argument("--n-train", dest="n_train", type=int, metavar="N",
                   help="a memory task: training sequences to draw (required for a task)")
    g.add_argument("--n-val", dest="n_val", type=int, metavar="N",
                   help="a memory task: validation sequences (default: no validation split)")
    g.add_argument("--n-test", dest="n_test", type=int, metavar="N",
                   help="a memory task: test sequences (default: no test split)")
    g.add_argument("--embed-dim", dest="embed_dim", type=int, metavar="E",
                   help=f"a memory task: width of the token embedding the model reads "
                        f"(default {DEFAULT_EMBED_DIM})")
    g.add_argument("--data-dir", dest="data_dir", help="folder with the dataset's files")
    g.add_argument("--tokens", help=f"pixel | row | patchK | permuted (default {_D.tokens})")
    g.add_argument("--permute-seed", dest="permute_seed", type=int,
                   help="permute the token order with this seed (permuted: 0)")
    g.add_argument("--model-cfg", dest="model_cfg", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="keyword arguments of the model (ints, floats, true/false, none parsed); a key "
                        "given twice takes its last value, so a script can override a base list")
    g.add_argument("--match-params", dest="match_params", type=int, metavar="N",
                   help="set the model's width so that it has about N parameters")
    g.add_argument("--dtype", choices=sorted(DTYPES), help=f"(default {_D.dtype})")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help=f"(default {_D.epochs})")
    g.add_argument("--batch-size", dest="batch_size", type=int,
                   help=f"per process (default {_D.batch_size})")
    g.add_argument("--lr", type=float, help=f"peak learning rate (default {_D.lr})")
    g.add_argument("--memory-lr-scale", dest="memory_lr_scale", type=float, metavar="X",
                   help="QLAM only: the quantum memory's learning rate as a multiple of --lr (the head keeps "
                        "--lr); 0 freezes the memory at its initialisation, so only the readout head trains "
                        f"(default {_D.memory_lr_scale})")
    g.add_argument("--cache-memory", dest="cache_memory", action="store_true",
                   help="with --memory-lr-scale 0: run the frozen memory once over the data before the "
                        "first epoch and train the head on its features (same result, the memory's cost "
                        "paid once instead of every epoch)")
    g.add_argument("--weight-decay", dest="weight_decay", type=float,
                   help=f"AdamW weight decay; with lbfgs an L2 penalty (default {_D.weight_decay})")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="adamw (minibatches, schedule, clipping) or, with --cache-memory only, lbfgs: the "
                        "head fitted on all cached features at once, --lbfgs-iters iterations per epoch, "
                        f"step --lr (1 is L-BFGS's usual), no schedule or clipping (default {_D.optimizer})")
    g.add_argument("--lbfgs-iters", dest="lbfgs_iters", type=int, metavar="K",
                   help=f"L-BFGS iterations per epoch (default {_D.lbfgs_iters})")
    g.add_argument("--warmup-steps", dest="warmup_steps", type=int,
                   help="linear warm-up steps (overrides --warmup-frac)")
    g.add_argument("--warmup-frac", dest="warmup_frac", type=float,
                   help=f"warm-up as a fraction of all steps (default {_D.warmup_frac})")
    g.add_argument("--clip", type=_float_or_none,
                   help=f"max gradient norm, or none (default {_D.clip})")
    g.add_argument("--seed", type=int, help=f"seeds init, data order and val split (default {_D.seed})")
    g.add_argument("--val-fraction", dest="val_fraction", type=float,
                   help=f"validation share of the training files (default {_D.val_fraction})")
    g.add_argument("--limit-train", dest="limit_train", type=int, metavar="N",
                   help="train on a seeded subset of N images (quick runs)")
    g.add_argument("--limit-val", dest="limit_val", type=int, metavar="N",
                   help="validate on a seeded subset of N validation images (quick runs)")
    g = ap.add_argument_group("run")
    g.add_argument("--out", help="runs directory (default runs)")
    g.add_argument("--name", help="run folder name, refused if the folder holds anything (default "
                                  "MODEL-DATASET-TOKENS-sSEED-TIME, with -2, -3, ... if taken)")
    g.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from last.pt (every file checked first)")
    g.add_argument("--stop-after", dest="stop_after", type=int, metavar="EPOCH",
                   help="stop after this epoch (>= 1), as a pre-empted job would (continue with "
                        "--resume)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), help="(default auto)")
    g.add_argument("--threads", type=int, help="torch CPU threads per process")
    g.add_argument("--nproc", type=int, help="local processes for DistributedDataParallel")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    return ap


def _float_or_none(raw: str):
    return None if raw.lower() in ("none", "null", "off") else float(raw)


_CONFIG_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, argv: list[str], world: int, port: int) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # all processes are on this machine
    code = main(argv, folder_held=True)  # the launching process holds the run folder
    # Exit without the interpreter's teardown: there, C++ destructors can meet a gloo thread still
    # joinable and abort ("terminate called without an active exception", SIGABRT) after a run
    # that finished and wrote everything (seen once in CI's 2-process test). Flush first.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def _spawn(argv: list[str], nproc: int) -> int:
    """Run ``main(argv)`` in ``nproc`` local processes joined over loopback."""
    import torch.multiprocessing as mp

    ctx = mp.start_processes(_worker, args=(argv, nproc, _free_port()), nprocs=nproc,
                             join=False, start_method="spawn")
    try:
        while not ctx.join():
            pass
    except mp.ProcessExitedException as exc:
        return exc.exit_code if exc.exit_code and exc.exit_code > 0 else 1
    except mp.ProcessRaisedException as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def _run_settings(args: dict, given: dict, take: bool):
    """``(cfg, run_dir, files, folder)`` of the command line: the configuration; the run folder;
    for ``--resume`` the run's files, every one checked (``runfolder.verify_run``), else ``None``;
    and, where ``take``, the folder taken by this process (``runfolder.RunFolder``), else ``None``.
    Raises ``ValueError``/``TypeError``/``FileNotFoundError``, holding no folder then."""
    folder = None
    try:
        if "resume" in args:
            if "out" in args or "name" in args:
                raise ValueError("--resume RUN_DIR names the run: drop --out and --name")
            run_dir = Path(args["resume"])
            # taken before the files are read, so that no other process writes them meanwhile
            folder = rf.RunFolder.reopen(run_dir) if take else None
            files = rf.verify_run(run_dir)
            try:
                stored = TrainConfig(**files.last["config"]["train"])
            except (TypeError, ValueError, RuntimeError) as exc:  # a value of another kind
                raise ValueError(f"{run_dir / 'last.pt'}: the training configuration it records "
                                 f"is not valid ({exc}): the checkpoint was edited") from None
            clash = [f"--{k.replace('_', '-')} {v!r} (the run has {getattr(stored, k)!r})"
                     for k, v in given.items() if k != "data_dir" and getattr(stored, k) != v]
            if clash:
                raise ValueError("--resume continues the run's own configuration; these differ: "
                                 + "; ".join(clash))
            cfg = dataclasses.replace(stored, data_dir=given.get("data_dir", stored.data_dir))
            return cfg, run_dir, files, folder
        cfg = TrainConfig(**given)
        out, name = Path(args.get("out", "runs")), args.get("name")
        if name and (name in (".", "..") or "/" in name or os.sep in name):
            raise ValueError(f"--name {name!r}: a run folder's name, not a path (use --out for "
                             f"the folder that holds it)")
        if not name:
            what = cfg.dataset if cfg.is_task else f"{cfg.dataset}-{cfg.tokens}"
            name = f"{cfg.model}-{what}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
            if take:  # a name taken already (a parallel job, the same second) gets a suffix
                folder = rf.RunFolder.create_unique(out, name)
        elif take:
            folder = rf.RunFolder.create(out / name)
        return cfg, folder.path if folder is not None else out / name, None, folder
    except BaseException:
        if folder is not None:
            folder.release()
        raise


def _check_run_files(p: Prepared, run_dir: Path, files: rf.RunFiles) -> None:
    """Hold a resumed run's files against what its configuration builds now: ``splits.json``
    against the splits carved again, both checkpoints' tensors against the model."""
    recorded = {k: v for k, v in files.splits.items() if k != "note"}  # the note is prose
    differ = rf.first_difference(recorded, {k: v for k, v in rf.as_json(p.splits_record).items()
                                            if k != "note"})
    if differ:
        raise ValueError(f"{run_dir / 'splits.json'}: not the splits the run's configuration "
                         f"carves now ({differ}, splits.json against now): it was edited or is "
                         f"another run's: train the run again under another --name")
    for name, ckpt in (("last.pt", files.last), ("best.pt", files.best)):
        rf.check_weights(p.model, ckpt["model"], run_dir / name, nonfinite="error")
    _check_training_state(p, run_dir / "last.pt", files.last)


def _check_training_state(p: Prepared, path: Path, ckpt: dict) -> None:
    """Restore the optimiser, schedule and generator states of ``ckpt`` into a throwaway copy of
    the model and take one step with zero gradients: a state that would fail (or give NaN) in
    the resumed run's first step fails now, naming ``path``. The global generators are left as
    they were."""
    model = copy.deepcopy(p.model)
    saved = rf.rng_state()
    try:
        optimizer, scheduler = make_optimizer(model, p.cfg, p.config["schedule"])
        # copies: load_state_dict keeps the checkpoint's tensors, and the step below changes them
        optimizer.load_state_dict(copy.deepcopy(ckpt["optimizer"]))
        scheduler.load_state_dict(copy.deepcopy(ckpt["scheduler"]))
        rf.set_rng_state(ckpt["rng"][p.dist.rank], torch.Generator())
        if p.cfg.optimizer != "lbfgs":  # L-BFGS steps need a closure over the data
            for q in model.parameters():
                q.grad = torch.zeros_like(q)
            optimizer.step()
            scheduler.step()
        states = [v for state in optimizer.state.values() for v in state.values()
                  if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())]
        lrs = scheduler.get_last_lr()
        if not all(isinstance(lr, float) and math.isfinite(lr) for lr in lrs) or \
                not all(bool(torch.isfinite(v).all()) for v in states):
            raise ValueError("a learning rate or a moment that is not a finite number")
    except Exception as exc:  # noqa: BLE001 - a trial on a copy: whatever fails here would fail the run
        raise ValueError(f"{path}: its optimiser, schedule or generator states do not restore "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): "
                         f"the checkpoint was edited; train the run again under another "
                         f"--name") from None
    finally:
        rf.set_rng_state(saved)


def main(argv=None, *, folder_held: bool = False) -> int:
    """``qlam train``. ``folder_held``: the process that started this one holds the run folder
    (``--nproc``); this one writes it without taking it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        argv = run_config.with_config_file(argv, parser)  # the command line after the file's flags
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    args = vars(parser.parse_args(argv))
    given = {k: v for k, v in args.items() if k in _CONFIG_KEYS}
    nproc = args.get("nproc", 1)
    if nproc < 1:
        parser.error(f"--nproc must be >= 1, got {nproc}")
    if args.get("threads") is not None and args["threads"] < 1:
        parser.error(f"--threads must be >= 1, got {args['threads']}")
    stop_after = args.get("stop_after")
    if stop_after is not None and stop_after < 1:
        parser.error(f"--stop-after must be >= 1, got {stop_after}: a run stopped before its first "
                     f"epoch ends leaves no checkpoint to resume")

    # One process takes the run folder: rank 0, or the process that starts the --nproc ranks.
    take = _Dist.from_env().main and not folder_held
    try:
        if "model_cfg" in given:
            given["model_cfg"] = parse_model_cfg(given["model_cfg"])
        if "data_cfg" in given:
            given["data_cfg"] = run_config.parse_key_values(given["data_cfg"], "--data-cfg")
        cfg, run_dir, files, folder = _run_settings(args, given, take)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    try:
        return _train(parser, args, argv, nproc, cfg, run_dir, files, folder)
    finally:
        if folder is not None:
            folder.release()


def _train(parser, args: dict, argv: list, nproc: int, cfg: TrainConfig, run_dir: Path,
           files: rf.RunFiles | None, folder: rf.RunFolder | None) -> int:
    """The rest of :func:`main`, the run folder settled: start the ranks, or prepare and fit."""
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        if files is None:  # every process of a distributed run must agree on the folder
            argv = argv + ["--out", str(run_dir.parent), "--name", run_dir.name]
        return _spawn(argv, nproc)

    resume = None if files is None else files.last
    threads = args.get("threads")
    if threads is None and resume is not None:
        threads = resume["threads"]  # the same thread count keeps CPU arithmetic bitwise equal
    if threads is not None:
        torch.set_num_threads(threads)
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["WORLD_SIZE"])))
    try:
        prepared = prepare(cfg, args.get("device", "auto"), resume)
        if files is not None:
            _check_run_files(prepared, run_dir, files)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    try:
        fit(prepared, folder if folder is not None else run_dir, stop_after=args.get("stop_after"),
            progress=args.get("progress", True), take_folder=False)
    except KeyboardInterrupt:
        if prepared.dist.main:
            last = run_dir / "last.pt"
            where = (f"the last finished epoch is in {last}: continue with --resume {run_dir}"
                     if last.is_file() else rf.no_checkpoint_message(run_dir))
            print(f"\ninterrupted; {where}", file=sys.stderr)
        return 130
    except FloatingPointError as exc:
        print(f"qlam train: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
