"""The ``qlam`` command line: one entry point for the project's runnable studies."""
from __future__ import annotations

import argparse
import sys

COMMANDS = {
    "demo": ("qlam_tn.experiments.demo", "a one-minute tour of the engine"),
    "bench-engine": ("qlam_tn.experiments.bench_engine", "time one gate and one brickwork layer"),
    "bench-models": ("qlam_tn.experiments.bench_models", "time QLAM and the baselines per token"),
    "bench-oracle": ("qlam_tn.experiments.bench_oracle", "exact-oracle time vs n; token-update GFLOP/s"),
    "entangle": ("qlam_tn.experiments.entangle", "entanglement of a QLAM memory vs context length"),
    "bench-anchors": ("qlam_tn.experiments.bench_anchors", "the MPS against quimb and Qiskit Aer"),
    "bench-contraction": ("qlam_tn.experiments.bench_contraction", "planned vs plain einsum overhead"),
    "memory-check": ("qlam_tn.experiments.memory_check", "peak memory of a QLAM training step"),
    "train": ("qlam_tn.experiments.train", "train a sequence classifier into a run folder"),
    "eval": ("qlam_tn.experiments.evaluate", "score a checkpoint on a dataset split"),
    "report": ("qlam_tn.experiments.report", "aggregate run folders into a markdown table"),
    "quickstart": ("qlam_tn.experiments.quickstart", "train a small QLAM on 8x8 digits (~1 min)"),
    "probe": ("qlam_tn.experiments.readout_probe", "linear probes of a trained memory's richer readouts"),
    "scale": ("qlam_tn.experiments.scale", "time/memory/truncation vs qubits, bond dimension and sequence length"),
    "bench-pennylane": ("qlam_tn.experiments.bench_pennylane", "qlam.mps vs default.tensor: value and gradient of a 30-qubit circuit"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="qlam", description="QLAM-TN command line")
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    args = parser.parse_args(argv[:1])
    import importlib

    module = importlib.import_module(COMMANDS[args.command][0])
    out = module.main(argv[1:])
    return out if isinstance(out, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
