"""Tune the readout head of a frozen-memory QLAM run on cached features.

A run trained with ``--memory-lr-scale 0`` keeps its quantum memory at its initialisation, so the
features its head sees are a fixed function of the image. This script computes them once (the
run's own ``model.qlam``, no gradients), then trains the run's head (``classifier_head``,
``head_hidden=0``) as the training loop would (AdamW, the run's batch size, warm-up + cosine
schedule, clipping, dtype and epochs) for a grid of learning rates and weight decays, each in
seconds. It scores a holdout
carved from the *training* images (seeded), so the choice never sees the validation split the
study reports; the validation accuracy of every setting is printed beside it for the record,
with a logistic-regression reference (scikit-learn, C=1, standardised) on the same features.

    python experiments/studies/frozen_head_sweep.py RUN_DIR --data-dir DATA [--holdout 6000]
        [--lr 0.003 0.01 0.03] [--wd 0 0.01 0.1] [--epochs E] [--cache F.npz] [--out F.json]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from qlam_tn.experiments import runfolder as rf
from qlam_tn.experiments.data import load_splits
from qlam_tn.experiments.evaluate import load_model
from qlam_tn.experiments.frozen import memory_features
from qlam_tn.experiments.train import DTYPES, lr_factor, make_dataset
from qlam_tn.models.qlam import classifier_head


def features(qlam, dataset, batch: int, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` head inputs (float64) and ``(N,)`` labels of every sequence of ``dataset``."""
    f, y = memory_features(qlam, dataset, batch, "cpu", qlam.encoder.weight.dtype, desc, progress=True).tensors
    return f.double().numpy(), y.numpy()


def train_head(mcfg: dict, tcfg: dict, f, y, lr: float, wd: float, classes: int):
    """The run's head (``classifier_head``) trained as ``qlam train`` trains it: AdamW, the run's
    batch size, warm-up and cosine schedule, gradient clipping and dtype, its number of epochs."""
    torch.manual_seed(tcfg["seed"])
    dtype = DTYPES[tcfg["dtype"]]
    head = classifier_head(f.shape[1], mcfg["head_hidden"], classes, mcfg["head_norm"]).to(dtype)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=wd)
    batch, epochs = tcfg["batch_size"], tcfg["epochs"]
    steps = epochs * -(-len(y) // batch)
    warmup = min(tcfg["warmup_steps"] if tcfg["warmup_steps"] is not None else round(tcfg["warmup_frac"] * steps), steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, steps))
    ft, yt = torch.from_numpy(f).to(dtype), torch.from_numpy(y).long()
    g = torch.Generator().manual_seed(tcfg["seed"])
    head.train()
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(yt), batch):
            idx = perm[i:i + batch]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = torch.nn.functional.cross_entropy(head(ft[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            if tcfg["clip"] is not None:
                torch.nn.utils.clip_grad_norm_(head.parameters(), tcfg["clip"])
            opt.step()
            sched.step()
    return head.eval()


def accuracy(head, f, y) -> float:
    with torch.no_grad():
        x = torch.from_numpy(f).to(next(head.parameters()).dtype)
        return float((head(x).argmax(1).numpy() == y).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--holdout", type=int, default=6000)
    ap.add_argument("--lr", type=float, nargs="+", default=[0.003, 0.01, 0.03])
    ap.add_argument("--wd", type=float, nargs="+", default=[0.0, 0.01, 0.1])
    ap.add_argument("--epochs", type=int, default=None, help="head epochs (default: the run's)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--cache", default=None, help="features .npz (computed and written if absent)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    model, ckpt = load_model(args.run)
    config = ckpt["config"]
    tcfg, dcfg, mcfg = config["train"], config["data"], config["model"]["resolved"]
    if args.epochs is not None:
        if args.epochs < 1:
            raise SystemExit(f"--epochs must be >= 1, got {args.epochs}")
        tcfg = {**tcfg, "epochs": args.epochs}
    if tcfg.get("memory_lr_scale", 1.0) != 0 or mcfg.get("head_hidden") != 0:
        raise SystemExit(f"{args.run}: not a frozen-memory run with a linear head (--memory-lr-scale 0, head_hidden=0)")
    if args.cache and Path(args.cache).exists():
        z = np.load(args.cache)
        ftr, ytr, fva, yva = z["ftr"], z["ytr"], z["fva"], z["yva"]
    else:
        parts = load_splits(tcfg["dataset"], args.data_dir or tcfg["data_dir"], ("train", "val"),
                            tcfg["val_fraction"], tcfg["seed"])
        qlam = model.qlam.eval()
        ftr, ytr = features(qlam, make_dataset(parts["train"], dcfg), args.batch, "train")
        fva, yva = features(qlam, make_dataset(parts["val"], dcfg), args.batch, "val")
        if args.cache:
            np.savez(args.cache, ftr=ftr, ytr=ytr, fva=fva, yva=yva)
    g = np.random.default_rng(tcfg["seed"])
    perm = g.permutation(len(ytr))
    hold, fit = perm[:args.holdout], perm[args.holdout:]
    classes = int(max(ytr.max(), yva.max())) + 1
    rows = []
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    lr_ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(ftr[fit], ytr[fit])
    ref = {"setting": "logistic regression C=1", "holdout": float(lr_ref.score(ftr[hold], ytr[hold])),
           "val": float(lr_ref.score(fva, yva))}
    print(f"| setting | holdout acc | val acc |\n|---|---|---|\n| {ref['setting']} | {ref['holdout']:.4f} | {ref['val']:.4f} |",
          flush=True)
    for lr in args.lr:
        for wd in args.wd:
            head = train_head(mcfg, tcfg, ftr[fit], ytr[fit], lr, wd, classes)
            row = {"setting": f"AdamW lr {lr:g} wd {wd:g}, {tcfg['epochs']} epochs", "lr": lr, "wd": wd,
                   "holdout": accuracy(head, ftr[hold], ytr[hold]), "val": accuracy(head, fva, yva)}
            rows.append(row)
            print(f"| {row['setting']} | {row['holdout']:.4f} | {row['val']:.4f} |", flush=True)
    best = max(rows, key=lambda r: r["holdout"])
    print(f"best on the holdout: lr {best['lr']:g}, wd {best['wd']:g}", flush=True)
    if args.out:
        rf.atomic_write_json(args.out, {"run": args.run, "fit": len(fit), "holdout": len(hold), "reference": ref,
                                        "rows": rows, "best": best})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
