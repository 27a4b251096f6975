"""The ``qlam`` command line: user commands, and the maintainer benchmarks under ``qlam bench``.

    qlam train --model gru --dataset digits      # a user command: qlam <command> [options]
    qlam bench engine --quick --markdown         # a benchmark:   qlam bench <name> [options]

Each command is a module with a ``main(argv) -> int``; this file only dispatches. Commands that
were renamed exit with status 2 and name their replacement.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Dict, List, Optional, Tuple

# name -> (module, one line of help), in the order ``qlam --help`` lists them
COMMANDS: Dict[str, Tuple[str, str]] = {
    "quickstart": ("qlam_tn.experiments.quickstart", "train a small QLAM on 8x8 digits (about half a minute on 2 cores)"),
    "train": ("qlam_tn.experiments.train", "train a sequence classifier into a run folder"),
    "eval": ("qlam_tn.experiments.evaluate", "score a checkpoint on a dataset split"),
    "report": ("qlam_tn.experiments.report", "aggregate run folders into a markdown table"),
    "study": ("qlam_tn.experiments.study", "run a study file's missing runs, then report them"),
    "memory-report": ("qlam_tn.experiments.memory_report", "tables of the memory-task studies (MQAR, copying, induction, entanglement)"),
    "qubits-report": ("qlam_tn.experiments.qubits_report", "tables of the qubit-count study (accuracy vs n and χ, state size, GRU line, entropy)"),
    "probe": ("qlam_tn.experiments.readout_probe", "linear probes of a trained memory's richer readouts"),
    "entangle": ("qlam_tn.experiments.entangle", "entanglement of a QLAM memory vs context length"),
    "scale": ("qlam_tn.experiments.scale", "time/memory/truncation vs qubits, bond dimension and sequence length"),
    "hwcost": ("qlam_tn.experiments.hwcost", "circuit executions, gates, shots and device time of QLAM's readout on hardware"),
    "demo": ("qlam_tn.experiments.demo", "a few-second tour of the engine"),
}

# ``qlam bench <name>``: maintainer benchmarks, each with --markdown
BENCHES: Dict[str, Tuple[str, str]] = {
    "anchors": ("qlam_tn.experiments.bench.anchors", "the MPS against quimb and Qiskit Aer"),
    "engine": ("qlam_tn.experiments.bench.engine", "time one gate and one brickwork layer"),
    "models": ("qlam_tn.experiments.bench.models", "time QLAM and the baselines per token"),
    "contraction": ("qlam_tn.experiments.bench.contraction", "planned vs plain einsum overhead"),
    "pennylane": ("qlam_tn.experiments.bench.pennylane",
                  "qlam.mps vs default.tensor: value and gradient of a 30-qubit circuit"),
    "oracle": ("qlam_tn.experiments.bench.oracle", "exact-oracle time vs n; token-update GFLOP/s"),
    "memory": ("qlam_tn.experiments.bench.memory", "peak memory of a QLAM training step"),
    "profile": ("qlam_tn.experiments.bench.profile", "where a token of the anchors' circuit spends its time"),
    "floor": ("qlam_tn.experiments.bench.floor", "QLAM fwd+bwd (SVD / Gram splits) against its decomposition floor"),
    "circuits": ("qlam_tn.experiments.bench.circuits", "application circuits (QFT, adders, QAOA, Trotter) vs Aer and quimb"),
}

# old command -> what replaces it
RENAMED: Dict[str, str] = {
    "bench-anchors": "qlam bench anchors",
    "bench-engine": "qlam bench engine",
    "bench-models": "qlam bench models",
    "bench-contraction": "qlam bench contraction",
    "bench-pennylane": "qlam bench pennylane",
    "bench-oracle": "qlam bench oracle",
    "memory-check": "qlam bench memory",
}


def _listing(table: Dict[str, Tuple[str, str]]) -> str:
    width = max(map(len, table))
    return "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in table.items())


def _parser(prog: str, table: Dict[str, Tuple[str, str]], what: str, heading: str,
            epilog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, usage=f"{prog} <{what}> [options]   ({prog} <{what}> --help: its options)",
        description=f"{heading}:\n{_listing(table)}", epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(what, choices=list(table), metavar=what, help=argparse.SUPPRESS)
    return parser


def _run(module_name: str, argv: List[str]) -> int:
    out = importlib.import_module(module_name).main(argv)
    return out if isinstance(out, int) else 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _parser("qlam", {**COMMANDS, "bench": ("", "maintainer benchmarks: qlam bench --help")},
                  "command", "commands", "QLAM-TN: quantum-memory sequence models on an MPS engine.")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] in RENAMED:
        print(f"qlam: `qlam {argv[0]}` was renamed: use `{RENAMED[argv[0]]}`", file=sys.stderr)
        return 2
    if argv[0] == "bench":
        bench = _parser("qlam bench", BENCHES, "bench", "maintainer benchmarks",
                        "Each takes --markdown (its tables as GitHub markdown). Run benches alone.")
        if len(argv) == 1 or argv[1] in ("-h", "--help"):
            bench.print_help()
            return 0
        name = bench.parse_args(argv[1:2]).bench
        return _run(BENCHES[name][0], argv[2:])
    command = top.parse_args(argv[:1]).command
    return _run(COMMANDS[command][0], argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
