"""``qlam entangle``: entanglement of a QLAM memory versus context length, on real data.

A QLAM memory (MPS backend) is fed one long sequence made by concatenating the token sequences
of real images (``--dataset``, ``--tokens``). After every token it records, for every bond, the
von Neumann and Renyi-2 entropies, and the accumulated discarded weight, for each ``(n, χ)``
asked for. Reference lines: the χ cap ``log2 χ``, the bipartition maximum ``min(k, n-k)`` bits
and the Page value of a Haar-random state.

Two modes:

* random (default): a randomly initialised QLAM (real mode, RY encoding, CZ brickwork, default
  encoding init) for every ``--n``; the concatenated sequence is standardised by its own mean
  and std.
* ``--checkpoint RUN_OR_PT``: the QLAM inside a ``qlam train`` checkpoint (a ``.pt`` or a run
  folder: its ``best.pt``), with the run's own configuration (n, entangler, depth, encoding, ...)
  rebuilt on the MPS backend at each ``--chi`` (a statevector-trained model loads as is: the
  parameters do not depend on the backend), next to a randomly initialised memory of the same
  configuration (``--seed``). Both are fed the same sequence: the run's dataset, token scheme
  and training-set normalisation, exactly what ``qlam train`` fed the model (``--dataset`` may
  name another dataset with the same image shape).

Writes a run folder: ``config.json``, ``trace.csv`` (token, memory, n, chi, bond, entropy,
renyi2, discarded; memory is ``random`` or ``trained``), ``summary.json`` (per memory, n and χ:
centre-bond entropy at tokens 1, 2, 4, ..., its final plateau, the final discarded weight) and
plots ``centre_entropy.png`` (trained solid, random dashed), ``heatmap.png``, ``discarded.png``.

    qlam entangle --dataset digits --tokens pixel --n 8 16 --chi 2 4 8 16 32 --T 2000
    qlam entangle --dataset mnist10k --data-dir DATA --tokens pixel --n 16 --chi 8 32 --T 10000
    qlam entangle --checkpoint runs/row_mnist10k/qlam-su4-init01-s0 --chi 2 4 8 exact --T 2000
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from qlam_tn.experiments import data as D
from qlam_tn.experiments.evaluate import load_model, resolve_checkpoint
from qlam_tn.experiments.runfolder import atomic_write_json, atomic_write_text, environment
from qlam_tn.models.qlam import QLAM, QLAMConfig


def page_entropy_bits(k: int, n: int) -> float:
    """Page's mean entanglement entropy (bits) of a Haar-random n-qubit state across k | n-k."""
    a, b = 2 ** min(k, n - k), 2 ** max(k, n - k)
    nats = sum(1.0 / j for j in range(b + 1, a * b + 1)) - (a - 1) / (2 * b)
    return nats / math.log(2)


