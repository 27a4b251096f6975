"""``qlam scale``: time, memory and truncation of the QLAM memory versus qubits, bond dimension and context.

Four sweeps, chosen with ``--sweeps`` (default: all four):

``n``, ``chi``
    Per-token cost of the QLAM token update (``QLAM.update``: the encoding rotations, then
    ``--depth`` brickwork layers of the entangler) on the MPS backend: versus n at χ=``--n-chi``
    and versus χ at n=``--chi-n``, for every batch size in ``--batch`` and dtype in ``--dtypes``
    (``real``: float64 state, ``complex``: complex128 state).
``sv``
    The same token update on the statevector backend for n in ``--sv-n`` and ``--n`` wherever its
    memory estimate (:func:`statevector_need_gib`) is at most ``--sv-max-gib``; every other n
    gets a "does not fit" row with the memory it would need, which shows where it stops. An n
    that fits but whose forward would take more than ``--sv-max-token-s`` seconds per token,
    predicted from the measured n below it (:func:`predict_statevector_time`), gets a "skipped"
    row with the prediction instead.
``T``
    Total time of a whole sequence of length T (``--T``): the QLAM classifier (MPS, n=``--T-n``,
    χ=``--T-chi``) against a causal Transformer with a parameter count matched to it (within 10%,
    in practice about 1%: :func:`sequence_models`), batch ``--T-batch``, dtype ``--T-dtype`` (both models' default
    float32). QLAM forward is timed twice: ``fresh`` (``model(x)`` as users run it, from
    ``|0...0>``, whose bonds grow during the first tokens) and ``saturated`` (the same forward
    started from a memory whose bonds are already at their cap, so every token costs the same);
    forward+backward (cross-entropy on the logits) for the fresh QLAM up to ``--T-backward-max``
    and for the Transformer at every T.

Per-token measurement (sweeps ``n``, ``chi``, ``sv``):

- the MPS starts *saturated*: random brickwork layers (``bench.engine.saturated_state``) first
  drive every bond k to ``min(χ, 2^k, 2^(n-k))``, so a timed token costs what a token costs deep
  into a long sequence; the statevector starts at ``|0...0>`` (its cost does not depend on the
  state);
- ``fwd``: ``--tokens`` token updates under ``torch.no_grad``, the entangler built before the
  clock starts (``forward`` builds it once per sequence);
- ``fwdbwd``: the same token updates with autograd recording, then the gradient of the sum of the
  real parts of the state's entries (cheap, and it depends on every site) with respect to the
  encoder parameters and the entangler's gates; the entangler is built (with autograd) before the
  clock and its own backward (to its parameters, once per sequence) is not timed;
- time per token: the fastest of at least ``--repeats`` timed runs (more until they add up to
  ``--min-time`` seconds; a single run once one takes ``--slow-s``), after one warm-up token,
  divided by ``--tokens``;
- peak memory: every configuration runs in a freshly spawned process and reads its peak resident
  set size (``getrusage(RUSAGE_SELF).ru_maxrss``, a high-water mark) after the forward runs
  (``fwd_peak_rss_mb``, which includes building the saturated state) and after the
  forward+backward runs (``fwdbwd_peak_rss_mb``); ``rss_base_mb`` is the peak after the imports,
  before the model and state exist (about 250 MB of Python and torch). ``--no-isolate`` runs
  everything in this process and records no memory;
- discarded weight per token: the weight ``Σ s²`` the truncations cut during one forward run,
  mean over the batch, divided by ``--tokens`` (on the saturated random state);
- GFLOP/s: the FLOPs of one token update from ``contraction.token_update_cost`` (the pairs of the
  ``--depth`` layers; plus, for the ``cz``/``cnot`` entanglers, their rotation layer after every
  brickwork layer) divided by the forward time, against the matmul peak measured by
  ``contraction.measure_matmul_peak`` (float64 for real, complex128 for complex). The count
  assumes the saturated bond profile; the ``saturated`` column says whether the state still had it
  after the timed tokens.

Fits: least-squares lines through (ln x, ln t) with standard errors from the residuals
(:func:`loglog_fit`): time per token vs n for n >= ``--fit-n-min`` (expect ~1), vs χ for
χ >= ``--fit-chi-min`` (expect ~3 once the SVDs of the (2χ x 2χ) two-site matrices dominate),
sequence time vs T over all T (expect 1.00 for QLAM). Statevector time vs n is exponential: the
slope of log2 t against n over the gate-by-gate sizes n > 10 (expect a little over 1: t ∝ n·2^n).
The Transformer's sequence time is fitted with ``c + a·T + b·T²`` (:func:`linear_quadratic_fit`;
its log-log slope is reported too). The crossover T where the Transformer becomes slower than
QLAM is interpolated in log-log between measured points (:func:`crossover`); when it does not
happen in the range it is extrapolated from the two fits (:func:`extrapolated_crossover`) and
labelled "extrapolated".

Writes a run folder (``--out``): ``config.json``, ``env.json``, ``results.csv`` and
``results.json`` (one row per configuration, written again after every configuration so an
interrupted run keeps what it measured), ``summary.json`` (fits, crossovers, statevector limits,
matmul peak), ``tables.md`` (the markdown tables it prints) and ``time_vs_n.png``,
``time_vs_chi.png``, ``time_vs_T.png``, ``gflops.png`` (for the sweeps that ran).

Run it alone (two CPU-heavy jobs on a machine with few cores slow each other down many-fold):

    qlam scale                          # everything, ≈ 20-30 min on 2 cores (see below)
    qlam scale --sweeps T --out runs/scale-T
    qlam scale --quick --out /tmp/scale # ≈ 1-2 min smoke run

Expected durations of the defaults on 2 cores, estimated from the engine timings of docs/benchmarks.md
(``qlam bench engine``, ``qlam bench anchors``) and short runs, not from a full run: sweep ``n`` ≈ 4
min, ``chi`` ≈ 4-5 min (the B=32 complex128 rows at n=256 and at χ=64 dominate), ``sv`` ≈ 2-3 min
(up to n=20 at B=1 and n=16 at B=32, forward+backward included; larger n are skipped as too slow
or do not fit), ``T`` ≈ 8-12 min (two QLAM forwards over 256 + 512 + ... + 16384 tokens, plus
forward+backward up to 2048); with process start-ups, ≈ 20-30 min in all.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from qlam_tn.contraction import measure_matmul_peak, token_update_cost
from qlam_tn.contraction.cost import bond_dims
from qlam_tn.experiments.bench.engine import saturated_state
from qlam_tn.experiments.runfolder import atomic_write_csv, atomic_write_json, atomic_write_text, environment
from qlam_tn.experiments.timing import fastest_of, peak_rss_mb
from qlam_tn.models import QLAM, build, count_parameters, match_hidden_size
from qlam_tn.models.qlam import DENSE_ENTANGLER_MAX_QUBITS

SWEEPS = ("n", "chi", "sv", "T")
STATE_DTYPES = {"real": "float64", "complex": "complex128"}  # --dtypes -> the state's dtype
SEQ_DTYPES = {"float32": torch.float32, "float64": torch.float64}
GIB = 2.0 ** 30


# ----------------------------------------------------------------------------------------------
# Fits and crossovers (pure functions, tested on synthetic timings)
# ----------------------------------------------------------------------------------------------

def _line_fit(u, v) -> dict:
    """Least-squares line ``v = intercept + slope · u`` with standard errors from the residuals."""
    u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    X = np.column_stack([np.ones_like(u), u])
    coef, *_ = np.linalg.lstsq(X, v, rcond=None)
    dof = u.size - 2
    if dof > 0:
        resid = v - X @ coef
        se = np.sqrt(np.diag(resid @ resid / dof * np.linalg.inv(X.T @ X)))
    else:
        se = np.array([math.nan, math.nan])
    return {"slope": float(coef[1]), "slope_se": float(se[1]), "intercept": float(coef[0]),
            "intercept_se": float(se[0]), "points": int(u.size)}


def _check_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-d of equal length, got shapes {x.shape} and {y.shape}")
    if np.unique(x).size < 2:
        raise ValueError(f"a fit needs at least two distinct x, got {x.tolist()}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(y > 0)):
        raise ValueError("a fit needs finite x and finite positive y")
    return x, y


def loglog_fit(x, y) -> dict:
    """Least-squares line ``ln y = intercept + slope · ln x``, with standard errors.

    Args:
        x, y: equal-length sequences of positive numbers (at least two distinct x).

    Returns:
        ``slope``, ``slope_se``, ``intercept`` (natural log of the prefactor: ``y ≈ e^intercept ·
        x^slope``), ``intercept_se``, ``points``, ``x_min``, ``x_max``. The standard errors are
        ``sqrt(diag(s² (XᵀX)⁻¹))`` with ``s² = RSS / (points - 2)``; NaN for two points, where the
        line is exact and the residuals say nothing.
    """
    x, y = _check_xy(x, y)
    if not np.all(x > 0):
        raise ValueError("a log-log fit needs positive x")
    return {**_line_fit(np.log(x), np.log(y)), "x_min": float(x.min()), "x_max": float(x.max())}


def exponential_fit(n, y) -> dict:
    """Least-squares line ``log2 y = intercept + slope · n``: ``slope`` is doublings of y per unit of n.

    Same keys and standard errors as :func:`loglog_fit`.
    """
    n, y = _check_xy(n, y)
    return {**_line_fit(n, np.log2(y)), "x_min": float(n.min()), "x_max": float(n.max())}


def linear_quadratic_fit(T, t) -> dict:
    """Non-negative least squares ``t ≈ c + a·T + b·T²`` in relative error (each row divided by t).

    A causal Transformer's forward costs a fixed per-call overhead ``c`` (s), a linear part
    (projections, MLP; ``a``, s/token) and attention, quadratic in T (``b``, s/token²). Returns
    ``c``, ``a``, ``b`` and ``points``.
    """
    T, t = np.asarray(T, dtype=float), np.asarray(t, dtype=float)
    if T.ndim != 1 or T.shape != t.shape or T.size < 3:
        raise ValueError("T and t must be 1-d of equal length >= 3")
    if not (np.all(T > 0) and np.all(t > 0)):
        raise ValueError("T and t must be positive")
    A = np.column_stack([np.ones_like(T), T, T * T]) / t[:, None]
    ones = np.ones_like(t)
    best = None
    # Three unknowns: the non-negative least-squares optimum is the unconstrained optimum on its
    # own support, so trying every support and keeping the best feasible one is exact.
    for support in ((0, 1, 2), (0, 1), (0, 2), (1, 2), (0,), (1,), (2,)):
        coef = np.zeros(3)
        coef[list(support)] = np.linalg.lstsq(A[:, support], ones, rcond=None)[0]
        if np.all(coef >= 0):
            r = float(np.sum((A @ coef - ones) ** 2))
            if best is None or r < best[0]:
                best = (r, coef)
    c, a, b = (float(v) for v in best[1])
    return {"c": c, "a": a, "b": b, "points": int(T.size)}


def crossover(T, t_qlam, t_other) -> dict:
    """Where ``t_other`` (the Transformer) becomes slower than ``t_qlam``, from measured points.

    ``ln(t_other / t_qlam)`` is interpolated linearly in ``ln T`` between the last point where it
    is negative and the next. Returns ``{"T": value or None, "where": ...}`` with ``where`` one of
    ``"in range"``, ``"at or below the smallest T"`` (already slower at ``T[0]``; ``T`` is then
    ``T[0]``) or ``"not in range"`` (``T`` None: faster at every measured T).
    """
    T, a, b = (np.asarray(v, dtype=float) for v in (T, t_qlam, t_other))
    if T.ndim != 1 or not (T.shape == a.shape == b.shape) or T.size < 1:
        raise ValueError("T, t_qlam and t_other must be 1-d of equal non-zero length")
    order = np.argsort(T)
    T, r = T[order], np.log(b[order] / a[order])
    if r[0] >= 0:
        return {"T": float(T[0]), "where": "at or below the smallest T"}
    for i in range(1, T.size):
        if r[i] >= 0:
            lo, hi = math.log(T[i - 1]), math.log(T[i])
            return {"T": float(math.exp(lo + (hi - lo) * (-r[i - 1]) / (r[i] - r[i - 1]))), "where": "in range"}
    return {"T": None, "where": "not in range"}


def extrapolated_crossover(qlam_fit: dict, other: dict, T_from: float, T_max: float = 1e15) -> float | None:
    """Extrapolated T > ``T_from`` where ``c + a·T + b·T²`` (``other``) overtakes ``e^i·T^p`` (``qlam_fit``).

    Solved by bisection in ln T. None if the quadratic model is still faster at ``T_max`` (for
    instance when no quadratic term was measurable, ``b = 0``).
    """
    i, p = qlam_fit["intercept"], qlam_fit["slope"]

    def gap(log_t: float) -> float:  # ln(t_other / t_qlam)
        T = math.exp(log_t)
        model = other["c"] + other["a"] * T + other["b"] * T * T
        return (math.log(model) if model > 0 else -math.inf) - (i + p * log_t)

    lo, hi = math.log(T_from), math.log(T_max)
    if gap(hi) < 0:
        return None
    if gap(lo) >= 0:
        return float(T_from)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
    return float(math.exp(hi))


# ----------------------------------------------------------------------------------------------
# Per-token measurement (one configuration; runs in a spawned process when isolated)
# ----------------------------------------------------------------------------------------------

def statevector_need_gib(n: int, batch: int, real: bool, depth: int, entangler: str, tokens: int,
                         backward: bool) -> float:
    """Rough peak-memory estimate (GiB) of the statevector token update; it decides what runs.

    With ``S = B · 2^n · itemsize`` (8 bytes float64, 16 complex128): a forward holds the state, a
    permuted copy and the result, ``3S``, plus the dense ``(2^n x 2^n)`` entangler where QLAM uses
    one (n <= 10). Forward+backward also keeps every operation's input state for the backward:
    per token ``n`` rotations and one dense product (n <= 10), or ``n`` rotations, ``n - 1`` gates
    and, for ``cz``/``cnot``, ``depth · n`` rotations after the layers (gate by gate, n > 10).
    The measured peak of every configuration that runs is in the table beside it.
    """
    item = 8 if real else 16
    state = batch * 2.0 ** n * item
    dense = n <= DENSE_ENTANGLER_MAX_QUBITS
    matrix = 4.0 ** n * item if dense else 0.0
    if not backward:
        return (3 * state + matrix) / GIB
    ops = n + 1 if dense else n + (n - 1) + (depth * n if entangler != "su4" else 0)
    return ((ops * tokens + 3) * state + 3 * matrix) / GIB


def predict_statevector_time(measured: list, n: int) -> float | None:
    """Predicted statevector forward seconds per token at ``n`` from ``measured`` ``[(n_i, t_i), ...]``.

    From the last point, ``t · 2^Δn · n/n_last`` (every gate touches all 2^n amplitudes and there
    are about n of them per layer), or, with two points, the growth per qubit they show
    extrapolated, whichever is larger: the second catches the extra slow-down once the state
    outgrows the caches. None without a measured point.
    """
    if not measured:
        return None
    n1, t1 = measured[-1]
    guess = t1 * 2.0 ** (n - n1) * n / n1
    if len(measured) >= 2:
        n0, t0 = measured[-2]
        guess = max(guess, t1 * (t1 / t0) ** ((n - n1) / (n1 - n0)))
    return guess


def _state_sum(memory) -> torch.Tensor:
    """Sum of the real parts of every entry of the state: a cheap scalar that depends on every site."""
    parts = memory.tensors if hasattr(memory, "tensors") else [memory.psi]
    return sum(t.real.sum() for t in parts)


def measure_token(spec: dict) -> dict:
    """Time, memory and truncation of the QLAM token update for one configuration.

    ``spec``: ``backend`` (mps | statevector), ``n``, ``chi`` (None for the statevector),
    ``batch``, ``dtype`` (real | complex), ``tokens``, ``features``, ``depth``, ``entangler``,
    ``repeats``, ``min_time``, ``slow_s``, ``threads``, ``seed``, ``backward`` (also time
    forward+backward), ``isolated`` (record peak memory: only meaningful in a fresh process).

    Returns ``fwd_ms_per_token``, ``fwdbwd_ms_per_token`` (None unless ``backward``), the peak
    RSS fields (None unless ``isolated``), ``discarded_per_token`` and, for the MPS, ``bond_max``
    and ``saturated``.
    """
    torch.set_num_threads(spec["threads"])
    base = peak_rss_mb()
    n, batch, k, real = spec["n"], spec["batch"], spec["tokens"], spec["dtype"] == "real"
    mps = spec["backend"] == "mps"
    torch.manual_seed(spec["seed"])
    model = QLAM(spec["features"], n_qubits=n, bond_dim=spec["chi"], backend=spec["backend"], real=real,
                 depth=spec["depth"], entangler=spec["entangler"]).double()
    g = torch.Generator().manual_seed(spec["seed"])
    x = torch.randn(batch, k, spec["features"], dtype=torch.float64, generator=g)
    if mps:
        saturated = saturated_state(n, spec["chi"], batch, real, g)
        start = saturated.copy
    else:
        def start():
            return model.new_memory(batch, "cpu")
    with torch.no_grad():
        gates_const = model.token_gates()
    last = {}

    def fwd(tokens: int) -> float:
        mem = start()
        with torch.no_grad():
            t0 = time.perf_counter()
            for t in range(tokens):
                model.update(mem, x[:, t], gates_const)
            dt = time.perf_counter() - t0
        last["memory"] = mem
        return dt

    fwd(1)  # warm-up: contraction plans, LAPACK workspaces, first-touch allocations
    t_fwd = fastest_of(lambda: fwd(k), spec["repeats"], spec["min_time"], spec["slow_s"])
    fwd_peak = peak_rss_mb()
    mem = last["memory"]
    out = {"fwd_ms_per_token": 1e3 * t_fwd / k, "fwdbwd_ms_per_token": None,
           "discarded_per_token": float(mem.discarded_weight.mean()) / k}
    if mps:
        out["bond_max"] = max(mem.bond_dims)
        out["saturated"] = mem.bond_dims == bond_dims(n, spec["chi"])[1:-1]
    if spec["backward"]:
        gates = model.token_gates()
        inputs = list(model.encoder.parameters()) + [t for t in gates.tensors() if t.requires_grad]

        def fwdbwd(tokens: int) -> float:
            mem = start()
            t0 = time.perf_counter()
            for t in range(tokens):
                model.update(mem, x[:, t], gates)
            # Gradients stop at the entangler's tensors: its construction from its parameters
            # happens once per sequence in training and is not part of a token's cost.
            torch.autograd.grad(_state_sum(mem), inputs, allow_unused=True)
            return time.perf_counter() - t0

        fwdbwd(1)
        t_bwd = fastest_of(lambda: fwdbwd(k), spec["repeats"], spec["min_time"], spec["slow_s"])
        out["fwdbwd_ms_per_token"] = 1e3 * t_bwd / k
    if spec["isolated"]:
        out.update(rss_base_mb=base, fwd_peak_rss_mb=fwd_peak,
                   fwdbwd_peak_rss_mb=peak_rss_mb() if spec["backward"] else None)
    return out


def _run_spec(spec: dict) -> dict:
    """``measure_token(spec)`` in a fresh spawned process (or here, when not isolated).

    A configuration that runs out of memory becomes a row saying so instead of ending the sweep.
    """
    try:
        if not spec["isolated"]:
            return measure_token(spec)
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(measure_token, spec).result()
    except BrokenProcessPool:
        return {"status": "failed: the worker process died (killed for memory?)"}
    except (MemoryError, RuntimeError) as exc:  # torch reports a failed allocation as RuntimeError
        return {"status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


# ----------------------------------------------------------------------------------------------
# Sequence sweep: QLAM against a matched causal Transformer
# ----------------------------------------------------------------------------------------------

def sequence_models(n: int, chi: int, features: int, classes: int, depth: int, entangler: str,
                    dtype: torch.dtype, seed: int = 0):
    """The QLAM classifier (MPS) and a causal Transformer with matched parameter counts.

    The Transformer (defaults: 2 heads, 1 layer, sinusoidal positions) gets the ``d_model`` whose
    count is closest to the QLAM's at its default head width; the QLAM's head width is then
    matched to that count (``d_model`` moves in steps of the head count, so matching the
    Transformer alone can miss by more than 10%). Returns ``(qlam, transformer, info)``.
    """
    cfg = dict(n_qubits=n, bond_dim=chi, backend="mps", depth=depth, entangler=entangler)
    torch.manual_seed(seed)
    d_model = match_hidden_size("transformer", count_parameters(build("qlam", features, classes, **cfg)),
                                features, classes, tol=float("inf"))
    transformer = build("transformer", features, classes, d_model=d_model).to(dtype)
    target = count_parameters(transformer)
    head = match_hidden_size("qlam", target, features, classes, **cfg)
    qlam = build("qlam", features, classes, head_hidden=head, **cfg).to(dtype)
    info = {"qlam": {**cfg, "head_hidden": head, "params": count_parameters(qlam)},
            "transformer": {"d_model": d_model, "nhead": transformer.config.nhead,
                            "num_layers": transformer.config.num_layers, "params": target}}
    return qlam, transformer, info


class _SaturatedStart(torch.nn.Module):
    """``model``'s forward, ``(B, T, F) -> (B, C)`` logits, with its fresh memory replaced by a copy of
    ``saturated`` (an MPS of batch B).

    Every token then costs what a token costs deep into a long sequence; everything else (the
    encoder, the readout, the head) is ``model``'s own forward.
    """

    def __init__(self, model, saturated):
        super().__init__()
        self.model = model
        self.saturated = saturated

    def forward(self, x):
        return self.model(x, memory=self.saturated)


def _time_sequence(model, x, y, mode: str, repeats: int, min_time: float, slow_s: float) -> float:
    """Seconds of one ``mode`` (fwd | fwdbwd) pass of ``model`` over ``x (B, T, F)``, fastest of the runs."""
    def run() -> float:
        t0 = time.perf_counter()
        if mode == "fwd":
            with torch.no_grad():
                model(x)
        else:
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
        return time.perf_counter() - t0

    model.train(mode == "fwdbwd")
    return fastest_of(run, repeats, min_time, slow_s)


# ----------------------------------------------------------------------------------------------
# Tables and plots
# ----------------------------------------------------------------------------------------------

def _fmt(v, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, spec)


def token_table(rows: list[dict]) -> str:
    """Markdown table of the per-token rows (times in ms per token, memory in MB)."""
    head = ("| backend | n | χ | B | dtype | fwd (ms/token) | fwd+bwd (ms/token) | peak RSS fwd / fwd+bwd (MB) "
            "| discarded / token | GFLOP/s | % of peak | status |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        rss = (f"{_fmt(r.get('fwd_peak_rss_mb'), '.0f')} / {_fmt(r.get('fwdbwd_peak_rss_mb'), '.0f')}"
               if r.get("fwd_peak_rss_mb") is not None else "–")
        frac = r.get("fraction_of_peak")
        lines.append(f"| {r['backend']} | {r['n']} | {r['chi'] or '–'} | {r['batch']} | {r['dtype']} "
                     f"| {_fmt(r.get('fwd_ms_per_token'))} | {_fmt(r.get('fwdbwd_ms_per_token'))} | {rss} "
                     f"| {_fmt(r.get('discarded_per_token'), '.2e')} | {_fmt(r.get('fwd_gflops'))} "
                     f"| {_fmt(None if frac is None else 100 * frac, '.2g')} | {r['status']} |")
    return "\n".join(lines)


def sequence_table(rows: list[dict]) -> str:
    """Markdown table of the sequence rows: seconds per whole sequence, one row per T."""
    Ts = sorted({r["T"] for r in rows})
    cols = [("qlam", "fresh", "fwd"), ("qlam", "saturated", "fwd"), ("transformer", "", "fwd"),
            ("qlam", "fresh", "fwdbwd"), ("transformer", "", "fwdbwd")]
    names = ["QLAM fwd, fresh (s)", "QLAM fwd, saturated (s)", "Transformer fwd (s)",
             "QLAM fwd+bwd, fresh (s)", "Transformer fwd+bwd (s)"]
    index = {(r["model"], r["start"], r["mode"], r["T"]): r["seconds"] for r in rows}
    lines = ["| T | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for T in Ts:
        lines.append(f"| {T} | " + " | ".join(_fmt(index.get((*c, T)), ".4g") for c in cols) + " |")
    return "\n".join(lines)


def fits_table(fits: list[dict]) -> str:
    """Markdown table of the slope fits (slope ± standard error, fit range, points)."""
    lines = ["| time vs | series | fit range | points | slope ± s.e. | expected |", "|---|---|---|---|---|---|"]
    for f in fits:
        fit = f["fit"]
        slope = "–" if fit is None else f"{fit['slope']:.3f} ± {_fmt(fit['slope_se'], '.3f')}"
        rng = "–" if fit is None else f"{fit['x_min']:g}–{fit['x_max']:g}"
        lines.append(f"| {f['vs']} | {f['series']} | {rng} | {0 if fit is None else fit['points']} | {slope} "
                     f"| {f['expected']} |")
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series_key(r: dict) -> tuple:
    return (r["batch"], r["dtype"])


def _log2_axis(ax) -> None:
    """Base-2 log x axis with plain numbers (the grids are powers of two)."""
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())


def _plot_token_sweep(out: Path, rows: list[dict], x_key: str, fits: list[dict], sv_rows: list[dict],
                      sv_stops: dict, name: str, xlabel: str, title: str):
    """Per-token time vs ``x_key`` (MPS, with fitted lines), statevector points and where it stops."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, mode in zip(axes, ("fwd", "fwdbwd")):
        col = f"{mode}_ms_per_token"
        for key in sorted({_series_key(r) for r in rows}):
            pts = sorted((r[x_key], r[col]) for r in rows if _series_key(r) == key and r.get(col))
            if not pts:
                continue
            line, = ax.plot(*zip(*pts), "o-", ms=4, lw=1, label=f"MPS B={key[0]} {key[1]}")
            fit = next((f["fit"] for f in fits if f["mode"] == mode and f["key"] == key and f["fit"]), None)
            if fit:
                xs = np.geomspace(fit["x_min"], fit["x_max"], 20)
                ax.plot(xs, np.exp(fit["intercept"]) * xs ** fit["slope"], "--", color=line.get_color(), lw=0.8,
                        label=f"fit slope {fit['slope']:.2f}")
        for key in sorted({_series_key(r) for r in sv_rows}):
            pts = sorted((r["n"], r[col]) for r in sv_rows if _series_key(r) == key and r.get(col))
            if pts:
                ax.plot(*zip(*pts), "s:", ms=3, lw=0.8, label=f"statevector B={key[0]} {key[1]}")
        stops: dict[int, list[str]] = {}
        for series, n_stop in sv_stops.items():
            stops.setdefault(n_stop, []).append(series)
        for n_stop, series in sorted(stops.items()):
            ax.axvline(n_stop, color="0.6", lw=0.8, ls="-.",
                       label=f"statevector does not fit from n={n_stop} ({'; '.join(series)})")
        _log2_axis(ax)
        ax.set(yscale="log", xlabel=xlabel, ylabel="ms per token",
               title=f"{title}, {'forward' if mode == 'fwd' else 'forward+backward'}")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / name, dpi=120)
    plt.close(fig)


