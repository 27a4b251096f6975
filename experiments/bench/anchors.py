"""The engine against the anchors: qlam_tn's MPS, quimb's CircuitMPS and Qiskit Aer's MPS method.

The same circuit on all three, ``tokens`` times per run: the QLAM token circuit (RY on every
qubit, two brickwork layers of CZ, RX on every qubit) with fixed random angles, complex128, the
same ``max_bond`` and cutoff (``rsum2`` 1e-12 for qlam_tn and quimb; Aer's truncation threshold
1e-12, which it applies to the discarded Σs² of its Vidal form). Reported per run: time per token
and its ratio to qlam_tn (measured in the same process, one after the other), the largest
difference of <Z_q> over all qubits against qlam_tn, and each engine's discarded weight
(quimb: 1 - norm², no renormalisation; Aer: not exposed, it renormalises).

    qlam bench anchors                        # n 16 32 64, chi 16 32 64 (the issue's grid)
    qlam bench anchors --n 16 --chi 32        # one point
    qlam bench anchors --markdown             # the tables as GitHub markdown

Needs the ``bench`` extra (qiskit, qiskit-aer). Run it alone.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import time

import numpy as np
import torch

import qlam_tn as qt
from qlam_tn import mps_host, mps_jit, mps_packed
from qlam_tn.contraction import brickwork_pairs
from qlam_tn.experiments.bench.table import Table, provenance
from qlam_tn.experiments.timing import median_of
from qlam_tn.memory import token_layers


def cz_pairs(n: int) -> list:
    """The token's CZ pairs ``[(q, q + 1)]`` in the order every engine applies them: the even
    layer left to right, the odd layer right to left (``contraction.brickwork_pairs`` with its odd
    half reversed). Gates within a layer commute; this order lets an MPS with a canonical centre
    reach each pair with one site move, as ``qlam_tn.memory.brickwork`` orders them."""
    pairs = brickwork_pairs(n)
    return [p for p in pairs if p[0] % 2 == 0] + [p for p in pairs if p[0] % 2 == 1][::-1]


def token_angles(n: int, tokens: int, seed: int = 0) -> np.ndarray:
    """``(tokens, 2, n)`` angles: RY then RX per qubit."""
    return np.random.default_rng(seed).uniform(0, 2 * np.pi, size=(tokens, 2, n))


def run_qlam(n, chi, angles, batch: int = 1, split: str = "auto", host: bool = True, compiled: bool = True):
    """qlam_tn's MPS; ``host=False`` keeps single-sample updates on the torch path (``mps_host`` off),
    ``compiled=False`` keeps them on the numpy kernels (``mps_jit`` off).

    A token's four layers go through ``qlam_tn.memory.token_layers``, the call QLAM's memory uses:
    where numba runs, one compiled ``mps_jit.circuit`` call per sample and token (``mps_packed``);
    without it, one ``mps_host`` numpy pass per layer (or the torch path). The CZs run in
    ``cz_pairs`` order."""
    psi = qt.MPS.zeros(n, batch=batch, max_bond=chi, cutoff=1e-12, dtype=torch.complex128)
    psi.policy = dataclasses.replace(psi.policy, split=split)
    layers = _cz_layers(n, torch.complex128)
    off = mps_host.disabled() if not host else mps_jit.disabled() if not compiled else contextlib.nullcontext()
    with off:
        t0 = time.perf_counter()
        ry, rx = token_gates(angles, torch.complex128)
        for t in range(len(angles)):
            token_layers(psi, [("1q", ry[t]), *(("2q", czs, parity) for parity, czs in layers), ("1q", rx[t])])
        dt = time.perf_counter() - t0
    z = np.array([psi.expect(f"Z{q}")[0].item() for q in range(n)])
    return dt, z, psi.discarded_weight[0].item()


def token_gates(angles: np.ndarray, dtype) -> tuple:
    """Every token's RY and RX layers ``(tokens, n, 2, 2)``, each built in one call (as a model
    builds a sequence's gates), in ``dtype`` (RX needs a complex one)."""
    a = torch.as_tensor(angles)
    shape = (a.shape[0], a.shape[2], 2, 2)
    ry = qt.gates.RY(a[:, 0].reshape(-1)).reshape(shape).to(dtype)
    rx = qt.gates.RX(a[:, 1].reshape(-1)).reshape(shape).to(dtype) if dtype.is_complex else None
    return ry, rx