def context(dataset: str, data_dir, tokens: str, length: int, seed: int = 0) -> torch.Tensor:
    """One ``(1, length, F)`` sequence: image token sequences concatenated in a seeded order."""
    split = D.load_dataset(dataset, data_dir, split="train", seed=seed)
    seqs = D.tokenize(split.images, tokens)  # (N, T, F)
    order = torch.randperm(seqs.shape[0], generator=torch.Generator().manual_seed(seed))
    need = -(-length // seqs.shape[1])
    if need > seqs.shape[0]:
        raise ValueError(f"{dataset} has {seqs.shape[0]} images of {seqs.shape[1]} tokens: fewer than {length}")
    x = seqs[order[:need]].reshape(1, -1, seqs.shape[-1])[:, :length]
    return (x - x.mean()) / x.std().clamp_min(1e-6)


def run_context(data_cfg: dict, dataset: str, data_dir, length: int, seed: int = 0) -> torch.Tensor:
    """One ``(1, length, F)`` sequence as a run's model sees its inputs: images of ``dataset``'s
    training split in a seeded order, tokenised with the run's scheme (``data_cfg["tokens"]``,
    ``["permute_seed"]``) and normalised with the run's training-set ``mean``/``std`` (what
    ``qlam train`` and ``qlam eval`` feed the model), then concatenated.
    """
    split = D.load_dataset(dataset, data_dir, split="train", seed=seed)
    if list(split.info.image_shape) != list(data_cfg["image_shape"]):
        raise ValueError(f"{dataset!r} has images of shape {list(split.info.image_shape)}; the "
                         f"model was trained on {data_cfg['image_shape']}")
    seqs = D.SequenceDataset(split.images, split.labels, data_cfg["tokens"], data_cfg["permute_seed"],
                             normalize=(data_cfg["mean"], data_cfg["std"]))
    need = -(-length // seqs.seq_len)
    if need > len(seqs):
        raise ValueError(f"{dataset} has {len(seqs)} images of {seqs.seq_len} tokens: fewer than {length}")
    order = torch.randperm(len(seqs), generator=torch.Generator().manual_seed(seed))[:need]
    x = torch.cat([seqs[int(i)][0] for i in order])  # (need * T_image, F)
    return x[:length].unsqueeze(0)


@torch.no_grad()
def trace_memory(model: QLAM, x: torch.Tensor):
    """Feed ``x (1, T, F)`` to ``model``'s memory token by token (``model`` is converted to
    float64 in place: entropies of nearly product states need the precision).

    Returns entropies ``(T, n-1)`` and Renyi-2 ``(T, n-1)`` in bits at every bond after every
    token, and the accumulated discarded weight ``(T,)``. ``model`` must be on the MPS backend.
    """
    if model.config.resolved_backend != "mps":
        raise ValueError(f"trace_memory needs an MPS-backend QLAM, got {model.config.resolved_backend!r}")
    model = model.double()
    x = x.double()
    gates = model.token_gates()
    memory = model.new_memory(1, x.device)
    s_vn, s_r2, disc = [], [], []
    for t in range(x.shape[1]):
        model.update(memory, x[:, t], gates)
        s_vn.append(memory.entropy()[0])
        s_r2.append(memory.renyi(2)[0])
        disc.append(memory.discarded_weight[0].clone())
    return torch.stack(s_vn), torch.stack(s_r2), torch.stack(disc)


def random_qlam(input_dim: int, n: int, chi, seed: int = 0) -> QLAM:
    """A QLAM of the default configuration (real, MPS at cap ``chi``) initialised from ``seed``."""
    torch.manual_seed(seed)
    return QLAM(input_dim, n_qubits=n, bond_dim=chi, backend="mps", real=True)


def trace(n: int, chi, x: torch.Tensor, seed: int = 0):
    """:func:`trace_memory` of :func:`random_qlam`: ``(T, n-1)``, ``(T, n-1)``, ``(T,)``."""
    return trace_memory(random_qlam(x.shape[-1], n, chi, seed), x)


def trained_and_random(checkpoint, chi, seed: int = 0):
    """``(trained, random, ckpt)``: the QLAM of ``checkpoint`` rebuilt on the MPS backend at cap
    ``chi`` with its trained weights, and a QLAM of the same configuration and input size
    initialised from ``seed``. ``ValueError`` for a checkpoint that does not hold a QLAM."""
    classifier, ckpt = load_model(checkpoint, bond_dim=chi, dtype="float64")
    trained = classifier.qlam
    torch.manual_seed(seed)
    random = QLAM(trained.input_dim, QLAMConfig(**trained.config.to_dict())).double()
    return trained, random, ckpt


def summarise(s_vn: torch.Tensor, disc: torch.Tensor, n: int, chi, memory: str = "random") -> dict:
    """Centre-bond numbers of one trace: entropy at tokens 1, 2, 4, ..., plateau (mean ± std over
    the second half), references, final discarded weight."""
    centre = s_vn[:, n // 2 - 1]
    t_len = centre.shape[0]
    marks = [2 ** j for j in range(int(math.log2(t_len)) + 1)]
    tail = centre[t_len // 2:]
    return {
        "memory": memory, "n": n, "chi": chi, "tokens": t_len,
        "centre_entropy_at": {str(t): round(float(centre[t - 1]), 4) for t in marks},
        "plateau_mean": round(float(tail.mean()), 4), "plateau_std": round(float(tail.std()), 4),
        "cap_log2_chi": None if chi is None else math.log2(chi),
        "max_for_bipartition": n // 2, "page_value": round(page_entropy_bits(n // 2, n), 4),
        "discarded_weight_final": float(disc[-1]),
    }


def _order(key):
    """Sort ``(memory, n, chi)`` keys: by n, then χ (exact last), then trained before random."""
    memory, n, chi = key
    return n, chi or 1 << 30, memory != "trained"


def _plots(out: Path, traces: dict):
    """``traces``: ``{(memory, n, chi): (s_vn (T, n-1), s_r2 (T, n-1), disc (T,))}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(traces, key=_order)
    both = len({m for m, _, _ in keys}) > 1
    ns = sorted({n for _, n, _ in keys})
    fig, axes = plt.subplots(1, len(ns), figsize=(6 * len(ns), 4), squeeze=False)
    for ax, n in zip(axes[0], ns):
        colours = {}  # one colour per χ, shared by its trained (solid) and random (dashed) lines
        for memory, nn, chi in keys:
            if nn != n:
                continue
            label = f"χ={chi or 'exact'}" + (f" {memory}" if both else "")
            line, = ax.plot(traces[(memory, nn, chi)][0][:, n // 2 - 1].numpy(), label=label, lw=1,
                            color=colours.get(chi), ls="--" if both and memory == "random" else "-")
            if chi not in colours:
                colours[chi] = line.get_color()
                if chi is not None and math.log2(chi) < n // 2:  # the cap log2 χ, in the line's colour
                    ax.axhline(math.log2(chi), color=line.get_color(), ls=":", lw=0.6)
        ax.axhline(n // 2, color="k", ls="--", lw=0.8, label="max min(k, n-k)")
        ax.axhline(page_entropy_bits(n // 2, n), color="r", ls=":", lw=0.8, label="Page value")
        title = f"centre-bond entropy, n={n}" + (" (trained solid, random dashed)" if both else "")
        ax.set(title=title, xlabel="token", ylabel="bits", xscale="log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "centre_entropy.png", dpi=120)
    plt.close(fig)

    # the largest (n, χ): one heat map per memory, side by side
    _, n, chi = max(keys, key=lambda k: (k[1], k[2] or 1 << 30))
    shown = [k for k in keys if k[1:] == (n, chi)]
    fig, axes = plt.subplots(1, len(shown), figsize=(8 * len(shown), 3.5), squeeze=False)
    vmax = max(float(traces[k][0].max()) for k in shown)
    for ax, key in zip(axes[0], shown):
        im = ax.imshow(traces[key][0].T.numpy(), aspect="auto", origin="lower", interpolation="nearest",
                       vmin=0, vmax=max(vmax, 1e-9))
        ax.set(title=f"entropy per bond and token, {key[0] + ' ' if both else ''}n={n}, "
                     f"χ={chi or 'exact'}", xlabel="token", ylabel="bond")
        fig.colorbar(im, ax=ax, label="bits")
    fig.tight_layout()
    fig.savefig(out / "heatmap.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for memory, n, chi in keys:
        if chi is not None:
            ax.plot(traces[(memory, n, chi)][2].clamp_min(1e-300).numpy(), lw=1,
                    ls="--" if both and memory == "random" else "-",
                    label=f"n={n} χ={chi}" + (f" {memory}" if both else ""))
    ax.set(title="accumulated discarded weight", xlabel="token", yscale="log", xscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "discarded.png", dpi=120)
    plt.close(fig)


def _report(s: dict) -> None:
    print(f"{s['memory']} n={s['n']} χ={s['chi'] or 'exact'}: centre entropy {s['centre_entropy_at']}, "
          f"plateau {s['plateau_mean']} ± {s['plateau_std']} bits (Page {s['page_value']}), "
          f"discarded {s['discarded_weight_final']:.2e}, {s['seconds']} s", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="qlam entangle", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", metavar="RUN_OR_PT",
                   help="trace the QLAM of this qlam-train checkpoint (a .pt, or a run folder: its "
                        "best.pt) beside a random memory of the same configuration")
    p.add_argument("--dataset", choices=D.DATASETS,
                   help="default: digits; with --checkpoint the run's")
    p.add_argument("--data-dir", default=None, help="default: with --checkpoint the run's")
    p.add_argument("--tokens", help="default: pixel; with --checkpoint the run's (no other)")
    p.add_argument("--n", type=int, nargs="+",
                   help="qubits (default 8 16); with --checkpoint the model's (no other)")
    p.add_argument("--chi", nargs="+", default=["2", "4", "8", "16", "32"],
                   help="bond caps; 'exact' for no cap (the cutoff 1e-12 still applies)")
    p.add_argument("--T", type=int, default=1000, help="context length in tokens")
    p.add_argument("--seed", type=int, default=0, help="image order and random memory init")
    p.add_argument("--out", default="runs/entangle")
    args = p.parse_args(argv)
    try:
        chis = [None if c.lower() in ("exact", "none") else int(c) for c in args.chi]
    except ValueError:
        p.error(f"--chi takes positive ints or 'exact', got {args.chi}")
    if any(c is not None and c < 1 for c in chis):
        p.error(f"--chi takes positive ints or 'exact', got {args.chi}")
    if args.T < 1:
        p.error(f"--T must be >= 1, got {args.T}")
    run = None
    if args.checkpoint is None:
        dataset, tokens, ns = args.dataset or "digits", args.tokens or "pixel", args.n or [8, 16]
        x = context(dataset, args.data_dir, tokens, args.T, args.seed)
    else:
        try:
            path = resolve_checkpoint(args.checkpoint)
            _, _, ckpt = trained_and_random(path, None, args.seed)  # fails early on a non-QLAM
            config = ckpt["config"]
            data_cfg, resolved = config["data"], config["model"]["resolved"]
            if args.tokens is not None and args.tokens != data_cfg["tokens"]:
                raise ValueError(f"the model was trained on {data_cfg['tokens']!r} tokens, not "
                                 f"{args.tokens!r} (its input size depends on them)")
            if args.n is not None and args.n != [resolved["n_qubits"]]:
                raise ValueError(f"the model has n = {resolved['n_qubits']} qubits; drop --n {args.n}")
            dataset, tokens, ns = args.dataset or data_cfg["dataset"], data_cfg["tokens"], [resolved["n_qubits"]]
            data_dir = args.data_dir if args.data_dir is not None else config["train"]["data_dir"]
            x = run_context(data_cfg, dataset, data_dir, args.T, args.seed)
        except (ValueError, FileNotFoundError) as exc:
            p.error(str(exc))
        run = {"checkpoint": str(path), "epoch": ckpt["epoch"], "best": ckpt.get("best"),
               "model": config["model"], "normalisation": {k: data_cfg[k] for k in ("mean", "std")},
               "data_dir": data_dir}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", {**vars(args), "dataset": dataset, "tokens": tokens, "n": ns,
                                            "features": x.shape[-1], "run": run})
    atomic_write_json(out / "env.json", environment(torch.device("cpu")))
    traces, summaries = {}, []
    for n in ns:
        for chi in chis:
            if run is None:
                memories = [("random", random_qlam(x.shape[-1], n, chi, args.seed))]
            else:
                trained, random, _ = trained_and_random(run["checkpoint"], chi, args.seed)
                memories = [("trained", trained), ("random", random)]
            for memory, model in memories:
                t0 = time.perf_counter()
                traces[(memory, n, chi)] = trace_memory(model, x)
                s_vn, _, disc = traces[(memory, n, chi)]
                summaries.append({**summarise(s_vn, disc, n, chi, memory),
                                  "seconds": round(time.perf_counter() - t0, 2)})
                _report(summaries[-1])
    rows = ["token,memory,n,chi,bond,entropy,renyi2,discarded"]
    for (memory, n, chi), (s_vn, s_r2, disc) in traces.items():
        for t in range(s_vn.shape[0]):
            for bond in range(n - 1):
                rows.append(f"{t + 1},{memory},{n},{chi or 'exact'},{bond},{float(s_vn[t, bond]):.6f},"
                            f"{float(s_r2[t, bond]):.6f},{float(disc[t]):.3e}")
    atomic_write_text(out / "trace.csv", "\n".join(rows) + "\n")
    atomic_write_json(out / "summary.json", summaries)
    _plots(out, traces)
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