def _plot_sequence(out: Path, rows: list[dict], fits: dict, crossovers: dict):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, mode in zip(axes, ("fwd", "fwdbwd")):
        T_hi = max(r["T"] for r in rows)
        for (model, start) in (("qlam", "fresh"), ("qlam", "saturated"), ("transformer", "")):
            pts = sorted((r["T"], r["seconds"]) for r in rows
                         if (r["model"], r["start"], r["mode"]) == (model, start, mode))
            if not pts:
                continue
            label = f"QLAM ({start})" if model == "qlam" else "Transformer"
            line, = ax.plot(*zip(*pts), "o", ms=4, label=label)
            fit = fits.get(f"{mode}/{model}/{start}" if model == "qlam" else f"{mode}/transformer")
            if fit is None:
                continue
            cross = crossovers.get(f"{mode}/fresh", {}).get("extrapolated_T")
            x_end = max(T_hi, min(2 * cross, 1e9)) if cross else T_hi
            xs = np.geomspace(pts[0][0], x_end, 60)
            ys = (np.exp(fit["intercept"]) * xs ** fit["slope"] if model == "qlam"
                  else fit["c"] + fit["a"] * xs + fit["b"] * xs * xs)
            what = f"T^{fit['slope']:.2f}" if model == "qlam" else "c + a·T + b·T²"
            ax.plot(xs, ys, "--", color=line.get_color(), lw=0.8, label=f"fit {what} (extrapolated past T={T_hi})")
        for start in ("fresh", "saturated"):
            c = crossovers.get(f"{mode}/{start}")
            if c and c["measured"]["T"] is not None:
                ax.axvline(c["measured"]["T"], color="k", lw=0.6, ls=":", label=f"crossover ({start}, measured)")
            elif c and c["extrapolated_T"] is not None and start == "fresh":
                ax.axvline(c["extrapolated_T"], color="r", lw=0.6, ls=":", label="crossover (fresh, extrapolated)")
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="seconds per sequence",
               title="forward" if mode == "fwd" else "forward+backward")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "time_vs_T.png", dpi=120)
    plt.close(fig)


