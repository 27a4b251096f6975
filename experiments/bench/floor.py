"""How close QLAM training on the MPS runs to its decomposition floor.

A saturated QLAM memory (``n`` qubits, every bond at ``χ``, su4 entanglers, ``depth`` brickwork
layers, real float32, batch ``B``: the torch route, the only one under autograd) is timed for
``T`` tokens of forward+backward (readout at every token, a squared-features loss), once with SVD
splits (``split="svd"``) and once with Gram-``eigh`` splits (``split="gram"``), the same weights
and memory. The floor is the standalone time of the decompositions the Gram forward itself
performs (its ``eigh`` splits, the SVDs of splits whose isometry is the larger side, its QR centre
moves: their inputs recorded from one forward, then re-run on those same matrices, since the cost
of ``eigh`` depends on the spectrum): no training step can take less. Each of ``--repeats``
rounds times the three back to back; figures are medians over the rounds of tokens/s (``B·T``
over a run's seconds) and of each round's ratio to the floor (the target is 0.5). Run it alone.

With ``--profile``, ``torch.profiler`` records 3 Gram-route training steps at each n and sorts
the operators' own CPU time into classes (the decompositions, batched matmuls, copies, elementwise
arithmetic, and the rest: views, autograd bookkeeping, the Python of the custom autograd nodes).

    qlam bench floor [--n 16 32] [--chi 16] [--B 64] [--T 4] [--threads 2] [--repeats 5]
                     [--breakdown] [--profile] [--markdown]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
from typing import Callable, Dict, List, Tuple

import torch

from qlam_tn.experiments.bench.table import Table, provenance
from qlam_tn.experiments.timing import wall_times

DECOMPOSITIONS = ("eigh", "svd", "qr")
FEATURES = 8  # token width; the encoder's cost is negligible beside the memory's


def saturated_qlam(n: int, chi: int, depth: int, batch: int, split: str, seed: int = 0):
    """A float32 real su4 QLAM (``n`` qubits, bond cap ``chi``, entangler parameters drawn with std 1:
    random SO(4) gates, so the bonds fill with Schmidt values well above rounding) and a memory
    ``(B = batch)`` whose every bond has reached ``min(χ, 2^distance to the nearer end)``: random
    tokens, no autograd."""
    from qlam_tn.models.qlam import QLAM

    torch.manual_seed(seed)
    q = QLAM(FEATURES, n_qubits=n, bond_dim=chi, depth=depth, entangler="su4", backend="mps", real=True,
             split=split, encoding_scale=1.0)
    with torch.no_grad():  # strongly entangling gates (the init is near the identity): full Schmidt spectra
        for p in q.entangler_params:
            p.normal_(0.0, 1.0)
    full = [min(chi, 2 ** min(i + 1, n - 1 - i)) for i in range(n - 1)]
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        memory = q.new_memory(batch)
        gates = q.token_gates()
        for _ in range(4 * n):
            q.update(memory, torch.randn(batch, FEATURES, generator=g), gates)
            if [t.shape[-1] for t in memory.tensors[:-1]] == full:
                break
        else:
            raise RuntimeError(f"the memory did not saturate at n={n}, χ={chi}")
    return q, memory


def fwdbwd(q, memory, x: torch.Tensor) -> Callable[[], None]:
    """One training step's forward and backward of ``q`` over tokens ``x (B, T, F)`` from ``memory``."""
    def run():
        q.zero_grad(set_to_none=True)
        q(x, memory=memory.copy()).square().sum().backward()
    return run


@contextlib.contextmanager
def recorded_decompositions(calls: List[Tuple[str, torch.Tensor]]):
    """Record ``(name, input)`` of every ``torch.linalg.eigh/svd/qr`` call in the block (a copy)."""
    originals = {name: getattr(torch.linalg, name) for name in DECOMPOSITIONS}

    def spy(name):
        def call(a, *args, **kwargs):
            calls.append((name, a.detach().clone()))
            return originals[name](a, *args, **kwargs)
        return call

    try:
        for name in DECOMPOSITIONS:
            setattr(torch.linalg, name, spy(name))
        yield calls
    finally:
        for name, fn in originals.items():
            setattr(torch.linalg, name, fn)


