"""Readout probe: does a QLAM memory hold more than its readout passes to the head?

For a trained statevector QLAM checkpoint (real amplitudes, ``ry`` encoding, a pooled readout:
``every``, ``attn`` or ``segments``), run the memory over real sequences and pool several
per-token feature sets of the same states, with the model's own attention weights (``attn``) or
the plain mean:

* ``model``: the features the model's head reads (e.g. its query heads and Bloch vectors);
* ``bloch``: ``(<X_q>, <Z_q>)`` of every qubit (2n numbers);
* ``rho_halves``: every entry of the reduced density matrices of the two qubit halves
  (``2 · d(d+1)/2`` numbers, ``d = 2^{n/2}``: 272 at n = 8) — every observable on either half;
* ``probs``: the computational-basis probabilities (``2^n`` numbers);
* ``bloch_segments``: the Bloch vectors averaged over each of ``S`` equal segments of the
  sequence (``S · 2n`` numbers): a readout that knows *when* the memory held what;
* ``tokens``: the raw tokens themselves (``T · F`` numbers), the linear-probe reference.

A linear probe (standardised multinomial logistic regression, scikit-learn) is fitted on each
pooled set over training images and scored on the run's validation split. If ``rho_halves`` or
``probs`` probe far above ``model``, the memory holds class information its readout does not
pass on. The same is done for a freshly initialised model of the same configuration
(``--memories trained random``) as a reservoir baseline; ``--encoding-scales`` draws one random
memory per encoding scale (the init std of the encoding weights), a sweep of how far the untrained
reservoir's rotations should reach. Everything here runs under ``no_grad`` on a dense state
(n <= 12).

    qlam probe RUN_DIR --data-dir DIR [--train 10000] [--val 6000] [--memories trained random]
        [--encoding-scales 0.01 0.03 0.1] [--out F.json] [--plot F.png]
"""
from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np
import torch
from tqdm import tqdm

from qlam_tn.dense_scan import gram_bloch, qubit_groups
from qlam_tn.experiments import runfolder as rf
from qlam_tn.experiments.data import load_splits
from qlam_tn.experiments.evaluate import load_model
from qlam_tn.experiments.train import make_dataset, model_from_config

FEATURE_SETS = ("model", "bloch", "rho_halves", "probs", "bloch_segments", "tokens")


def _triu(m: torch.Tensor) -> torch.Tensor:
    """Upper triangle (with the diagonal) of ``(..., d, d)`` -> ``(..., d(d+1)/2)``."""
    d = m.shape[-1]
    iu = torch.triu_indices(d, d)
    return m[..., iu[0], iu[1]]


