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
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys

import torch

from qlam_tn.experiments import runfolder as rf
from qlam_tn.experiments.data import load_splits
from qlam_tn.experiments.train import DTYPES, evaluate, make_dataset, model_from_config, \
    resolve_device


def score(checkpoint, dataset: str | None = None, data_dir=None, split: str = "test",
          batch_size: int = 256, device: str = "auto") -> dict:
    """``{"accuracy", "n", "loss"}`` of the model in ``checkpoint`` on ``split``.

    Raises ``ValueError`` for a checkpoint that fails verification or a dataset that does not
    fit the model (image shape, classes), ``FileNotFoundError`` for missing files.
    """
    ckpt = rf.load_checkpoint(checkpoint)
    config = ckpt["config"]
    train_cfg, data_cfg = config["train"], config["data"]
    dataset = dataset or data_cfg["dataset"]
    data_dir = data_dir if data_dir is not None else train_cfg["data_dir"]
    if split == "val" and train_cfg["val_fraction"] == 0:
        raise ValueError(f"{checkpoint}: the run had no validation split (val_fraction 0)")
    part = load_splits(dataset, data_dir, (split,), train_cfg["val_fraction"],
                       train_cfg["seed"])[split]
    shape = list(part.info.image_shape)
    if shape != data_cfg["image_shape"]:
        raise ValueError(f"{dataset!r} has images of shape {shape}; the model in {checkpoint} "
                         f"was trained on {data_cfg['image_shape']}")
    if part.info.num_classes != config["model"]["num_classes"]:
        raise ValueError(f"{dataset!r} has {part.info.num_classes} classes; the model in "
                         f"{checkpoint} has {config['model']['num_classes']}")
    dev = resolve_device(device)
    model = model_from_config(config["model"], train_cfg["dtype"]).to(dev)
    model.load_state_dict(ckpt["model"])
    loader = torch.utils.data.DataLoader(make_dataset(part, data_cfg), batch_size=batch_size)
    stats = evaluate(model, loader, dev, DTYPES[train_cfg["dtype"]])
    n = stats["n"]
    return {"accuracy": stats["correct"] / n, "n": n, "loss": stats["loss_sum"] / n,
            "dataset": dataset, "split": split, "epoch": ckpt["epoch"]}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qlam eval", description="Score a checkpoint on a split.")
    ap.add_argument("--checkpoint", required=True, help="a best.pt or last.pt of a run")
    ap.add_argument("--dataset", help="dataset name (default: the run's)")
    ap.add_argument("--data-dir", help="folder with the dataset's files (default: the run's)")
    ap.add_argument("--split", choices=("test", "val"), default="test")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--json", action="store_true",
                    help='print only {"accuracy": ..., "n": ...} on stdout')
    return ap


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    # whatever a library prints while loading must not reach the JSON on stdout
    with contextlib.redirect_stdout(sys.stderr):
        try:
            result = score(args.checkpoint, args.dataset, args.data_dir, args.split,
                           args.batch_size, args.device)
        except (ValueError, FileNotFoundError) as exc:
            parser.error(str(exc))
    if args.json:
        print(json.dumps({"accuracy": result["accuracy"], "n": result["n"]}))
    else:
        print(f"accuracy {result['accuracy']:.4f} on {result['n']} {result['split']} images of "
              f"{result['dataset']} (loss {result['loss']:.4f}; {args.checkpoint}, epoch "
              f"{result['epoch']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