def standalone(calls: List[Tuple[str, torch.Tensor]]) -> Dict[str, Callable[[], None]]:
    """The recorded ``calls`` re-run on their own inputs, as two functions: the splits (``eigh`` and
    ``svd``) and the moves (``qr``)."""
    jobs = []
    for name, a in calls:
        if name == "eigh":
            jobs.append((name, lambda a=a: torch.linalg.eigh(a)))
        elif name == "svd":
            jobs.append((name, lambda a=a: torch.linalg.svd(a, full_matrices=False)))
        else:
            jobs.append((name, lambda a=a: torch.linalg.qr(a)))
    return {part: (lambda fns=[fn for name, fn in jobs if name in names]: [fn() for fn in fns])
            for part, names in (("splits", ("eigh", "svd")), ("moves", ("qr",)))}


def measure(n: int, chi: int, depth: int, batch: int, tokens: int, repeats: int) -> dict:
    """Tokens/s of forward+backward with SVD and with Gram splits, and of the floor: medians over
    ``repeats`` rounds, each round timing all three back to back (the VM's speed drifts between
    minutes, so each round's ratios are taken within the round and their median reported)."""
    x = torch.randn(batch, tokens, FEATURES, generator=torch.Generator().manual_seed(2))
    models = {split: saturated_qlam(n, chi, depth, batch, split) for split in ("svd", "gram")}
    steps = {split: fwdbwd(q, memory, x) for split, (q, memory) in models.items()}
    q, memory = models["gram"]
    calls = []
    with torch.no_grad(), recorded_decompositions(calls):
        q(x, memory=memory.copy())
    # The same forward under autograd performs the same decompositions.
    floor = standalone(calls)
    for fn in (*steps.values(), *floor.values()):  # warm-up
        fn()
    rounds = []
    for _ in range(repeats):
        t = {name: wall_times(fn, 1, warmup=False)[0] for name, fn in (*steps.items(), *floor.items())}
        t["floor"] = t["splits"] + t["moves"]
        rounds.append(t)
    med = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    return {"svd": batch * tokens / med["svd"], "gram": batch * tokens / med["gram"],
            "floor": batch * tokens / med["floor"],
            "splits_ms": 1e3 * med["splits"] / tokens, "moves_ms": 1e3 * med["moves"] / tokens,
            "svd_ratio": statistics.median(r["floor"] / r["svd"] for r in rounds),
            "gram_ratio": statistics.median(r["floor"] / r["gram"] for r in rounds),
            "counts": {name: sum(c[0] == name for c in calls) // tokens for name in DECOMPOSITIONS}}


def breakdown(n: int, chi: int, depth: int, batch: int, tokens: int, repeats: int) -> dict:
    """Where the Gram route's training step goes, as multiples of the floor (medians of per-round
    ratios): the forward without autograd, under autograd, forward+backward, and forward+backward
    reading the memory at the last token only (``readout_at="last"``) instead of at every token."""
    x = torch.randn(batch, tokens, FEATURES, generator=torch.Generator().manual_seed(2))
    q, memory = saturated_qlam(n, chi, depth, batch, "gram")
    last, last_memory = saturated_qlam(n, chi, depth, batch, "gram")
    last.config = dataclasses.replace(last.config, readout_at="last")
    calls = []
    with torch.no_grad(), recorded_decompositions(calls):
        q(x, memory=memory.copy())
    floor = standalone(calls)

    def forward_no_grad():
        with torch.no_grad():
            q(x, memory=memory.copy())

    fns = {"floor": lambda: (floor["splits"](), floor["moves"]()), "fwd (no autograd)": forward_no_grad,
           "fwd (autograd)": lambda: q(x, memory=memory.copy()).square().sum(),
           "fwd+bwd": fwdbwd(q, memory, x), "fwd+bwd, readout at the last token": fwdbwd(last, last_memory, x)}
    for fn in fns.values():  # warm-up
        fn()
    rounds = [{name: wall_times(fn, 1, warmup=False)[0] for name, fn in fns.items()} for _ in range(repeats)]
    return {name: statistics.median(r[name] / r["floor"] for r in rounds) for name in fns}


# operator classes of --profile, by aten name; everything else is "other"
OP_CLASSES = {
    "decompositions (eigh, svd, qr, triangular solve)": ("aten::_linalg_eigh", "aten::_linalg_svd", "aten::linalg_qr",
                                                         "aten::linalg_solve_triangular"),
    "batched matmuls": ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm"),
    "copies (reshapes of permuted tensors, clones)": ("aten::copy_",),
    "elementwise arithmetic": ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::div", "aten::sub",
                               "aten::pow", "aten::sum", "aten::neg", "aten::where", "aten::clamp", "aten::reciprocal",
                               "aten::sqrt", "aten::abs", "aten::flip", "aten::fill_", "aten::zero_"),
}


def profile_step(n: int, chi: int, depth: int, batch: int, tokens: int, steps: int = 3) -> Dict[str, float]:
    """Own CPU time (ms per token) of a Gram-route training step's operators, by class (``OP_CLASSES``
    plus ``other``), from ``torch.profiler`` over ``steps`` steps after one warm-up step."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch, tokens, FEATURES, generator=torch.Generator().manual_seed(2))
    q, memory = saturated_qlam(n, chi, depth, batch, "gram")
    step = fwdbwd(q, memory, x)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ms = {name: 0.0 for name in (*OP_CLASSES, "other")}
    for event in prof.key_averages():
        if event.key.startswith("ProfilerStep"):
            continue
        name = next((c for c, ops in OP_CLASSES.items() if event.key in ops), "other")
        ms[name] += event.self_cpu_time_total / 1e3 / (steps * tokens)
    return ms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="qlam bench floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--chi", type=int, default=16)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--T", type=int, default=4, help="tokens per timed forward+backward")
    ap.add_argument("--repeats", type=int, default=5, help="rounds (each times all three; medians reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the Gram step's parts (forward with and without autograd, readout) against the floor")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the Gram step: its operators' own CPU time by class (torch.profiler)")
    ap.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    args = ap.parse_args(argv)
    for name in ("chi", "depth", "B", "T", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if min(args.n) < 2:
        ap.error(f"--n must be >= 2, got {args.n}")
    if args.threads:
        torch.set_num_threads(args.threads)
    setting = f"χ={args.chi}, depth {args.depth}, B={args.B}, T={args.T}, float32 real, threads {torch.get_num_threads()}"
    print(f"{provenance()}\n\n{setting}" if args.markdown else f"torch {torch.__version__}, {setting}")
    table = Table(["n", "fwd+bwd tokens/s (SVD splits)", "fwd+bwd tokens/s (Gram splits)",
                   "floor tokens/s", "floor: splits ms/token", "floor: QR moves ms/token",
                   "decompositions / token (eigh, svd, qr)", "SVD ÷ floor", "Gram ÷ floor"], args.markdown)
    for n in args.n:
        r = measure(n, args.chi, args.depth, args.B, args.T, args.repeats)
        c = r["counts"]
        table.row(n, f"{r['svd']:,.0f}", f"{r['gram']:,.0f}", f"{r['floor']:,.0f}", f"{r['splits_ms']:.1f}",
                  f"{r['moves_ms']:.1f}", f"{c['eigh']}, {c['svd']}, {c['qr']}", f"{r['svd_ratio']:.2f}",
                  f"{r['gram_ratio']:.2f}")
    if args.breakdown:
        parts = Table(["n", "part of the Gram step", "× floor"], args.markdown,
                      title="The Gram route's training step in multiples of the floor (medians of per-round ratios)")
        for n in args.n:
            for name, ratio in breakdown(n, args.chi, args.depth, args.B, args.T, args.repeats).items():
                if name != "floor":
                    parts.row(n, name, f"{ratio:.2f}")
    if args.profile:
        prof = Table(["n", "operators (own CPU time)", "ms / token", "share of the step"], args.markdown,
                     title="Where the Gram route's training step goes (torch.profiler, 3 steps; "
                           "the profiler adds its own overhead)")
        for n in args.n:
            ms = profile_step(n, args.chi, args.depth, args.B, args.T)
            total = sum(ms.values())
            for name, value in ms.items():
                prof.row(n, name, f"{value:.1f}", f"{100 * value / total:.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