@torch.no_grad()
def pooled_features(qlam, x: torch.Tensor, segments: int = 28) -> dict[str, torch.Tensor]:
    """Pooled feature sets ``{name: (B, D_name)}`` of tokens ``x (B, T, F)`` for a statevector QLAM
    (``segments`` equal parts of the sequence for ``bloch_segments``; T must be a multiple).

    The memory is stepped by the model's own token update (its statevector backend, the dense
    entangler built once), then every set is pooled with the model's own weights.
    """
    cfg = qlam.config
    if not (cfg.real and cfg.encoding == "ry" and not cfg.reupload and cfg.readout_at != "last"
            and qlam.backend == "statevector"):
        raise ValueError("the probe needs a real, ry-encoded, pooled statevector QLAM without re-uploading")
    if qlam.pool_memory is not None:
        raise ValueError("the probe does not support pool_memory (weights depend on the readout)")
    n = cfg.n_qubits
    b, t_len, _ = x.shape
    if t_len % segments:
        raise ValueError(f"{t_len} tokens do not split into {segments} equal segments")
    seg_len = t_len // segments
    na = qubit_groups(n)[0][1]
    da, db = 2 ** na, 2 ** (n - na)
    alpha = x.new_full((b, t_len), 1.0 / t_len) if qlam.pool is None else torch.softmax(qlam.token_scores(x), 1)
    memory, gates = qlam.new_memory(b, x.device), qlam.token_gates()
    sums = {"bloch": 0, "rho_halves": 0, "probs": 0}
    seg = x.new_zeros(b, segments, 2 * n)
    for t in range(t_len):
        qlam.update(memory, x[:, t], gates)
        psi = memory.psi.reshape(b, da, db)
        w = alpha[:, t, None]
        rho_a, rho_b = psi @ psi.transpose(1, 2), psi.transpose(1, 2) @ psi
        sums["rho_halves"] = sums["rho_halves"] + w * torch.cat((_triu(rho_a), _triu(rho_b)), 1)
        sums["probs"] = sums["probs"] + w * psi.reshape(b, -1) ** 2
        bloch = gram_bloch(psi.reshape(b, -1), n).reshape(b, -1)
        sums["bloch"] = sums["bloch"] + w * bloch
        seg[:, t // seg_len] += bloch / seg_len
    sums["bloch_segments"] = seg.flatten(1)
    sums["tokens"] = x.flatten(1)
    sums["model"] = qlam(x)
    return sums


def collect(qlam, dataset, limit: int, batch: int, seed: int, desc: str, segments: int,
            progress: bool = True) -> tuple[dict, np.ndarray]:
    """Pooled features of ``limit`` sequences of ``dataset`` (a seeded subset) and their labels."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:limit]
    feats, labels = {k: [] for k in FEATURE_SETS}, []
    with tqdm(total=len(idx), desc=desc, unit="seq", file=sys.stderr, disable=not progress) as bar:
        for i in range(0, len(idx), batch):
            xs, ys = zip(*(dataset[int(j)] for j in idx[i:i + batch]))
            f = pooled_features(qlam, torch.stack(xs).to(qlam.encoder.weight.dtype), segments)
            for k in FEATURE_SETS:
                feats[k].append(f[k].double().numpy())
            labels.append(torch.as_tensor(ys).numpy())
            bar.update(len(ys))
    return {k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(labels)


def probe(train: tuple, val: tuple, c: float, sets=FEATURE_SETS) -> dict[str, float]:
    """Validation accuracy of a standardised logistic regression per feature set in ``sets``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (ftr, ytr), (fva, yva) = train, val
    out = {}
    for k in sets:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        clf.fit(ftr[k], ytr)
        out[k] = {"dim": int(ftr[k].shape[1]), "train_acc": float(clf.score(ftr[k], ytr)),
                  "val_acc": float(clf.score(fva[k], yva))}
    return out


def plot(result: dict, path) -> None:
    """Bar chart of validation accuracy per readout, one bar group per memory, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    memories = result["memories"]
    sets = list(result[memories[0]])
    fig = Figure(figsize=(8 + 0.6 * max(0, len(memories) - 2), 3.6))
    ax = fig.add_subplot()
    width = 0.8 / len(memories)
    for j, mem in enumerate(memories):
        accs = [100 * result[mem][k]["val_acc"] for k in sets]
        ax.bar(np.arange(len(sets)) + (j - (len(memories) - 1) / 2) * width, accs, width, label=f"{mem} memory")
    ax.set_ylim(bottom=min(20.0, ax.get_ylim()[0]))
    dims = result[memories[0]]
    ax.set_xticks(np.arange(len(sets)), [f"{k}\n({dims[k]['dim']})" for k in sets], fontsize=8)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"linear probes of {result['run']} ({result['train']} training sequences)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, not over them
    fig.tight_layout()
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    rf.atomic_write_bytes(path, buf.getvalue())


def _at_least(lo: int):
    def parse(raw: str) -> int:
        value = int(raw)
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be an int >= {lo}, got {value}")
        return value
    return parse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="qlam probe",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a QLAM run folder or checkpoint (statevector backend)")
    ap.add_argument("--data-dir", default=None, help="dataset folder (default: the run's)")
    ap.add_argument("--train", type=_at_least(2), default=10000, help="training sequences for the probe")
    ap.add_argument("--val", type=_at_least(1), default=6000, help="validation sequences to score on")
    ap.add_argument("--batch", type=_at_least(1), default=500)
    ap.add_argument("--segments", type=_at_least(1), default=28, help="segments of bloch_segments")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the probe")
    ap.add_argument("--memories", nargs="+", choices=("trained", "random"), default=["trained"],
                    help="the run's trained memory and/or a freshly initialised one (seeded by the run's seed)")
    ap.add_argument("--encoding-scales", type=float, nargs="+", default=None, metavar="S",
                    help="with 'random': one random memory per encoding scale (init std of the encoding "
                         "weights, QLAMConfig.encoding_scale), instead of the run's own")
    ap.add_argument("--sets", nargs="+", choices=FEATURE_SETS, default=list(FEATURE_SETS),
                    help="the feature sets to fit a probe on (default: all; each fit costs seconds to minutes)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the results as JSON here (atomically)")
    ap.add_argument("--plot", default=None, help="write a bar chart (PNG) of the probes here")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.encoding_scales is not None:
        if "random" not in args.memories:
            ap.error("--encoding-scales draws random memories: add 'random' to --memories")
        bad = [s for s in args.encoding_scales if not (s >= 0 and np.isfinite(s))]
        if bad:
            ap.error(f"--encoding-scales must be finite and >= 0, got {bad}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.run)
    config = ckpt["config"]
    tcfg, dcfg = config["train"], config["data"]
    parts = load_splits(tcfg["dataset"], args.data_dir or tcfg["data_dir"], ("train", "val"),
                        tcfg["val_fraction"], tcfg["seed"])
    train_set, val_set = make_dataset(parts["train"], dcfg), make_dataset(parts["val"], dcfg)
    models = {}
    for name in dict.fromkeys(args.memories):
        if name == "trained":
            models[name] = model.qlam.eval()
        elif args.encoding_scales is None:
            torch.manual_seed(tcfg["seed"])
            models[name] = model_from_config(config["model"], tcfg["dtype"]).qlam.eval()
        else:
            for scale in dict.fromkeys(args.encoding_scales):
                cfg = {**config["model"], "resolved": {**config["model"]["resolved"], "encoding_scale": scale}}
                torch.manual_seed(tcfg["seed"])
                models[f"random, encoding_scale={scale:g}"] = model_from_config(cfg, tcfg["dtype"]).qlam.eval()
    result = {"run": str(args.run), "epoch": ckpt["epoch"], "train": args.train, "val": args.val, "C": args.C,
              "memories": list(models)}
    for name, qlam in models.items():
        progress = not args.no_progress
        tr = collect(qlam, train_set, args.train, args.batch, 0, f"{name} train", args.segments, progress)
        va = collect(qlam, val_set, args.val, args.batch, 1, f"{name} val", args.segments, progress)
        result[name] = probe(tr, va, args.C, list(dict.fromkeys(args.sets)))
        print(json.dumps({name: result[name]}, indent=1), flush=True)
    if args.out:
        rf.atomic_write_json(args.out, result)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