def _cz_layers(n: int, dtype) -> list:
    """``[(parity, CZs (P, 4, 4))]`` for the even and the odd brickwork layer."""
    cz = qt.gates.CZ(dtype=dtype)
    return [(p, cz.expand(len(range(p, n - 1, 2)), 4, 4)) for p in (0, 1)]


def run_qlam_ry_cz(n, chi, angles, dtype, batch: int = 1):
    """The token circuit without its RX layer (RY + CZ only: real), in ``dtype``; returns seconds."""
    psi = qt.MPS.zeros(n, batch=batch, max_bond=chi, cutoff=1e-12, dtype=dtype)
    layers = _cz_layers(n, dtype)
    t0 = time.perf_counter()
    for ry in token_gates(angles, dtype)[0]:
        token_layers(psi, [("1q", ry), *(("2q", czs, parity) for parity, czs in layers)])
    return time.perf_counter() - t0


def decomposition_share(n, chi, angles, batch: int = 1, host: bool = True, repeats: int = 1,
                        compiled: bool = True):
    """One run's time against the summed standalone time of the decompositions it performs.

    Returns ``(run_s, split_s, all_s, splits, qrs)``: ``split_s`` sums the two-site splits (LAPACK's
    SVD, or where the Gram path was taken: the Gram matmul, ``eigh`` and the projection ``Q†θ``),
    ``all_s`` adds the QRs of the centre moves; each re-run standalone on random matrices of the
    recorded shapes with the library the run used for it: torch; numpy (scipy's LAPACK wrappers)
    where ``mps_host``'s numpy kernels took a single-sample update; or, where the compiled layer
    (``mps_jit``) ran, the same numba ``np.linalg`` calls in a compiled loop. A batch on the
    torch path makes one batched LAPACK call ``(batch, m, n)`` per split; a compiled batch runs
    sample by sample on torch's threads (``mps_packed``), and so does its standalone loop.
    The shapes come from one recording run (spies on the torch and numpy calls, ``mps_jit.RECORD``);
    then each of ``repeats`` rounds times one run without them and, right after it, the standalone
    decompositions; the medians are returned.
    """
    import qlam_tn.linalg as L
    import qlam_tn.mps_update as M  # the torch route's module: where it calls truncated_split

    splits, qrs = [], []  # (library, shape, dtype[, absorb, gram])
    real_split, real_qr = M.truncated_split, torch.linalg.qr
    real_host_split, real_host_qr = mps_host.split, mps_host.qr

    def split_spy(a, policy, absorb="right"):
        splits.append(("torch", tuple(a.shape), a.dtype, absorb, L.uses_gram_split(a, policy, absorb)))
        return real_split(a, policy, absorb=absorb)

    def host_split_spy(x, y, gate, policy, absorb, gram):
        splits.append(("numpy", (x.shape[0] * 2, 2 * y.shape[2]), torch.from_numpy(x[:0]).dtype, absorb, gram))
        return real_host_split(x, y, gate, policy, absorb, gram)

    def qr_spy(a, *args, **kw):
        qrs.append(("torch", tuple(a.shape), a.dtype))
        return real_qr(a, *args, **kw)

    def host_qr_spy(a):
        qrs.append(("numpy", a.shape, torch.from_numpy(a[:0]).dtype))
        return real_host_qr(a)

    M.truncated_split, torch.linalg.qr = split_spy, qr_spy
    mps_host.split, mps_host.qr = host_split_spy, host_qr_spy
    try:
        record = recorded(lambda: run_qlam(n, chi, angles, batch=batch, host=host, compiled=compiled))
    finally:
        M.truncated_split, torch.linalg.qr = real_split, real_qr
        mps_host.split, mps_host.qr = real_host_split, real_host_qr

    def matrix(lib, shape, dtype):
        a = torch.randn(shape, dtype=dtype)
        return a if lib == "torch" else a.numpy()

    def split_time(mats) -> float:
        t0 = time.perf_counter()
        for lib, a, absorb, gram in mats:
            if lib == "numpy" and gram:
                m = a if absorb == "right" else a.conj().T
                q = mps_host.eigh(m @ m.conj().T)
                q.conj().T @ m
            elif lib == "numpy":
                mps_host.svd(a)
            elif gram:
                m = a if absorb == "right" else a.mH
                q = torch.linalg.eigh(m @ m.mH)[1]
                q.mH @ m
            else:
                torch.linalg.svd(a, full_matrices=False)
        return time.perf_counter() - t0

    def qr_time(mats) -> float:
        t0 = time.perf_counter()
        for lib, a in mats:
            real_qr(a) if lib == "torch" else real_host_qr(a)
        return time.perf_counter() - t0

    split_mats = [(lib, matrix(lib, shape, dtype), absorb, gram) for lib, shape, dtype, absorb, gram in splits]
    qr_mats = [(lib, matrix(lib, shape, dtype)) for lib, shape, dtype in qrs]
    # A batch's compiled layers run its samples on torch's threads (mps_packed): so do these.
    threads = min(torch.get_num_threads(), batch)
    c_split, c_qr = compiled_jobs(record, threads)
    # Each round times a run, then its decompositions standalone right after it, so that both see
    # the VM in the same state (a shared VM's speed drifts over minutes: docs/benchmarks.md).
    runs, t_splits, t_qrs = [], [], []
    for _ in range(repeats):
        runs.append(run_qlam(n, chi, angles, batch=batch, host=host, compiled=compiled)[0])
        # numpy's (and the compiled loop's) decompositions run as in the kernels: BLAS on one thread.
        with mps_host.one_blas_thread():
            t_splits.append(split_time(split_mats) + c_split())
            t_qrs.append(qr_time(qr_mats) + c_qr())
    t_split, t_qr = statistics.median(t_splits), statistics.median(t_qrs)
    n_splits = len(splits) + sum(row[0] == 0 for row in record)
    n_qrs = len(qrs) + sum(row[0] == 1 for row in record)
    return statistics.median(runs), t_split, t_split + t_qr, n_splits, n_qrs