def _plot_gflops(out: Path, n_rows: list[dict], chi_rows: list[dict]):
    plt = _plt()
    panels = [(rows, x_key, xlabel) for rows, x_key, xlabel in
              ((n_rows, "n", "qubits n"), (chi_rows, "chi", "bond dimension χ")) if rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (rows, x_key, xlabel) in zip(axes[0], panels):
        for key in sorted({_series_key(r) for r in rows}):
            pts = sorted((r[x_key], 100 * r["fraction_of_peak"]) for r in rows
                         if _series_key(r) == key and r.get("fraction_of_peak"))
            if pts:
                ax.plot(*zip(*pts), "o-", ms=4, lw=1, label=f"B={key[0]} {key[1]}")
        _log2_axis(ax)
        ax.set(yscale="log", xlabel=xlabel, ylabel="% of matmul peak", title="token update GFLOP/s, forward")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "gflops.png", dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qlam scale", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/scale", help="run folder (default runs/scale)")
    p.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=SWEEPS, help="which sweeps (default all)")
    g = p.add_argument_group("per-token sweeps (n, chi, sv)")
    g.add_argument("--n", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128, 256], help="qubits of the n sweep")
    g.add_argument("--n-chi", type=int, default=16, help="χ of the n sweep")
    g.add_argument("--chi", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="bond caps of the χ sweep")
    g.add_argument("--chi-n", type=int, default=32, help="n of the χ sweep")
    g.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes")
    g.add_argument("--dtypes", nargs="+", default=["real", "complex"], choices=sorted(STATE_DTYPES),
                   help="real: float64 state; complex: complex128 state")
    g.add_argument("--sv-n", type=int, nargs="+", default=[4, 8, 12, 16, 20, 24, 28],
                   help="statevector n to try, besides --n")
    g.add_argument("--sv-max-gib", type=float, default=8.0, help="statevector memory estimate cap (GiB)")
    g.add_argument("--sv-max-token-s", type=float, default=5.0,
                   help="skip a statevector n predicted to take longer per token (s)")
    g.add_argument("--tokens", type=int, default=2, help="token updates per timed run")
    g.add_argument("--depth", type=int, default=2, help="brickwork layers per token")
    g.add_argument("--entangler", default="cz", choices=["cz", "cnot", "su4"])
    g.add_argument("--features", type=int, default=28, help="token features F")
    g.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run configurations in this process (faster; no peak memory)")
    g = p.add_argument_group("sequence sweep (T)")
    g.add_argument("--T", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192, 16384],
                   help="sequence lengths")
    g.add_argument("--T-n", type=int, default=8, help="QLAM qubits in the T sweep")
    g.add_argument("--T-chi", type=int, default=8, help="QLAM bond cap in the T sweep")
    g.add_argument("--T-batch", type=int, default=1, help="batch size in the T sweep")
    g.add_argument("--T-dtype", default="float32", choices=sorted(SEQ_DTYPES), help="both models' dtype")
    g.add_argument("--T-backward-max", type=int, default=2048,
                   help="longest T for QLAM forward+backward (0: none)")
    g.add_argument("--T-repeats", type=int, default=1, help="least timed runs per sequence measurement")
    g.add_argument("--classes", type=int, default=10, help="classifier outputs (sets the parameter count)")
    g = p.add_argument_group("timing and fits")
    g.add_argument("--repeats", type=int, default=2, help="least timed runs per per-token measurement")
    g.add_argument("--min-time", type=float, default=0.5, help="least total seconds of timed runs")
    g.add_argument("--slow-s", type=float, default=10.0, help="one timed run suffices once a run takes this long")
    g.add_argument("--peak-sizes", type=int, nargs="+", default=[256, 512, 1024],
                   help="square matmul sizes for the peak GFLOP/s")
    g.add_argument("--fit-n-min", type=int, default=16, help="smallest n in the time-vs-n fits")
    g.add_argument("--fit-chi-min", type=int, default=16, help="smallest χ in the time-vs-χ fits")
    g.add_argument("--threads", type=int, default=2, help="torch threads")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--quick", action="store_true",
                   help="a tiny sweep of every kind (≈ 1-2 min); overrides the grid and timing flags")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    return p


