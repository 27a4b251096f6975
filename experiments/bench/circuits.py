"""Application circuits on the MPS backend against Qiskit Aer's MPS and quimb's CircuitMPS.

Circuits from Qiskit's circuit library (QFT, ripple-carry and QFT adders, a QFT multiplier,
quantum volume) and generators of this module (QAOA on random 3-regular graphs, Trotterised
Ising and Heisenberg chains, GHZ, Bernstein-Vazirani), 30-100 qubits, each transpiled to Qiskit's
``cx`` + ``u`` basis (what published OpenQASM 2.0 circuits hold) and read with
``Circuit.from_qiskit``. Each is run, in one process, by

- ``qlam_tn``: ``simulate(c, backend="mps", max_bond=χ)`` (the planned route) and ``<Z_q>`` for
  every qubit (``rdm1``, one sweep);
- ``before``: the same with ``plan=False`` (gate by gate, SWAP chains there and back);
- ``Aer``: ``AerSimulator(method="matrix_product_state")`` at the same bond and truncation
  threshold, ``save_expectation_value(Z)`` on every qubit, ``max_parallel_threads`` = torch's
  threads; the wall time of ``run().result()``;
- ``quimb``: ``CircuitMPS`` with the same ``max_bond``/``cutoff`` (``rsum2``), the time of
  applying the gates (its ``<Z_q>`` read afterwards, untimed).

Columns: seconds (fastest of ``--repeats``, one run for anything over a second; quimb and
``before`` are stopped after ``--limit`` s and shown as ``>limit``, their ratios then lower bounds), the ratios
Aer/qlam_tn, quimb/qlam_tn and before/qlam_tn (above 1: qlam_tn faster), the largest
``|<Z_q>|`` difference to Aer and to quimb, and qlam_tn's discarded weight; the last row is the
geometric mean of each ratio. Truncation: ``rsum2`` cutoff ``--cutoff`` for qlam_tn and quimb,
Aer's ``matrix_product_state_truncation_threshold`` set to it (Aer drops the smallest values
whose normalised ``Σ s²`` is below it: the same rule).

    qlam bench circuits [--quick] [--chi 64] [--threads 1] [--skip quimb] [--markdown]

Needs the ``bench`` extra (qiskit, qiskit-aer). Run it alone.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import signal
import time
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from qlam_tn.experiments.bench.table import Table, provenance
from qlam_tn.experiments.timing import fastest_of

ENGINES = ("qlam_tn", "before", "aer", "quimb")


# ---------------------------------------------------------------------------- circuits
def _basis_input(qc, qubits, seed: int):
    """An X on a random half of ``qubits`` first: a computational-basis input (not all zeros)."""
    from qiskit import QuantumCircuit

    rng = np.random.default_rng(seed)
    pre = QuantumCircuit(qc.num_qubits)
    for q in qubits:
        if rng.random() < 0.5:
            pre.x(q)
    return pre.compose(qc)


def qft(n: int):
    from qiskit.synthesis.qft import synth_qft_full

    return _basis_input(synth_qft_full(n), range(n), seed=n)


def ripple_adder(k: int):
    """Cuccaro-Draper-Kutin-Moulton ripple-carry adder of two ``k``-bit registers (2k + 2 qubits)."""
    from qiskit.synthesis import adder_ripple_c04

    return _basis_input(adder_ripple_c04(k, kind="full"), range(1, 2 * k + 1), seed=k)


# Qiskit 2.1 deprecated the adder and multiplier classes; their synthesis functions build slightly
# different circuits (a few more gates), and the recorded table (docs/benchmarks.md) used these.
def qft_adder(k: int):
    """Draper's QFT adder of two ``k``-bit registers, modulo 2**k (2k qubits)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from qiskit.circuit.library import DraperQFTAdder

        return _basis_input(DraperQFTAdder(k), range(2 * k), seed=k)