def compiled_job(rows, kind: int, threads: int = 1, dtype=np.complex128):
    """A timer of the compiled pass's recorded decompositions (``rows``: ``(rows, cols,
    absorb_right, gram)``; ``kind`` 0 splits, 1 QRs) re-run standalone on random ``dtype``
    (complex128 or float64) matrices of those shapes in one compiled loop, the rows dealt out to
    ``threads`` threads as ``mps_packed`` deals out a batch's samples; returns seconds per call."""
    if not rows:
        return lambda: 0.0
    rng = np.random.default_rng(0)
    jobs = []
    for k in range(threads):
        table = np.array([(kind, *r) for r in rows[k::threads]], dtype=np.int64).reshape(-1, 5)
        size = int((table[:, 1] * table[:, 2]).sum())
        flat = rng.standard_normal(size)
        if np.dtype(dtype).kind == "c":
            flat = flat + 1j * rng.standard_normal(size)
        _standalone_decompositions(flat, table)  # compiled (or loaded from numba's cache) outside the timing
        jobs.append((flat, table))

    def job() -> float:
        t0 = time.perf_counter()
        if threads == 1:
            _standalone_decompositions(*jobs[0])
        else:
            list(mps_packed.thread_pool(threads).map(lambda j: _standalone_decompositions(*j), jobs))
        return time.perf_counter() - t0
    return job


def recorded(run) -> list:
    """The ``mps_jit.RECORD`` rows ``(kind, rows, cols, absorb_right, gram)`` of the decompositions
    the compiled calls of ``run()`` perform."""
    mps_jit.RECORD = record = []
    try:
        run()
    finally:
        mps_jit.RECORD = None
    return record


def compiled_jobs(record, threads: int = 1, dtype=np.complex128) -> tuple:
    """``compiled_job`` timers of a record's splits and of its QRs."""
    return tuple(compiled_job([row[1:] for row in record if row[0] == kind], kind, threads, dtype) for kind in (0, 1))