QUICK = dict(n=[4, 8], n_chi=4, chi=[2, 4], chi_n=8, batch=[1, 4], sv_n=[4, 8, 12],
             T=[64, 128, 256, 512], T_n=4, T_chi=2, T_backward_max=128, tokens=1, repeats=1,
             min_time=0.05, fit_n_min=4, fit_chi_min=2, peak_sizes=[128, 256])


def _check_args(p: argparse.ArgumentParser, args) -> None:
    def positive(name, values, low=1):
        for v in values if isinstance(values, list) else [values]:
            if v < low:
                p.error(f"--{name.replace('_', '-')} must be >= {low}, got {v}")

    for name in ("n", "sv_n"):
        positive(name, getattr(args, name), 2)
    positive("chi_n", args.chi_n, 2)
    positive("T_n", args.T_n, 2)
    for name in ("chi", "n_chi", "batch", "T", "T_chi", "peak_sizes", "T_batch", "tokens", "depth", "features",
                 "repeats", "T_repeats", "fit_n_min", "fit_chi_min", "threads"):
        positive(name, getattr(args, name))
    positive("classes", args.classes, 2)
    positive("T_backward_max", args.T_backward_max, 0)
    for name in ("sv_max_gib", "sv_max_token_s", "slow_s"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if not args.min_time >= 0:
        p.error(f"--min-time must be >= 0, got {args.min_time}")
    for name in ("n", "chi", "batch", "sv_n", "T", "dtypes", "sweeps", "peak_sizes"):
        setattr(args, name, sorted(set(getattr(args, name)), key=getattr(args, name).index))
    for name in ("n", "chi", "sv_n", "T"):
        setattr(args, name, sorted(getattr(args, name)))


def _token_specs(args) -> list[dict]:
    """Every per-token configuration to measure, without repeats: for each batch size and dtype (in
    the order given), the n sweep, the χ sweep, then the statevector in increasing n (which the
    time prediction of :func:`predict_statevector_time` relies on)."""
    common = dict(tokens=args.tokens, features=args.features, depth=args.depth, entangler=args.entangler,
                  repeats=args.repeats, min_time=args.min_time, slow_s=args.slow_s, threads=args.threads,
                  seed=args.seed, isolated=args.isolate)
    specs, seen = [], set()
    grid = []
    if "n" in args.sweeps:
        grid += [("mps", n, args.n_chi) for n in args.n]
    if "chi" in args.sweeps:
        grid += [("mps", args.chi_n, chi) for chi in args.chi]
    if "sv" in args.sweeps:
        grid += [("statevector", n, None) for n in sorted(set(args.sv_n) | set(args.n))]
    for batch in args.batch:
        for dtype in args.dtypes:
            for backend, n, chi in grid:
                key = (backend, n, chi, batch, dtype)
                if key not in seen:
                    seen.add(key)
                    specs.append({**common, "backend": backend, "n": n, "chi": chi, "batch": batch, "dtype": dtype,
                                  "backward": True})
    return specs


def _gib(v: float) -> str:
    return f"{v:.3g} GiB"


def _token_row(spec: dict, args, peak, predicted_s: float | None) -> dict:
    """Measure one per-token configuration into a table row, unless it is a statevector that would
    not fit in memory or whose predicted forward time per token (``predicted_s``) is too long."""
    real = spec["dtype"] == "real"
    row = {"sweep": "token", "backend": spec["backend"], "n": spec["n"], "chi": spec["chi"], "batch": spec["batch"],
           "dtype": STATE_DTYPES[spec["dtype"]], "tokens": spec["tokens"], "depth": spec["depth"],
           "entangler": spec["entangler"], "threads": spec["threads"], "status": "ok"}
    if spec["backend"] == "statevector":
        need = {mode: statevector_need_gib(spec["n"], spec["batch"], real, spec["depth"], spec["entangler"],
                                           spec["tokens"], mode == "fwdbwd") for mode in ("fwd", "fwdbwd")}
        row.update(est_fwd_gib=need["fwd"], est_fwdbwd_gib=need["fwdbwd"])
        if need["fwd"] > args.sv_max_gib:
            row["status"] = f"does not fit: needs ≈ {_gib(need['fwd'])} (> {args.sv_max_gib:g} GiB)"
            return row
        if predicted_s is not None and predicted_s > args.sv_max_token_s:
            row.update(predicted_s_per_token=predicted_s,
                       status=f"skipped: predicted ≈ {predicted_s:.3g} s per token (> {args.sv_max_token_s:g} s)")
            return row
        spec = {**spec, "backward": need["fwdbwd"] <= args.sv_max_gib}
        if not spec["backward"]:
            row["status"] = f"fwd only: fwd+bwd needs ≈ {_gib(need['fwdbwd'])}"
    result = _run_spec(spec)
    row["status"] = result.pop("status", row["status"])
    row.update(result)
    if spec["backend"] == "mps" and row.get("fwd_ms_per_token"):
        pairs = [(q, q + 1) for layer in range(spec["depth"]) for q in range(layer % 2, spec["n"] - 1, 2)]
        cost = token_update_cost(spec["n"], spec["chi"], spec["batch"], depth=1, real=real, pairs=pairs)
        # cz/cnot layers are followed by a rotation on every qubit: the same count as the
        # encoding rotations, once per layer.
        flops = cost.flops + (spec["depth"] * cost.breakdown["rotations"] if spec["entangler"] != "su4" else 0)
        gflops = flops / (row["fwd_ms_per_token"] / 1e3) / 1e9
        top = peak.gflops[STATE_DTYPES[spec["dtype"]]]
        row.update(gflop_per_token=flops / 1e9, fwd_gflops=gflops, peak_gflops=top, fraction_of_peak=gflops / top)
    return row


def _sequence_sweep(args, progress, keep) -> dict:
    """The T sweep: ``keep(row)`` for every (model, start, mode, T), ``progress(text)`` before each.

    Returns the two models' descriptions from :func:`sequence_models`.
    """
    dtype = SEQ_DTYPES[args.T_dtype]
    qlam, transformer, info = sequence_models(args.T_n, args.T_chi, args.features, args.classes, args.depth,
                                              args.entangler, dtype, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    qlam_sat = _SaturatedStart(qlam, saturated_state(args.T_n, args.T_chi, args.T_batch, True, g).to(dtype=dtype))
    warm = torch.randn(args.T_batch, 16, args.features, generator=g).to(dtype)
    warm_y = torch.randint(0, args.classes, (args.T_batch,), generator=g)
    warm_ups = [(qlam, "fwd"), (qlam_sat, "fwd")] + ([(qlam, "fwdbwd")] if args.T_backward_max else [])
    for model, mode in warm_ups:
        _time_sequence(model, warm, warm_y, mode, 1, 0.0, 0.0)  # contraction plans, LAPACK workspaces
    for T in args.T:
        x = torch.randn(args.T_batch, T, args.features, generator=g).to(dtype)
        y = torch.randint(0, args.classes, (args.T_batch,), generator=g)
        jobs = [("transformer", "", "fwd", transformer), ("transformer", "", "fwdbwd", transformer),
                ("qlam", "fresh", "fwd", qlam), ("qlam", "saturated", "fwd", qlam_sat)]
        if T <= args.T_backward_max:
            jobs.append(("qlam", "fresh", "fwdbwd", qlam))
        for name, start, mode, model in jobs:
            progress(f"{name} {start} {mode} T={T}")
            if name == "transformer":  # a first call at a new length allocates its buffers
                _time_sequence(model, x, y, mode, 1, 0.0, 0.0)
            seconds = _time_sequence(model, x, y, mode, args.T_repeats, args.min_time, args.slow_s)
            row = {"sweep": "sequence", "model": name, "start": start, "mode": mode, "T": T, "batch": args.T_batch,
                   "dtype": args.T_dtype, "threads": args.threads, "params": info[name]["params"],
                   "seconds": seconds, "ms_per_token": 1e3 * seconds / T, "status": "ok"}
            if name == "qlam":
                row["discarded_per_token"] = float(qlam.qlam.last_discarded_weight.mean()) / T
            keep(row)
    return info


def _token_fits(args, n_rows, chi_rows, sv_rows) -> list[dict]:
    """Slope fits of the per-token sweeps, one per (batch, dtype, mode) series."""
    fits = []

    def add(vs, rows, x_key, low, expected, fitter=loglog_fit):
        for key in sorted({_series_key(r) for r in rows}):
            for mode in ("fwd", "fwdbwd"):
                col = f"{mode}_ms_per_token"
                pts = [(r[x_key], r[col]) for r in rows if _series_key(r) == key and r.get(col) and r[x_key] >= low]
                fit = fitter(*zip(*pts)) if len({x for x, _ in pts}) >= 2 else None
                fits.append({"vs": vs, "series": f"B={key[0]} {key[1]} {mode}", "key": key, "mode": mode,
                             "fit": fit, "expected": expected})

    add(f"n (MPS, χ={args.n_chi})", n_rows, "n", args.fit_n_min, "~1")
    add(f"χ (MPS, n={args.chi_n})", chi_rows, "chi", args.fit_chi_min, "~3 at large χ")
    # n <= DENSE_ENTANGLER_MAX_QUBITS multiplies by one dense matrix, a different algorithm: fit above it.
    add("n (statevector), log2 t per qubit", sv_rows, "n", DENSE_ENTANGLER_MAX_QUBITS + 1, "~1 (t ∝ n·2^n)",
        exponential_fit)
    return fits


def _sequence_fits(seq_rows) -> tuple[list[dict], dict, dict]:
    """Fits of the T sweep and the crossovers: ``(table entries, fits by name, crossovers by name)``."""
    def series(model, start, mode):
        return sorted((r["T"], r["seconds"]) for r in seq_rows
                      if (r["model"], r["start"], r["mode"]) == (model, start, mode))

    qlam_series = (("fwd", "fresh"), ("fwd", "saturated"), ("fwdbwd", "fresh"))
    entries, fits, crossovers = [], {}, {}
    for mode, start in qlam_series:
        pts = series("qlam", start, mode)
        if len(pts) >= 2:
            fits[f"{mode}/qlam/{start}"] = fit = loglog_fit(*zip(*pts))
            entries.append({"vs": "T (QLAM, whole sequence)", "series": f"{start} {mode}", "key": None, "mode": mode,
                            "fit": fit, "expected": "1.00"})
    for mode in ("fwd", "fwdbwd"):
        pts = series("transformer", "", mode)
        if len(pts) >= 3:
            fits[f"{mode}/transformer"] = linear_quadratic_fit(*zip(*pts))
            entries.append({"vs": "T (Transformer, whole sequence)", "series": f"{mode}, all T", "key": None,
                            "mode": mode, "fit": loglog_fit(*zip(*pts)), "expected": "1 → 2 as attention dominates"})
    for mode, start in qlam_series:
        q, tr = dict(series("qlam", start, mode)), dict(series("transformer", "", mode))
        common = sorted(set(q) & set(tr))
        if len(common) < 2 or f"{mode}/transformer" not in fits:
            continue
        crossovers[f"{mode}/{start}"] = {
            "measured": crossover(common, [q[T] for T in common], [tr[T] for T in common]),
            "extrapolated_T": extrapolated_crossover(fits[f"{mode}/qlam/{start}"], fits[f"{mode}/transformer"],
                                                     common[-1]),
            "T_range": [common[0], common[-1]]}
    return entries, fits, crossovers


def _statevector_limits(sv_rows) -> dict:
    """Per (batch, dtype): the largest n that ran (forward; forward+backward), the first n over the
    memory cap above them (and its estimate), and the first n skipped as too slow (and its prediction)."""
    limits = {}
    for key in sorted({_series_key(r) for r in sv_rows}):
        rs = sorted((r for r in sv_rows if _series_key(r) == key), key=lambda r: r["n"])
        ran = [r["n"] for r in rs if r.get("fwd_ms_per_token")]
        ran_bwd = [r["n"] for r in rs if r.get("fwdbwd_ms_per_token")]
        # Where it stops: the smallest n above every n that ran whose estimate exceeds the cap.
        stop = next((r for r in rs if r["status"].startswith("does not fit") and r["n"] > max(ran, default=0)), None)
        slow = next((r for r in rs if r["status"].startswith("skipped")), None)
        limits[f"B={key[0]} {key[1]}"] = {
            "largest_n_fwd": max(ran, default=None), "largest_n_fwdbwd": max(ran_bwd, default=None),
            "first_n_not_fitting": stop["n"] if stop else None,
            "its_estimate_gib": stop["est_fwd_gib"] if stop else None,
            "first_n_skipped_for_time": slow["n"] if slow else None,
            "its_predicted_s_per_token": slow["predicted_s_per_token"] if slow else None}
    return limits


def _crossover_lines(crossovers: dict) -> str:
    lines = []
    for name, c in crossovers.items():
        m = c["measured"]
        if m["where"] == "in range":
            text = f"measured at T ≈ {m['T']:.0f}"
        elif m["where"] == "at or below the smallest T":
            text = f"at or below T={m['T']:.0f} (the Transformer is already slower there)"
        else:
            text = (f"no crossover in T {c['T_range'][0]}–{c['T_range'][1]}; extrapolated from the fits: "
                    + (f"T ≈ {c['extrapolated_T']:.3g}" if c["extrapolated_T"] else "none below 1e15"))
        lines.append(f"- crossover ({name.replace('/', ', ')} QLAM): {text}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    _check_args(p, args)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", vars(args))
    atomic_write_json(out / "env.json", environment(torch.device("cpu")))
    peak = measure_matmul_peak(dtypes=(torch.float64, torch.complex128), sizes=tuple(args.peak_sizes),
                               min_time=0.05 if args.quick else 0.2)

    specs = _token_specs(args)
    seq_jobs = sum(4 + (T <= args.T_backward_max) for T in args.T) if "T" in args.sweeps else 0
    rows: list[dict] = []
    bar = tqdm(total=len(specs) + seq_jobs, disable=not args.progress, file=sys.stderr, dynamic_ncols=True)

    def keep(row: dict) -> None:
        rows.append(row)
        atomic_write_csv(out / "results.csv", rows)
        atomic_write_json(out / "results.json", rows)
        bar.update()

    sv_measured: dict[tuple, list] = {}  # (batch, dtype) -> measured [(n, s per token), ...]
    for spec in specs:
        bar.set_description(f"{spec['backend']} n={spec['n']} χ={spec['chi']} B={spec['batch']} {spec['dtype']}")
        series = (spec["batch"], spec["dtype"])
        is_sv = spec["backend"] == "statevector"
        predicted = predict_statevector_time(sv_measured.get(series, []), spec["n"]) if is_sv else None
        row = _token_row(spec, args, peak, predicted)
        if is_sv and row.get("fwd_ms_per_token"):
            sv_measured.setdefault(series, []).append((spec["n"], row["fwd_ms_per_token"] / 1e3))
        keep(row)
        bar.write(f"{row['backend']} n={row['n']} χ={row['chi']} B={row['batch']} {row['dtype']}: "
                  f"fwd {_fmt(row.get('fwd_ms_per_token'))} ms/token, fwd+bwd "
                  f"{_fmt(row.get('fwdbwd_ms_per_token'))} ms/token, {row['status']}")
    seq_info = _sequence_sweep(args, bar.set_description, keep) if "T" in args.sweeps else None
    bar.close()

    token_rows = [r for r in rows if r["sweep"] == "token"]
    seq_rows = [r for r in rows if r["sweep"] == "sequence"]
    mps_rows = [r for r in token_rows if r["backend"] == "mps"]
    n_rows = [r for r in mps_rows if r["chi"] == args.n_chi and r["n"] in args.n] if "n" in args.sweeps else []
    chi_rows = [r for r in mps_rows if r["n"] == args.chi_n and r["chi"] in args.chi] if "chi" in args.sweeps else []
    sv_rows = [r for r in token_rows if r["backend"] == "statevector"]
    fits = _token_fits(args, n_rows, chi_rows, sv_rows)
    seq_entries, seq_fits, crossovers = _sequence_fits(seq_rows)
    fits += seq_entries
    sv_limits = _statevector_limits(sv_rows)
    summary = {
        "matmul_peak_gflops": peak.gflops, "threads": args.threads,
        "fits": [{k: v for k, v in f.items() if k != "key"} for f in fits],
        "sequence_fits": seq_fits, "crossover": crossovers, "sequence_models": seq_info,
        "statevector_limits": sv_limits, "seconds": time.perf_counter() - started,
    }
    atomic_write_json(out / "summary.json", summary)

    if n_rows or sv_rows:
        _plot_token_sweep(out, n_rows, "n", [f for f in fits if f["vs"].startswith("n (MPS")],
                          [r for r in sv_rows if r.get("fwd_ms_per_token")],
                          {k: v["first_n_not_fitting"] for k, v in sv_limits.items() if v["first_n_not_fitting"]},
                          "time_vs_n.png", "qubits n", f"time per token vs n (χ={args.n_chi})")
    if chi_rows:
        _plot_token_sweep(out, chi_rows, "chi", [f for f in fits if f["vs"].startswith("χ")], [], {},
                          "time_vs_chi.png", "bond dimension χ", f"time per token vs χ (n={args.chi_n})")
    if n_rows or chi_rows:
        _plot_gflops(out, n_rows, chi_rows)
    if seq_rows:
        _plot_sequence(out, seq_rows, seq_fits, crossovers)

    parts = [f"torch {torch.__version__}, {args.threads} threads; matmul peak "
             + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peak.gflops.items())]
    if token_rows:
        parts.append(token_table(token_rows))
    if fits:
        parts.append(fits_table(fits))
    if seq_rows:
        q, t = seq_info["qlam"], seq_info["transformer"]
        parts.append(f"Sequence sweep: QLAM MPS n={q['n_qubits']} χ={q['bond_dim']} head_hidden={q['head_hidden']} "
                     f"({q['params']} parameters) vs causal Transformer d_model={t['d_model']} ({t['params']} "
                     f"parameters), B={args.T_batch}, {args.T_dtype}\n\n" + sequence_table(seq_rows))
        parts.append(_crossover_lines(crossovers))
    text = "\n\n".join(parts) + "\n"
    atomic_write_text(out / "tables.md", text)
    print(text)
    print(f"run folder: {out} ({summary['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