def qft_multiplier(k: int):
    """Ruiz-Garcia's QFT multiplier of two ``k``-bit registers (4k qubits)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from qiskit.circuit.library import RGQFTMultiplier

        return _basis_input(RGQFTMultiplier(k), range(2 * k), seed=k)


def random_3_regular(n: int, rng: np.random.Generator) -> List[Tuple[int, int]]:
    """Edges of a random simple 3-regular graph on ``n`` (even) vertices (pairing model, retried)."""
    if n % 2:
        raise ValueError(f"a 3-regular graph needs an even number of vertices, got {n}")
    while True:
        stubs = rng.permutation(np.repeat(np.arange(n), 3))
        edges = {tuple(sorted((int(a), int(b)))) for a, b in stubs.reshape(-1, 2)}
        if len(edges) == 3 * n // 2 and all(a != b for a, b in edges):
            return sorted(edges)


def qaoa(n: int, p: int = 2, seed: int = 0):
    """QAOA for MaxCut on a random 3-regular graph: ``p`` rounds of ZZ phases and X mixers."""
    from qiskit import QuantumCircuit

    rng = np.random.default_rng(seed)
    edges = random_3_regular(n, rng)
    qc = QuantumCircuit(n)
    qc.h(range(n))
    for _ in range(p):
        gamma, beta = rng.uniform(0, np.pi, 2)
        for a, b in edges:
            qc.rzz(float(gamma), a, b)
        qc.rx(float(2 * beta), range(n))
    return qc


def ising(n: int, steps: int = 10, dt: float = 0.1, h: float = 1.0):
    """First-order Trotter steps of the transverse-field Ising chain ``-Σ Z Z - h Σ X``."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(n)
    for _ in range(steps):
        for q in range(n - 1):
            qc.rzz(-2 * dt, q, q + 1)
        qc.rx(-2 * h * dt, range(n))
    return qc