if mps_jit.numba is not None:

    @mps_jit.numba.njit(cache=True, nogil=True)
    def _standalone_decompositions(flat, table):
        """The decompositions of ``table``'s rows ``(kind, rows, cols, absorb_right, gram)`` on
        consecutive matrices of ``flat``, as ``mps_jit``'s kernel calls them."""
        o = 0
        for t in range(table.shape[0]):
            kind, rows, cols, right, gram = table[t, 0], table[t, 1], table[t, 2], table[t, 3], table[t, 4]
            a = flat[o:o + rows * cols].reshape(rows, cols)
            o += rows * cols
            if kind == 1:
                np.linalg.qr(a)
            elif gram:
                m = a if right else np.ascontiguousarray(a.conj().T)
                _, v = np.linalg.eigh(np.dot(m, m.conj().T))
                np.dot(v.conj().T, m)
            else:
                np.linalg.svd(a, full_matrices=False)


def ry_cz_decompositions(n, chi, angles, dtype, repeats: int) -> float:
    """Median standalone time of the decompositions one RY+CZ run (``run_qlam_ry_cz``) in ``dtype``
    performs (recorded by the compiled calls, re-run in ``compiled_job``'s loop in that dtype):
    what the run would take if nothing but its LAPACK calls cost time."""
    record = recorded(lambda: run_qlam_ry_cz(n, chi, angles, dtype))
    splits, qrs = compiled_jobs(record, dtype=np.complex128 if dtype.is_complex else np.float64)
    with mps_host.one_blas_thread():
        return statistics.median(splits() + qrs() for _ in range(repeats))


def run_quimb(n, chi, angles):
    import quimb.tensor as qtn

    circ = qtn.CircuitMPS(n, gate_opts=dict(max_bond=chi, cutoff=1e-12, cutoff_mode="rsum2"))
    t0 = time.perf_counter()
    for ry, rx in angles:
        for q in range(n):
            circ.apply_gate("RY", float(ry[q]), q)
        for q, r in cz_pairs(n):
            circ.apply_gate("CZ", q, r)
        for q in range(n):
            circ.apply_gate("RX", float(rx[q]), q)
    dt = time.perf_counter() - t0
    psi = circ.psi
    norm2 = float(abs(psi.H @ psi))
    zmat = np.diag([1.0, -1.0])
    # <psi|Z_q|psi> / <psi|psi> by direct contraction: MatrixProductState.local_expectation
    # has an incompatible signature before quimb 1.16 (which the pennylane extra resolves to).
    z = np.array([float(np.real(psi.H @ psi.gate(zmat, q))) / norm2 for q in range(n)])
    return dt, z, 1 - norm2


