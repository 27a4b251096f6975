"""``qlam hwcost``: what reading a QLAM on a quantum computer would cost, per readout protocol.

For a QLAM (a checkpoint, or ``--model-cfg``), a sequence length ``T``, ``S`` shots and a readout
protocol (``qlam_tn.models.readout_protocols``), count the circuit executions, token-circuit
applications, two-qubit gates and shots one sequence needs, and estimate the device time per
sequence and per pass over a dataset on three hardware profiles; next to them, the time this
machine's simulation takes for the same model (a timed exact forward)::

    qlam hwcost --checkpoint runs/hardware/qlam-row-s0 --seq-len 28 --shots 1000 --json cost.json
    qlam hwcost --model-cfg n_qubits=8 entangler=su4 query_heads=8 readout_at=attn --input-dim 1 \\
        --seq-len 784 --shots 1000 --dataset-size 10000

The counts (``K`` measurement settings per read: one per query head, and X, (Y), Z for the local
Bloch parts; ``g2`` compiled two-qubit gates per token, ``D2`` their depth)::

    protocol   reads at    executions   token circuits run          grows in T
    restart    every t     S·K·T        S·K·T(T+1)/2                quadratic
    restart    last only   S·K          S·K·T                       linear
    end        last only   S·K          S·K·T                       linear
    window τ   every t     S·K·T        S·K·(τT - τ(τ-1)/2), T>=τ   linear (τ fixed)
    collapse   every t     S            S·T (+ S·T mid-circuit reads of n qubits)    linear
    weak g     every t     S            S·T (+ n ancilla couplings and reads per token) linear

``exact`` is the simulation's free readout; on hardware it *is* ``restart`` (its counts are
reported). A model reads at every token when it pools its reads (``readout_at`` every, attn,
segments) or gives per-position outputs (``--per-position``, the memory tasks); else only after
the last token. Two-qubit gates: executions' token circuits × ``g2`` (+ ``n`` per read for the
weak ancillas).

Compiled two-qubit gates per token, from the model's own token circuit (``QLAM.layer_gates``):
``depth`` brickwork layers of ``⌊(n - l mod 2)/2⌋`` pairs each; a ``cz``/``cnot`` pair is one
native gate, a real ``su4`` pair (SO(4)) two CNOTs and a complex one (U(4)) three (Vatan &
Williams, Phys. Rev. A 69, 032315 (2004); Shende, Markov & Bullock, PRA 69, 062321 (2004)).
Gates of one layer run in parallel (every profile below has the connectivity for a chain).

Device time of one execution ``= overhead + reset + L·t_token + reads·(t_1q + t_readout)``,
``t_token = D2·t_2q + D1·t_1q`` with ``D1`` one-qubit layers per token (the encoding layer, the
rotations after each entangling layer, and around each compiled two-qubit gate). Queueing,
compilation and classical post-processing are not counted: these are lower bounds.

Hardware profiles (``PROFILES``): rounded figures, each marked below as confirmed (with the
source it was checked against) or as an order of magnitude that was not confirmed. A device's
current calibration data supersede all of them.

``superconducting`` (Google gate times, IBM shot overhead; confirmed)
    Two-qubit gate 12 ns and one-qubit gate 25 ns: the Sycamore device of Arute et al.,
    "Quantum supremacy using a programmable superconducting processor", Nature 574, 505 (2019),
    as Google's Cirq records it (``cirq_google/devices/known_devices.py``,
    ``_SYCAMORE_DURATIONS_PICOS``: ``syc`` 12 ns, ``xy``/``xyz`` 25 ns). Readout 1 µs: the same
    table's measurement slot, 4 µs = "1000 ns for readout, 3000 ns for ring_down" (the ring-down
    is not counted here); IBM's devices agree in order (``readout_length`` 1.2 µs on
    ibm_sherbrooke (Eagle), 1.56 µs on ibm_torino / ibm_fez (Heron), qiskit-ibm-runtime's
    fake-backend snapshots of 2025-02-26). Per-shot overhead 250 µs: IBM's default repetition
    delay, ``default_rep_delay`` = 250 µs with ``rep_delay_range`` 0-500 µs on those three
    backends (and in 51 of the 56 fake-backend configurations that state one); IBM Quantum
    documentation, "Qubit initialization" / "Dynamic repetition rate execution" (the delay is
    set per backend, ``backend.default_rep_delay``). Active reset 1 µs: order confirmed (IBM's
    ``reset`` 1.3 µs on ibm_sherbrooke, 1.6-1.7 µs on ibm_fez / ibm_torino, same snapshots). For comparison the
    same snapshots give IBM's own two-qubit gates: CZ 68 ns (ibm_torino) and 84 ns (ibm_fez),
    ECR 533 ns median (ibm_sherbrooke); one-qubit ``sx`` 24-57 ns.
``trapped-ion`` (Quantinuum H2; order of magnitude, not confirmed)
    Moses et al., "A race-track trapped-ion quantum processor", Phys. Rev. X 13, 041052 (2023)
    (arXiv:2305.03828; 32 qubits at the time) describes the machine, and Quantinuum's
    documentation (docs.quantinuum.com, FAQ and "H2 Operation") confirms that H2 is
    transport-based, that circuit layers run one after another with ions moved into the gate
    zones between them, that "a fair amount of time is spent transporting ions", and that
    measurement and reset are done in the gate zones (mid-circuit measurement and reset are
    native). The numbers themselves were not confirmed against a published table (Quantinuum
    publishes an average depth-1 circuit time in its product data sheets, not checked here):
    an effective 2 ms per two-qubit layer (transport, cooling, gate), 50 µs per one-qubit layer,
    200 µs measurement, 50 µs reset, 20 ms per-shot overhead (cooling, state preparation).
``neutral-atom`` (Harvard/QuEra reconfigurable arrays; order of magnitude, not confirmed)
    Bluvstein et al., "Logical quantum processor based on reconfigurable atom arrays", Nature
    626, 58 (2024), and Evered et al., "High-fidelity parallel entangling gates on a
    neutral-atom quantum computer", Nature 622, 268 (2023) (99.5% CZ on up to 60 atoms in
    parallel, "fast, single-pulse gates", confirmed from its abstract) describe the platform;
    the durations were not confirmed from them: parallel CZ gates of a few hundred ns (counted
    inside the two-qubit layer), one-qubit (Raman) gates about 1 µs, atom moves between layers
    about 200 µs (counted as the two-qubit layer's time), imaging readout about 1 ms, reset
    100 µs. Per-shot overhead 0.5 s (array loading and rearrangement: of the order confirmed by
    Endres et al., "Cold matter assembled atom-by-atom", arXiv:1607.03044 (Science 354, 1024
    (2016)), abstract: defect-free arrays of over 50 atoms assembled "in less than 400 ms"; the
    loading before it is not counted there).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from qlam_tn.experiments import runfolder as rf
from qlam_tn.experiments.train import parse_model_cfg
from qlam_tn.models.qlam import QLAM, QLAMConfig
from qlam_tn.models.readout_protocols import measurement_settings, reads_every_token

PROTOCOLS = ("restart", "end", "window", "collapse", "weak")


@dataclass(frozen=True)
class Profile:
    """Timings of one hardware family, in seconds (sources in the module docstring)."""

    name: str
    t_1q: float        # one layer of one-qubit gates
    t_2q: float        # one layer of two-qubit gates (transport included where the device moves qubits)
    t_readout: float   # measuring the qubits (in parallel)
    t_reset: float     # resetting the qubits before a shot (or an ancilla after a weak read)
    t_overhead: float  # per shot, outside the circuit (repetition delay, loading, cooling)
    source: str


PROFILES = {
    "superconducting": Profile("superconducting", 25e-9, 12e-9, 1e-6, 1e-6, 250e-6,
                               "Arute et al., Nature 574, 505 (2019) via Cirq's Sycamore durations; "
                               "IBM default_rep_delay 250 us (qiskit-ibm-runtime fake backends)"),
    "trapped-ion": Profile("trapped-ion", 50e-6, 2e-3, 200e-6, 50e-6, 20e-3,
                           "Quantinuum H2 (Moses et al., Phys. Rev. X 13, 041052 (2023)); "
                           "order of magnitude, not confirmed"),
    "neutral-atom": Profile("neutral-atom", 1e-6, 200e-6, 1e-3, 100e-6, 0.5,
                            "Bluvstein et al., Nature 626, 58 (2024); Evered et al., Nature 622, 268 (2023); "
                            "order of magnitude, not confirmed"),
}


def circuit_counts(cfg: QLAMConfig) -> dict:
    """Per token of ``cfg``'s circuit: ``two_qubit_gates`` (compiled, ``g2``),
    ``two_qubit_depth`` (``D2``), ``one_qubit_depth`` (``D1``); and ``settings`` (``K``), the
    measurement settings of one read, and ``n_qubits``."""
    n = cfg.n_qubits
    per_pair = 1 if cfg.entangler in ("cz", "cnot") else (2 if cfg.real else 3)
    pairs = [len(range(l % 2, n - 1, 2)) for l in range(cfg.depth)]
    g2 = per_pair * sum(pairs)
    d2 = per_pair * sum(1 for p in pairs if p)
    encoding_layers = cfg.depth if cfg.reupload else 1
    if cfg.entangler in ("cz", "cnot"):
        d1 = encoding_layers + cfg.depth  # the trainable rotations after each layer
    else:
        d1 = encoding_layers + (per_pair + 1) * sum(1 for p in pairs if p)  # around each CNOT
    return {"n_qubits": n, "two_qubit_gates": g2, "two_qubit_depth": d2, "one_qubit_depth": d1,
            "settings": len(measurement_settings(cfg))}


def protocol_counts(protocol: str, seq_len: int, shots: int, settings: int, every: bool,
                    window: int | None = None) -> dict:
    """Per sequence: ``executions`` (circuits run, one shot each), ``token_circuits`` (token
    updates executed over all of them), ``reads`` (measurements of the memory, each of all its
    qubits), ``growth`` in T (``linear``/``quadratic``). ``ValueError`` for a protocol the
    model's reads do not allow (``end`` with reads at every token, ``collapse``/``weak`` with
    fewer copies than settings)."""
    t, s, k = seq_len, shots, settings
    if protocol == "exact":
        protocol = "restart"
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS} (or exact)")
    if protocol == "end" and every:
        raise ValueError("protocol 'end' reads once after the last token; this model reads after "
                         "every token (pooled readout or per-position outputs)")
    if protocol == "window" and (window is None or window < 1):
        raise ValueError(f"protocol 'window' needs window >= 1, got {window!r}")
    if protocol in ("collapse", "weak") and s < k:
        raise ValueError(f"protocol {protocol!r} measures one of the K={k} settings per copy: it needs "
                         f"shots >= {k}, got {s}")
    if protocol in ("collapse", "weak"):
        reads = t if every else 1
        return {"executions": s, "token_circuits": s * t, "reads": s * reads, "growth": "linear"}
    if not every:
        length = min(window, t) if protocol == "window" else t
        return {"executions": s * k, "token_circuits": s * k * length, "reads": s * k, "growth": "linear"}
    if protocol == "window":
        tau = min(window, t)
        per_read = tau * t - tau * (tau - 1) // 2  # Σ_t min(t, τ) for t = 1..T
        return {"executions": s * k * t, "token_circuits": s * k * per_read, "reads": s * k * t,
                "growth": "linear" if window < t else "quadratic (τ >= T: restart)"}
    return {"executions": s * k * t, "token_circuits": s * k * t * (t + 1) // 2, "reads": s * k * t,
            "growth": "quadratic"}


def device_seconds(counts: dict, circuit: dict, profile: Profile, protocol: str) -> float:
    """Device time of one sequence: every execution's overhead and reset, its token circuits,
    and its reads (a basis-change layer and a readout each; a weak read also couples and resets
    an ancilla per qubit: one two-qubit layer and a reset)."""
    t_token = circuit["two_qubit_depth"] * profile.t_2q + circuit["one_qubit_depth"] * profile.t_1q
    t_read = profile.t_1q + profile.t_readout
    if protocol == "weak":
        t_read += profile.t_2q + profile.t_reset
    return (counts["executions"] * (profile.t_overhead + profile.t_reset)
            + counts["token_circuits"] * t_token + counts["reads"] * t_read)


def cost_rows(cfg: QLAMConfig, seq_len: int, shots: int, protocols, profiles, per_position: bool = False,
              window: int | None = None, dataset_size: int = 1) -> list:
    """One row per (protocol, profile): the counts, two-qubit gates, total shots and device time
    per sequence and per pass over ``dataset_size`` sequences. Protocols the model cannot run
    (``end`` with reads at every token) are left out."""
    circuit = circuit_counts(cfg)
    every = reads_every_token(cfg, per_position)
    rows = []
    for protocol in protocols:
        try:
            counts = protocol_counts(protocol, seq_len, shots, circuit["settings"], every, window)
        except ValueError:
            if protocol == "end":
                continue
            raise
        g2 = counts["token_circuits"] * circuit["two_qubit_gates"]
        if protocol == "weak":
            g2 += counts["reads"] * circuit["n_qubits"]
        for name in profiles:
            prof = PROFILES[name]
            sec = device_seconds(counts, circuit, prof, protocol)
            rows.append({"protocol": protocol, "profile": name, "seq_len": seq_len, "shots": shots,
                         "window": window if protocol == "window" else None, "settings": circuit["settings"],
                         "reads_every_token": every, **counts, "two_qubit_gates": g2,
                         "total_shots": counts["executions"], "device_seconds_per_sequence": sec,
                         "device_seconds_per_epoch": sec * dataset_size, "dataset_size": dataset_size})
    return rows


def simulation_seconds(model: QLAM, seq_len: int, batch: int = 64, repeats: int = 3) -> float:
    """This machine's time per sequence of an exact forward of ``model`` (no gradient): the
    fastest of ``repeats`` forwards of a random ``(batch, seq_len, F)`` batch, over ``batch``."""
    x = torch.rand(batch, seq_len, model.input_dim, dtype=model.encoder.weight.dtype)
    best = float("inf")
    with torch.no_grad():
        model(x[:2, :2])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return best / batch


def _model(args) -> tuple[QLAM, dict]:
    """The QLAM to cost and where it came from (a checkpoint's with the free exact readout, so
    that the simulation is timed without a protocol it was trained under)."""
    if args.checkpoint:
        from qlam_tn.experiments.evaluate import load_model, protocol_settings
        model, ckpt = load_model(args.checkpoint, protocol=protocol_settings("exact"))
        qlam = getattr(model, "body", model).qlam
        return qlam, {"checkpoint": str(args.checkpoint), "outputs": ckpt["config"]["model"].get("outputs")}
    cfg = QLAMConfig(**parse_model_cfg(args.model_cfg or []))
    return QLAM(args.input_dim, cfg), {"model_cfg": cfg.to_dict()}


def _fmt_seconds(s: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def table(rows: list, sim: float | None) -> str:
    """The rows as a GitHub markdown table (device times, and the simulation's alongside)."""
    head = ("| protocol | profile | T | S | executions | token circuits | 2q gates | shots | "
            "device / sequence | device / epoch | grows in T |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        proto = r["protocol"] + (f" τ={r['window']}" if r["window"] else "")
        lines.append(f"| {proto} | {r['profile']} | {r['seq_len']} | {r['shots']} | {r['executions']:,} | "
                     f"{r['token_circuits']:,} | {r['two_qubit_gates']:,} | {r['total_shots']:,} | "
                     f"{_fmt_seconds(r['device_seconds_per_sequence'])} | "
                     f"{_fmt_seconds(r['device_seconds_per_epoch'])} | {r['growth']} |")
    if sim is not None:
        lines.append(f"\nsimulation here (exact forward, no gradient): {_fmt_seconds(sim)} per sequence, "
                     f"{_fmt_seconds(sim * rows[0]['dataset_size'])} per epoch" if rows else "")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qlam hwcost", description="Circuit executions, two-qubit gates, "
                                 "shots and device time of a QLAM's readout protocols on quantum hardware.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a run folder or its best.pt/last.pt (a QLAM)")
    src.add_argument("--model-cfg", nargs="+", metavar="KEY=VALUE", help="a QLAMConfig instead")
    ap.add_argument("--input-dim", type=int, default=28, help="features per token with --model-cfg (default 28)")
    ap.add_argument("--seq-len", type=int, required=True, metavar="T")
    ap.add_argument("--shots", type=int, default=1000, metavar="S", help="shots per read and setting (default 1000)")
    ap.add_argument("--protocol", nargs="+", choices=("exact",) + PROTOCOLS,
                    help="protocols to cost (default: all; 'end' is then left out for a model that "
                         "reads after every token, and refused when named)")
    ap.add_argument("--window", type=int, default=4, metavar="TAU", help="for the window protocol (default 4)")
    ap.add_argument("--profile", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    ap.add_argument("--per-position", action="store_true",
                    help="the model gives an output at every position (memory tasks): reads at every token")
    ap.add_argument("--dataset-size", type=int, default=10000, help="sequences per epoch (default 10000)")
    ap.add_argument("--no-sim", action="store_true", help="skip timing the simulation here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the timing (default 1)")
    ap.add_argument("--json", metavar="FILE", help="write the rows and the simulation time here (atomically)")
    return ap


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("seq_len", "shots", "window", "dataset_size", "threads", "input_dim"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.json is not None and not Path(args.json).parent.is_dir():
        parser.error(f"--json {args.json}: the folder {Path(args.json).parent} does not exist")
    torch.set_num_threads(args.threads)
    try:
        qlam, source = _model(args)
        per_position = args.per_position or source.get("outputs") == "per_position"
        if args.protocol is not None and "end" in args.protocol \
                and reads_every_token(qlam.config, per_position):
            raise ValueError("protocol 'end' reads once after the last token; this model reads after "
                             "every token (pooled readout or per-position outputs)")
        protocols = list(PROTOCOLS) if args.protocol is None else args.protocol
        rows = cost_rows(qlam.config, args.seq_len, args.shots, protocols, args.profile, per_position,
                         args.window, args.dataset_size)
        sim = None if args.no_sim else simulation_seconds(qlam, args.seq_len)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    print(table(rows, sim))
    if args.json:
        rf.atomic_write_json(args.json, {
            "source": source, "circuit": circuit_counts(qlam.config), "rows": rows,
            "simulation_seconds_per_sequence": sim, "threads": args.threads,
            "profiles": {k: asdict(v) for k, v in PROFILES.items() if k in args.profile}})
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
