"""``qlam entangle``: entanglement of a QLAM memory versus context length, on real data.

A randomly initialised QLAM memory (MPS backend, real mode, RY encoding, CZ brickwork) is fed
one long sequence made by concatenating the token sequences of real images (``--dataset``,
``--tokens``). After every token it records, for every bond, the von Neumann and Renyi-2
entropies, and the accumulated discarded weight, for each ``(n, χ)`` asked for. Reference
lines: the χ cap ``log2 χ``, the bipartition maximum ``min(k, n-k)`` bits and the Page value
of a Haar-random state.

Writes a run folder: ``config.json``, ``trace.csv`` (token, n, chi, bond, entropy, renyi2,
discarded), ``summary.json`` (centre-bond entropy at tokens 1, 2, 4, ..., its final plateau,
the largest discarded weight) and plots ``centre_entropy.png``, ``heatmap.png``,
``discarded.png``.

    qlam entangle --dataset digits --tokens pixel --n 8 16 --chi 2 4 8 16 32 --T 2000
    qlam entangle --dataset mnist10k --data-dir DATA --tokens pixel --n 16 --chi 8 32 --T 10000

Not yet: a trained checkpoint from ``qlam train`` side by side (next step of issue 6).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import torch

from qlam_tn.experiments import data as D
from qlam_tn.experiments.runfolder import atomic_write_json, atomic_write_text, environment
from qlam_tn.models.qlam import QLAM


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


@torch.no_grad()
def trace(n: int, chi, x: torch.Tensor, seed: int = 0):
    """Per token: entropies ``(T, n-1)``, Renyi-2 ``(T, n-1)``, discarded weight ``(T,)``."""
    torch.manual_seed(seed)
    model = QLAM(x.shape[-1], n_qubits=n, bond_dim=chi, backend="mps", real=True).double()
    x = x.double()
    ent = model._entangler()
    memory = model._new_memory(1, x.device)
    s_vn, s_r2, disc = [], [], []
    for t in range(x.shape[1]):
        model._token_update(memory, x[:, t], ent)
        s_vn.append(memory.entropy()[0])
        s_r2.append(memory.renyi(2)[0])
        disc.append(memory.discarded_weight[0].clone())
    return torch.stack(s_vn), torch.stack(s_r2), torch.stack(disc)


def summarise(s_vn: torch.Tensor, disc: torch.Tensor, n: int, chi) -> dict:
    centre = s_vn[:, n // 2 - 1]
    t_len = centre.shape[0]
    marks = [2 ** j for j in range(0, int(math.log2(t_len)) + 1)]
    tail = centre[t_len // 2:]
    return {
        "n": n, "chi": chi, "tokens": t_len,
        "centre_entropy_at": {str(t): round(float(centre[t - 1]), 4) for t in marks},
        "plateau_mean": round(float(tail.mean()), 4), "plateau_std": round(float(tail.std()), 4),
        "cap_log2_chi": None if chi is None else math.log2(chi),
        "max_for_bipartition": n // 2, "page_value": round(page_entropy_bits(n // 2, n), 4),
        "discarded_weight_final": float(disc[-1]),
    }


def _plots(out: Path, traces: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({n for n, _ in traces})
    fig, axes = plt.subplots(1, len(ns), figsize=(6 * len(ns), 4), squeeze=False)
    for ax, n in zip(axes[0], ns):
        for (nn, chi), (s_vn, _, _) in sorted(traces.items(), key=lambda kv: (kv[0][0], kv[0][1] or 1 << 30)):
            if nn == n:
                line, = ax.plot(s_vn[:, n // 2 - 1].numpy(), label=f"χ={chi or 'exact'}", lw=1)
                if chi is not None and math.log2(chi) < n // 2:  # the cap log2 χ, in the line's colour
                    ax.axhline(math.log2(chi), color=line.get_color(), ls=":", lw=0.6)
        ax.axhline(n // 2, color="k", ls="--", lw=0.8, label="max min(k, n-k)")
        ax.axhline(page_entropy_bits(n // 2, n), color="r", ls=":", lw=0.8, label="Page value")
        ax.set(title=f"centre-bond entropy, n={n}", xlabel="token", ylabel="bits", xscale="log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "centre_entropy.png", dpi=120)
    plt.close(fig)

    (n, chi), (s_vn, _, _) = max(traces.items(), key=lambda kv: (kv[0][0], kv[0][1] or 1 << 30))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    im = ax.imshow(s_vn.T.numpy(), aspect="auto", origin="lower", interpolation="nearest")
    ax.set(title=f"entropy per bond and token, n={n}, χ={chi or 'exact'}", xlabel="token", ylabel="bond")
    fig.colorbar(im, label="bits")
    fig.tight_layout()
    fig.savefig(out / "heatmap.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for (n, chi), (_, _, disc) in sorted(traces.items(), key=lambda kv: (kv[0][0], kv[0][1] or 1 << 30)):
        if chi is not None:
            ax.plot(disc.clamp_min(1e-300).numpy(), label=f"n={n} χ={chi}", lw=1)
    ax.set(title="accumulated discarded weight", xlabel="token", yscale="log", xscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "discarded.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="qlam entangle", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits", choices=D.DATASETS)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tokens", default="pixel")
    p.add_argument("--n", type=int, nargs="+", default=[8, 16])
    p.add_argument("--chi", nargs="+", default=["2", "4", "8", "16", "32"],
                   help="bond caps; 'exact' for no cap (the cutoff 1e-12 still applies)")
    p.add_argument("--T", type=int, default=1000, help="context length in tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/entangle")
    args = p.parse_args(argv)
    chis = [None if c == "exact" else int(c) for c in args.chi]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x = context(args.dataset, args.data_dir, args.tokens, args.T, args.seed)
    atomic_write_json(out / "config.json", {**vars(args), "features": x.shape[-1]})
    atomic_write_json(out / "env.json", environment(torch.device("cpu")))
    traces, summaries = {}, []
    for n in args.n:
        for chi in chis:
            t0 = time.perf_counter()
            traces[(n, chi)] = trace(n, chi, x, args.seed)
            summaries.append({**summarise(traces[(n, chi)][0], traces[(n, chi)][2], n, chi),
                              "seconds": round(time.perf_counter() - t0, 2)})
            s = summaries[-1]
            print(f"n={n} χ={chi or 'exact'}: centre entropy {s['centre_entropy_at']}, plateau "
                  f"{s['plateau_mean']} ± {s['plateau_std']} bits (Page {s['page_value']}), "
                  f"discarded {s['discarded_weight_final']:.2e}, {s['seconds']} s", flush=True)
    rows = ["token,n,chi,bond,entropy,renyi2,discarded"]
    for (n, chi), (s_vn, s_r2, disc) in traces.items():
        for t in range(s_vn.shape[0]):
            for bond in range(n - 1):
                rows.append(f"{t + 1},{n},{chi or 'exact'},{bond},{float(s_vn[t, bond]):.6f},"
                            f"{float(s_r2[t, bond]):.6f},{float(disc[t]):.3e}")
    atomic_write_text(out / "trace.csv", "\n".join(rows) + "\n")
    atomic_write_json(out / "summary.json", summaries)
    _plots(out, traces)
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