def run_quimb_one_blas_thread(n, chi, angles):
    """``run_quimb`` with numpy's and scipy's BLAS/LAPACK limited to one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return run_quimb(n, chi, angles)


def run_aer(n, chi, angles):
    from qiskit import QuantumCircuit, transpile
    from qiskit.quantum_info import Pauli
    from qiskit_aer import AerSimulator

    qc = QuantumCircuit(n)
    for ry, rx in angles:
        for q in range(n):
            qc.ry(float(ry[q]), q)
        for q, r in cz_pairs(n):
            qc.cz(q, r)
        for q in range(n):
            qc.rx(float(rx[q]), q)
    for q in range(n):
        qc.save_expectation_value(Pauli("Z"), [q], label=f"z{q}")
    sim = AerSimulator(method="matrix_product_state", matrix_product_state_max_bond_dimension=chi,
                       matrix_product_state_truncation_threshold=1e-12, max_parallel_threads=torch.get_num_threads())
    # Aer's MPS backend runs any width, but reports a 63-qubit Target, so transpile refuses 64+
    # qubits (qiskit-aer issue #2304); the gates here are all native, so wide circuits go as built.
    tqc = qc if n > 63 else transpile(qc, sim, optimization_level=0)
    t0 = time.perf_counter()
    data = sim.run(tqc, shots=1).result().data()
    dt = time.perf_counter() - t0
    return dt, np.array([float(data[f"z{q}"]) for q in range(n)]), float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(prog="qlam bench anchors", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--chi", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--tokens", type=int, default=12)
    p.add_argument("--engines", nargs="+",
                   default=["qlam_tn", "qlam_tn-numpy", "qlam_tn-torch", "qlam_tn-svd", "quimb", "quimb-1t", "aer"],
                   help="qlam_tn-numpy: qlam_tn with its numpy layer pass instead of the compiled one (mps_jit off); "
                        "qlam_tn-torch: qlam_tn without its single-sample kernels (mps_host), the torch "
                        "path they are tested against; qlam_tn-svd: the torch path with every split by LAPACK's "
                        "SVD (the reference split); quimb-1t: quimb with numpy's BLAS/LAPACK on one thread "
                        "(threadpoolctl), as qlam_tn's one-sample kernels run theirs")
    p.add_argument("--repeats", type=int, default=3,
                   help="the extras' figures are medians of this many timings (this VM varies by 20-30%%)")
    p.add_argument("--extras", action="store_true",
                   help="also: batch 32 against Aer per state (and the ceiling its decompositions alone set), real vs "
                        "complex (and the same ceiling), time vs standalone decompositions")
    p.add_argument("--markdown", action="store_true", help="print the tables as GitHub markdown")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    runners = {"qlam_tn": run_qlam, "qlam_tn-numpy": lambda *a: run_qlam(*a, compiled=False),
               "qlam_tn-torch": lambda *a: run_qlam(*a, host=False),
               "qlam_tn-svd": lambda *a: run_qlam(*a, split="svd", host=False), "quimb": run_quimb,
               "quimb-1t": run_quimb_one_blas_thread, "aer": run_aer}
    setting = f"{args.tokens} tokens per run, complex128"
    print(f"{provenance()}\n\n{setting}" if args.markdown else
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, {setting}")
    table = Table(["n", "χ", "engine", "ms / token", "time ÷ qlam_tn", "max abs Δ<Z_q> vs qlam_tn",
                   "discarded weight"], args.markdown, width=[3, 3, 13, 0, 0, 0, 0])
    for n in args.n:
        for chi in args.chi:
            angles = token_angles(n, args.tokens)
            run_qlam(n, chi, angles[:1])  # warm-up (plans, allocator)
            ref = None
            for name in args.engines:
                dt, z, disc = runners[name](n, chi, angles)
                if ref is None:
                    ref = (dt, z)
                table.row(n, chi, name, f"{1e3 * dt / args.tokens:.1f}", f"{dt / ref[0]:.2f}",
                          f"{np.abs(z - ref[1]).max():.1e}", f"{disc:.2e}")
    if not args.extras:
        return
    table = Table(["n", "χ", "Aer per state ÷ qlam_tn per sample at B=32",
                   "ceiling: Aer ÷ B=32 decompositions alone, per sample", "RY+CZ complex128 ÷ float64",
                   "ceiling: the same for their decompositions alone",
                   "token time ÷ standalone split time (splits per run)", "÷ splits + QR moves (QRs per run)"],
                  args.markdown, title="Extras")
    for n in args.n:
        for chi in args.chi:
            angles = token_angles(n, args.tokens)
            r = args.repeats
            for dtype in (torch.complex128, torch.float64):  # warm-up: kernels loaded, pools started
                run_qlam_ry_cz(n, chi, angles[:1], dtype)
            run_qlam(n, chi, angles[:1], batch=32)
            t_aer = median_of(lambda: run_aer(n, chi, angles), r)
            t_b32 = median_of(lambda: run_qlam(n, chi, angles, batch=32), r)
            t_c = median_of(lambda: run_qlam_ry_cz(n, chi, angles, torch.complex128), r)
            t_r = median_of(lambda: run_qlam_ry_cz(n, chi, angles, torch.float64), r)
            t_run, t_split, t_all, splits, qrs = decomposition_share(n, chi, angles, repeats=r)
            # What B=32 could reach if nothing but its LAPACK calls cost time (the bound on the 3x target).
            _, _, t_all32, _, _ = decomposition_share(n, chi, angles, batch=32, repeats=r)
            # What real mode could reach if nothing but its LAPACK calls cost time (the bound on the 2x target).
            d_c, d_r = (ry_cz_decompositions(n, chi, angles, dt, r) for dt in (torch.complex128, torch.float64))
            table.row(n, chi, f"{t_aer / (t_b32 / 32):.2f}", f"{t_aer / (t_all32 / 32):.2f}", f"{t_c / t_r:.2f}",
                      f"{d_c / d_r:.2f}", f"{t_run / t_split:.2f} ({splits})", f"{t_run / t_all:.2f} ({qrs})")


if __name__ == "__main__":
    main()