def heisenberg(n: int, steps: int = 10, dt: float = 0.1):
    """Trotter steps of the Heisenberg chain ``Σ XX + YY + ZZ`` from a Néel state."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(n)
    qc.x(range(0, n, 2))
    for _ in range(steps):
        for start in (0, 1):
            for q in range(start, n - 1, 2):
                qc.rxx(2 * dt, q, q + 1)
                qc.ryy(2 * dt, q, q + 1)
                qc.rzz(2 * dt, q, q + 1)
    return qc


def ghz(n: int):
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(n)
    qc.h(0)
    for q in range(n - 1):
        qc.cx(q, q + 1)
    return qc


def bernstein_vazirani(n: int, seed: int = 0):
    """``n - 1`` data qubits and one ancilla (the last); every data qubit of the secret controls a
    CX onto the ancilla (long-range gates)."""
    from qiskit import QuantumCircuit

    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n)
    qc.x(n - 1)
    qc.h(range(n))
    for q in range(n - 1):
        if rng.random() < 0.5:
            qc.cx(q, n - 1)
    qc.h(range(n - 1))
    return qc


def quantum_volume(n: int, depth: int, seed: int = 1):
    from qiskit.circuit.library import QuantumVolume

    return QuantumVolume(n, depth, seed=seed)


# name -> (builder, argument) for the full suite and the quick one
SUITE: Dict[str, Tuple[Callable, tuple]] = {
    "QFT 30": (qft, (30,)),
    "QFT 63": (qft, (63,)),
    "ripple adder 2x24": (ripple_adder, (24,)),
    "QFT adder 2x16": (qft_adder, (16,)),
    "QFT multiplier 2x8": (qft_multiplier, (8,)),
    "QAOA p=1, 3-regular 40": (qaoa, (40, 1)),
    "Ising Trotter 50": (ising, (50,)),
    "Heisenberg Trotter 40": (heisenberg, (40,)),
    "GHZ 100": (ghz, (100,)),
    "Bernstein-Vazirani 60": (bernstein_vazirani, (60,)),
    "quantum volume 24x3": (quantum_volume, (24, 3)),
}
QUICK: Dict[str, Tuple[Callable, tuple]] = {
    "QFT 30": (qft, (30,)),
    "ripple adder 2x14": (ripple_adder, (14,)),
    "QAOA p=2, 3-regular 30": (qaoa, (30,)),
    "Ising Trotter 30": (ising, (30,)),
    "GHZ 30": (ghz, (30,)),
    "Bernstein-Vazirani 30": (bernstein_vazirani, (30,)),
}


def transpiled(qc):
    """``qc`` in the ``cx`` + ``u`` basis (optimisation level 0: the gates as the library wrote them)."""
    from qiskit import transpile

    return transpile(qc, basis_gates=["cx", "u"], optimization_level=0)


# ---------------------------------------------------------------------------- engines
def run_qlam(c, chi: int, cutoff: float, plan: bool = True):
    """Seconds of ``simulate`` + every ``<Z_q>``, the ``<Z_q>`` and the discarded weight."""
    import qlam_tn as qt

    t0 = time.perf_counter()
    psi = qt.simulate(c, backend="mps", max_bond=chi, cutoff=cutoff, cutoff_mode="rsum2", plan=plan)
    rho = psi.rdm1()[0]  # (n, 2, 2)
    z = (rho[:, 0, 0] - rho[:, 1, 1]).real / (rho[:, 0, 0] + rho[:, 1, 1]).real
    dt = time.perf_counter() - t0
    return dt, z.numpy(), float(psi.discarded_weight[0])


def run_aer(qc, chi: int, cutoff: float):
    from qiskit.quantum_info import Pauli
    from qiskit_aer import AerSimulator

    qc = qc.copy()
    n = qc.num_qubits
    for q in range(n):
        qc.save_expectation_value(Pauli("Z"), [q], label=f"z{q}")
    sim = AerSimulator(method="matrix_product_state", matrix_product_state_max_bond_dimension=chi,
                       matrix_product_state_truncation_threshold=cutoff, max_parallel_threads=torch.get_num_threads())
    t0 = time.perf_counter()
    data = sim.run(qc, shots=1).result().data()
    dt = time.perf_counter() - t0
    return dt, np.array([float(data[f"z{q}"]) for q in range(n)]), float("nan")


def run_quimb(c, chi: int, cutoff: float):
    import quimb.tensor as qtn

    t0 = time.perf_counter()
    circ = c.to_quimb(cls=qtn.CircuitMPS, gate_opts=dict(max_bond=chi, cutoff=cutoff, cutoff_mode="rsum2"))
    dt = time.perf_counter() - t0
    import qlam_tn as qt

    # Read through the engine's MPS (quimb 1.15's local_expectation has another signature, and a
    # whole-network <psi|psi> of 50+ sites runs out of einsum letters).
    psi = qt.MPS.from_quimb(circ.psi)
    rho = psi.rdm1()[0]
    z = ((rho[:, 0, 0] - rho[:, 1, 1]).real / (rho[:, 0, 0] + rho[:, 1, 1]).real).numpy()
    return dt, z, 1 - float(psi.norm()[0]) ** 2


class OverTime(Exception):
    """An engine ran past ``--limit``."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the Python engines (quimb, the gate-by-gate route) after ``seconds`` (SIGALRM;
    no limit where the platform has none): raises ``OverTime``, also where the interrupt surfaced
    as another exception (inside a numba or C call)."""
    if not hasattr(signal, "SIGALRM") or seconds <= 0:
        yield
        return
    fired = []

    def stop(signum, frame):
        fired.append(True)
        raise OverTime()

    before = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except Exception as e:
        if fired and not isinstance(e, OverTime):
            raise OverTime() from e
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def measure(name: str, qc, engines, chi: int, cutoff: float, repeats: int, limit: float = 0.0) -> dict:
    """Every engine on one (transpiled) circuit: ``out[engine] = (seconds, <Z_q>, discarded)``;
    an engine stopped by ``limit`` seconds gets ``(limit, None, None)`` (a lower bound)."""
    import qlam_tn as qt

    c = qt.Circuit.from_qiskit(qc)
    runs = {
        "qlam_tn": lambda: run_qlam(c, chi, cutoff),
        "before": lambda: run_qlam(c, chi, cutoff, plan=False),
        "aer": lambda: run_aer(qc, chi, cutoff),
        "quimb": lambda: run_quimb(c, chi, cutoff),
    }
    out = {"name": name, "n": c.n_qubits, "gates": len(c)}
    for engine in engines:
        try:
            with time_limit(limit if engine in ("before", "quimb") else 0.0):
                first = runs[engine]()  # warm-up (compiles), and the values compared
        except OverTime:
            out[engine] = (limit, None, None)
            continue
        best = min(first[0], fastest_of(runs[engine], repeats, slow_s=1.0)) if first[0] < 5 else first[0]
        out[engine] = (best, first[1], first[2])
    return out


def _ratio(r: dict, other: str) -> Optional[float]:
    if other not in r or "qlam_tn" not in r:
        return None
    return r[other][0] / r["qlam_tn"][0]


def _fmt_ratio(x: Optional[float], bound: bool = False) -> str:
    return "—" if x is None else (">" if bound else "") + f"{x:.2f}"


def _fmt_secs(r: dict, engine: str) -> str:
    if engine not in r:
        return "—"
    return (">" if r[engine][1] is None else "") + f"{r[engine][0]:.3f}"


def _zdiff(r: dict, other: str) -> str:
    if other not in r or "qlam_tn" not in r or r[other][1] is None:
        return "—"
    return f"{float(np.max(np.abs(r['qlam_tn'][1] - r[other][1]))):.1e}"


def geometric_mean(xs: List[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(prog="qlam bench circuits", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small suite (30 qubits)")
    p.add_argument("--only", nargs="+", default=None, help="circuits whose name starts with one of these")
    p.add_argument("--chi", type=int, default=64)
    p.add_argument("--cutoff", type=float, default=1e-12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--limit", type=float, default=30.0,
                   help="seconds after which quimb and the gate-by-gate route are stopped (the ratio is then a bound)")
    p.add_argument("--skip", nargs="*", default=[], choices=ENGINES, help="engines left out")
    p.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=args.threads, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn / quimb
        pass
    engines = [e for e in ENGINES if e not in args.skip]
    suite = QUICK if args.quick else SUITE
    if args.only:
        suite = {k: v for k, v in suite.items() if any(k.startswith(o) for o in args.only)}
    print(provenance() if args.markdown else f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    table = Table(["circuit", "qubits", "gates", "qlam_tn s", "before s", "Aer s", "quimb s", "Aer/qlam",
                   "quimb/qlam", "before/qlam", "max Δ<Z> Aer", "max Δ<Z> quimb", "discarded"],
                  args.markdown, title=f"χ = {args.chi}, rsum2 cutoff {args.cutoff:g}, {args.threads} thread(s)")
    ratios: Dict[str, List[float]] = {"aer": [], "quimb": [], "before": []}
    bounded = {e: False for e in ratios}
    for name, (build, build_args) in suite.items():
        qc = transpiled(build(*build_args))
        r = measure(name, qc, engines, args.chi, args.cutoff, args.repeats, args.limit)
        cut = {e: e in r and r[e][1] is None for e in ENGINES}
        for e in ratios:
            x = _ratio(r, e)
            if x is not None:
                ratios[e].append(x)
                bounded[e] |= cut[e]
        table.row(name, r["n"], r["gates"], *(_fmt_secs(r, e) for e in ENGINES),
                  *(_fmt_ratio(_ratio(r, e), cut[e]) for e in ("aer", "quimb", "before")),
                  _zdiff(r, "aer"), _zdiff(r, "quimb"), f"{r['qlam_tn'][2]:.1e}" if "qlam_tn" in r else "—")
    table.row("geometric mean", "", "", "", "", "", "",
              *(_fmt_ratio(geometric_mean(ratios[e]) if ratios[e] else None, bounded[e])
                for e in ("aer", "quimb", "before")), "", "", "")


if __name__ == "__main__":
    main()
